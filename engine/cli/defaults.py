"""Defaults of the command line from the playbook's ``[run]`` table.

Precedence, for every option made with :func:`~fedi_run.engine.cli.params.default_option`: the
command line, then its ``FEDI_RUN_<KEY>`` environment variable, then the playbook's ``[run]``
``<key>``, then the built-in default. Click does the first, second and fourth (``envvar=``,
``default=``); :class:`PlaybookCommand` does the third, by filling ``ctx.default_map`` from the
``[run]`` table of the playbook named on the command line before click resolves any value.

Reading ``[run]`` is cheap — tomllib, and the :class:`RunSection` model only when the table is
there — and never builds the project. A playbook that cannot be read, or is not TOML, gives no
defaults here: the command reports it itself. A ``[run]`` key with a wrong name or value gives
no default; a command that loads the whole playbook (:attr:`PlaybookCommand.loads_playbook`)
then reports it among the playbook's other problems, in one pass, and one that does not
(``history``, ``show-run``) stops at once with a
:class:`~fedi_run.engine.errors.PlaybookError` naming the file and ``run.<key>`` (exit 2).
Relative paths in ``[run]`` are relative to the playbook.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from fedi_run.engine.cli.params import run_key
from fedi_run.engine.model.validators import is_url

DEFAULTS_NOTE = (
    "Every option that shows an env var takes its default, in this order, from that "
    "FEDI_RUN_* variable, then from the playbook's [run] table under the option's long name "
    "with '_' for '-' (--no-apply: no_apply = true), then the built-in default; the command "
    "line wins over all. See docs/cli.md."
)


class PlaybookCommand(click.Command):
    """A command whose first argument is a playbook: its ``[run]`` table gives defaults to the
    command's options (see the module docstring), and its help ends with
    :data:`DEFAULTS_NOTE`."""

    loads_playbook = True
    """Whether the command validates the whole playbook itself (``[run]`` included, with every
    other problem): then a wrong ``[run]`` key only gives no default here."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        playbook = _peek_playbook(self, ctx, args)
        if playbook is None and ctx.resilient_parsing and args:
            # completing an option's value: the option is last, without its value yet
            playbook = _peek_playbook(self, ctx, args[:-1])
        if playbook is not None:
            try:
                defaults = command_defaults(self, Path(playbook), strict=not self.loads_playbook)
            except Exception:
                if not ctx.resilient_parsing:  # shell completion stays silent
                    raise
                defaults = {}
            if defaults:
                ctx.default_map = {**defaults, **(ctx.default_map or {})}
        rest = super().parse_args(ctx, args)
        if playbook is not None and ctx.params.get("playbook") is None:
            ctx.params["playbook"] = Path(playbook)  # what click's completion parse drops
        return rest

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(DEFAULTS_NOTE)


def _peek_playbook(command: click.Command, ctx: click.Context, args: list[str]) -> str | None:
    """The ``playbook`` argument of ``args``, parsed as the command will (options taking a
    value skipped), without resolving any value; None when there is none yet."""
    parser = command.make_parser(ctx)
    try:
        values, _, _ = parser.parse_args(args=list(args))
    except click.ClickException:
        return None
    value = values.get("playbook")
    return value if isinstance(value, str) and value else None


class ReadsRunTableOnly(PlaybookCommand):
    """A :class:`PlaybookCommand` that reads nothing of the playbook but its ``[run]`` table
    (``history``, ``show-run``): a wrong ``[run]`` key stops it at once."""

    loads_playbook = False


def command_defaults(command: click.Command, playbook: Path, strict: bool = True) -> dict[str, Any]:
    """``ctx.default_map`` for ``command``: its options' values from ``playbook``'s
    ``[run]`` table, keyed by parameter name (``inventories`` for ``[run] inventory``); with
    ``strict`` false, a wrong key is left out instead of raised (see :func:`run_table`)."""
    table = run_table(playbook, strict)
    if not table:
        return {}
    defaults = {}
    for param in command.params:
        key = run_key(param)
        if key is not None and key in table:
            defaults[param.name] = table[key]
    return defaults


def run_table(playbook: Path, strict: bool = True) -> dict[str, Any]:
    """The validated values of the keys ``playbook``'s ``[run]`` table gives (paths made
    absolute, relative to the playbook), keyed as in the table; empty when the file cannot be
    read or holds no ``[run]`` table (whoever reads the playbook reports that). A wrong key or
    value is a :class:`PlaybookError` — or, with ``strict`` false, left out: the keys that
    are right still give their values."""
    import tomllib

    try:
        with open(playbook, "rb") as file:
            data = tomllib.load(file)
    except (OSError, ValueError, RecursionError):  # TOMLDecodeError, UnicodeDecodeError
        return {}
    raw = data.get("run")
    if not isinstance(raw, dict) or not raw:
        return {}
    from fedi_run.engine.errors import PlaybookError

    try:
        return _validated(playbook, raw)
    except PlaybookError as error:
        if strict:
            raise
        wrong = {problem.key.split(".")[1] for problem in error.problems if "." in problem.key}
        rest = {key: value for key, value in raw.items() if key not in wrong}
    if not rest or len(rest) == len(raw):
        return {}
    try:
        return _validated(playbook, rest)
    except PlaybookError:
        return {}


def _validated(playbook: Path, raw: Mapping[str, Any]) -> dict[str, Any]:
    from pydantic import ValidationError

    from fedi_run.engine.errors import PlaybookError, Problem
    from fedi_run.engine.model import pydantic_problems
    from fedi_run.engine.model.playbook import RunSection

    try:
        section = RunSection.model_validate(_frozen(raw))
    except ValidationError as error:
        raise PlaybookError(
            [
                Problem(
                    playbook,
                    pydantic_problems.dotted(("run", *(str(part) for part in item["loc"]))),
                    pydantic_problems.message(item, RunSection, item["loc"]),
                )
                for item in error.errors()
            ]
        ) from None
    base = playbook.absolute().parent
    values = {}
    for name, field in RunSection.model_fields.items():
        key = field.alias or name
        if key in raw:
            values[key] = _resolved(getattr(section, name), base, key in PATH_KEYS)
    return values


PATH_KEYS = frozenset({"inventory", "configuration", "junit", "state", "known_hosts"})
"""The ``[run]`` keys that hold deployer paths, relative to the playbook."""


def _resolved(value: Any, base: Path, is_path: bool) -> Any:
    """``value`` made absolute against ``base`` when it is a path (not a URL: ``state`` may be
    ``postgresql://…``)."""
    if not is_path or value is None or (isinstance(value, str) and is_url(value)):
        return value
    if isinstance(value, tuple):
        return tuple(_resolved(item, base, True) for item in value)
    return os.path.normpath(base / os.path.expanduser(value))


def _frozen(value: Any) -> Any:
    """TOML arrays as tuples: the playbook models are strict."""
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return {key: _frozen(item) for key, item in value.items()}
    return value
