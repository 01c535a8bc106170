"""Click parameter types and options the commands share."""

from __future__ import annotations

import math
from pathlib import Path

import click

ENV_PREFIX = "FEDI_RUN_"
"""Every option made with :func:`default_option` reads ``FEDI_RUN_<KEY>``."""


def default_option(*declarations: str, **attributes):
    """A click option whose default also comes from the environment and the playbook: its
    environment variable is ``FEDI_RUN_<KEY>`` and its ``[run]`` key ``<key>``, where ``key``
    is its first long name with ``_`` for ``-`` (``--no-apply``: ``FEDI_RUN_NO_APPLY``,
    ``no_apply``), shown in ``--help``. For precedence see :mod:`fedi_run.engine.cli.defaults`.
    A list in the environment is split at ``os.pathsep`` for paths (``a.toml:b.toml``), at
    whitespace otherwise; a flag reads 1/true/yes/on or 0/false/no/off."""
    long_name = next(d for d in declarations if d.startswith("--")).split("/")[0]
    key = long_name.removeprefix("--").replace("-", "_")
    attributes.setdefault("envvar", ENV_PREFIX + key.upper())
    attributes.setdefault("show_envvar", True)
    return click.option(*declarations, **attributes)


def run_key(param: click.Parameter) -> str | None:
    """The ``[run]`` key of an option made with :func:`default_option`; None for any other
    parameter."""
    envvar = getattr(param, "envvar", None)
    if isinstance(envvar, str) and envvar.startswith(ENV_PREFIX):
        return envvar.removeprefix(ENV_PREFIX).lower()
    return None


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
        default_option(
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
        default_option(
            "--configuration",
            type=click.Path(dir_okay=False, path_type=Path),
            help="A Fediversity configuration.json read over the playbook.",
        ),
        default_option(
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
