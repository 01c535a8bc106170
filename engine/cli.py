"""The ``fedi-run`` command line.

Only click and the standard library are imported at module level, so ``fedi-run --help`` stays
fast; each command imports what it needs when it runs. Every deliberate error is a
:class:`~fedi_run.engine.errors.FediRunError`, printed as one paragraph with its exit status.
"""

from __future__ import annotations

import sys

import click

from fedi_run.engine import __version__
from fedi_run.engine.lab.cli import lab


class FediRunGroup(click.Group):
    """A click group that turns :class:`FediRunError` into a message and an exit status."""

    def invoke(self, ctx: click.Context):  # noqa: D401 - click API
        from fedi_run.engine.errors import FediRunError

        try:
            return super().invoke(ctx)
        except FediRunError as error:
            click.echo(str(error), err=True)
            ctx.exit(error.exit_status)


@click.group(cls=FediRunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fedi-run")
def cli() -> None:
    """Deploy Fediverse services (Garage, Mastodon, PeerTube, Pixelfed) from one playbook."""


cli.add_command(lab)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="fedi-run")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
