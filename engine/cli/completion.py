"""Shell completion of the values of the selection flags, from the playbook on the line.

Click's own completion (``_FEDI_RUN_COMPLETE=bash_source fedi-run``, docs/cli.md) completes
the commands, the options and file names; these ``shell_complete`` callbacks add
``--only``/``--from`` (task ids, and the families of per-host tasks), ``--tags``/``--skip-tags``
(the tags in use) and ``--limit`` (host names and ``local``). Each reads what the command line
gives so far — the playbook, ``-i``, ``--plugin``, ``--no-apply``, the ``[run]`` defaults — and
is silent: whatever goes wrong (no playbook yet, a bad one), it completes nothing and prints
nothing. Host names come from the TOML files alone; task ids and tags need the task graph,
built as ``plan`` builds it.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import click


def complete_tasks(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Task ids and families (``acme.trust`` for ``acme.trust@web``) starting with
    ``incomplete``, in execution order."""
    graph = _graph(ctx)
    if graph is None:
        return []
    words = dict.fromkeys(
        word for task_id in graph.order for word in (graph.tasks[task_id].family, task_id)
    )
    return [word for word in words if word.startswith(incomplete)]


def complete_tags(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The tags in use, the last of a comma-separated list completed."""
    graph = _graph(ctx)
    if graph is None:
        return []
    tags = sorted({tag for task in graph.tasks.values() for tag in task.tags})
    return _last_item(tags, incomplete)


def complete_hosts(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The playbook's and the inventories' host names, and ``local`` (the deployer)."""
    playbook = ctx.params.get("playbook")
    if not playbook:
        return []
    names: dict[str, None] = {}
    for path in (playbook, *(ctx.params.get("inventories") or ())):
        hosts = _toml(Path(path)).get("hosts")
        if isinstance(hosts, dict):
            names.update(dict.fromkeys(str(name) for name in hosts))
    return _last_item([*names, "local"], incomplete)


def _last_item(words: list[str], incomplete: str) -> list[str]:
    """``a,b,c`` lists: complete the part after the last comma, keeping what comes before."""
    done, comma, last = incomplete.rpartition(",")
    given = set(done.split(",")) if comma else set()
    return [done + comma + w for w in words if w.startswith(last) and w not in given]


def _toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except (OSError, ValueError, RecursionError):
        return {}


def _graph(ctx: click.Context):
    """The task graph of the project on the command line so far, or None; nothing printed."""
    params = ctx.params
    if not params.get("playbook"):
        return None
    sink = io.StringIO()
    with (
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        try:
            from fedi_run.engine.project import load_project

            return load_project(
                params["playbook"],
                params.get("inventories") or (),
                params.get("configuration"),
                plugin_modules=params.get("plugin_modules") or (),
                apply=not params.get("no_apply"),
                state_path=params.get("state_path"),
            ).graph
        except Exception:  # noqa: BLE001 - completion never fails loudly
            return None
