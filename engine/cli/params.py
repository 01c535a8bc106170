"""Click parameter types and options the commands share."""

from __future__ import annotations

import math
from pathlib import Path

import click


class Seconds(click.FloatRange):
    """A number of seconds within the range, and finite: ``nan`` and ``inf`` pass a plain
    :class:`click.FloatRange` (no comparison refuses ``nan``), and then break every timeout that
    uses them."""

    name = "seconds"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number


class StateParam(click.ParamType):
    """``--state``: the path of an SQLite file (a :class:`~pathlib.Path`; not a directory), or a
    ``postgresql://`` / ``postgres://`` URL (kept as the ``str``)."""

    name = "FILE|URL"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        scheme, sep, _ = value.partition("://")
        if sep and scheme.lower() in ("postgresql", "postgres"):
            return value
        if sep and "/" not in scheme:
            self.fail(
                f"{scheme}:// is not a state: give a file, or a postgresql:// URL", param, ctx
            )
        return click.Path(dir_okay=False, path_type=Path).convert(value, param, ctx)


STATE_HELP = (
    "The state: an SQLite file (default: .fedi-run/state.db beside the playbook), or a "
    "PostgreSQL database, postgresql://USER@HOST[:PORT]/DB (password from PGPASSWORD or "
    "~/.pgpass; see docs/state.md)."
)


def playbook_options(function):
    """The playbook argument and the options that say how to read it: ``-i/--inventory``,
    ``--configuration`` and ``--plugin``."""
    options = [
        click.argument("playbook", type=click.Path(dir_okay=False, path_type=Path)),
        click.option(
            "-i",
            "--inventory",
            "inventories",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help=(
                "TOML file with [hosts.*] tables (and the plugin tables declared for "
                "inventories) merged over the playbook's. Repeatable."
            ),
        ),
        click.option(
            "--configuration",
            type=click.Path(dir_okay=False, path_type=Path),
            help="A Fediversity configuration.json read over the playbook.",
        ),
        click.option(
            "--plugin",
            "plugin_modules",
            multiple=True,
            metavar="MODULE",
            help="Load a plugin from an importable module. Repeatable.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function
