"""Whether what a partial run leaves out is done: each task the selected ones need and the
selection does not run (``Selection.outside``), looked up in the deployment's state before any
host is contacted.

A task's *last outcome* is what the latest run or teardown of the deployment (never a
``--check``) that touched it did to it (``StateStore.last_outcomes``). In a **run**, a needed
task (a dependency) is done when its last outcome is ok or changed in a run — a teardown that
undid it since, a failure, a run that did not finish, or no run at all is not done. In a
**teardown**, a needed task (a dependent, undone first) must not be in place: no run ever
touched it, or its last outcome is ok or changed in a teardown.

When one is not, :func:`check_outside` raises :class:`DependenciesNotDone` (exit 2): one
paragraph naming each such task, its host, its last outcome, which selected task needs it,
and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fedi_run.engine.errors import DependenciesNotDone
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.selection import Selection, Selector
from fedi_run.engine.report.events import DONE
from fedi_run.engine.report.state_records import LastOutcome, done_elsewhere

MOST_NAMED = 8
"""At most this many tasks are named in the refusal; ``plan`` lists them all."""


def state_of(
    outcome: LastOutcome | None, kind: str, deployer: str | None = None
) -> tuple[str, bool]:
    """``(what the state records, whether that is enough for a kind)`` of a needed task:
    ``("done in run 3", True)``, ``("never run", False)``, ``("failed in run 4", False)``,
    ``("undone in run 5 (a teardown)", False)``, ... (see the module docstring). A task on
    ``local`` done by a run on another deployer than ``deployer`` is not done here: ``("done
    in run 3 on another deployer (host:/dir)", False)`` — its files are there."""
    if outcome is None:
        return "never run", kind == "teardown"
    where = f"run {outcome.run_id}" + (" (a teardown)" if outcome.kind == "teardown" else "")
    if outcome.status in DONE and done_elsewhere(outcome.host, outcome.deployer, deployer):
        return f"done in {where} on another deployer ({outcome.deployer})", False
    if outcome.status in DONE:
        if outcome.kind == "teardown":
            return f"undone in {where}", kind == "teardown"
        return f"done in {where}" + (", not undone since" if kind == "teardown" else ""), (
            kind == "run"
        )
    if outcome.status is None:
        return f"did not finish in {where}", False
    return f"failed in {where}", False


def outside_states(
    graph: TaskGraph,
    selection: Selection,
    outcomes: Mapping[str, LastOutcome],
    kind: str,
    deployer: str | None = None,
) -> dict[str, tuple[str, bool]]:
    """:func:`state_of` each task of ``selection.outside``, from ``outcomes`` (task id → its
    last outcome; a task without one was never touched) — but a task the playbook skips
    (``when = false``: :attr:`Task.skipped`) is done by its own definition, in a run and a
    teardown alike, whatever the state says: ``("skipped (when: false)", True)``."""
    states = {}
    for need in selection.outside:
        skipped = graph.tasks[need].skipped
        states[need] = (
            (f"skipped ({skipped})", True)
            if skipped
            else state_of(outcomes.get(need), kind, deployer)
        )
    return states


def check_outside(
    graph: TaskGraph,
    selection: Selection,
    states: Mapping[str, tuple[str, bool]],
    kind: str,
    selector: Selector,
    described: str,
    playbook: Path | str,
) -> None:
    """Raise :class:`DependenciesNotDone` when a task of ``selection.outside`` is not done
    (``states``, :func:`outside_states`); ``described``: the selection as typed (``--limit
    hello``, ``--resume --tags motd``), ``playbook`` its path, for the command to suggest."""
    missing = [need for need in selection.outside if not states[need][1]]
    if not missing:
        return
    teardown = kind == "teardown"
    named = []
    for need in missing[:MOST_NAMED]:
        state = states[need][0]
        users = selection.outside[need]
        relation = "depends on" if teardown else "needed by"
        more = f" and {len(users) - 1} more" if len(users) > 1 else ""
        named.append(f"{need} on {graph.tasks[need].where} ({state}; {relation} {users[0]}{more})")
    if len(missing) > MOST_NAMED:
        named.append(
            f"and {len(missing) - MOST_NAMED} more (`fedi-run plan {playbook} {described}` "
            "lists them)"
        )
    count = f"{len(missing)} task(s)"
    if teardown:
        head = (
            f"error: teardown {described} leaves out {count} that depend on the selected ones "
            "and are still in place (a teardown undoes what depends on a task first): "
        )
        first = f"tear them down first (`fedi-run teardown {playbook} --only {_ids(missing)}`)"
        nothing = "Nothing was undone and no host was contacted."
    else:
        head = (
            f"error: {described} leaves out {count} the selected ones need, and this "
            "deployment's state does not record them as done (a partial run does not run what "
            "its filters leave out): "
        )
        first = f"run them first (`fedi-run run {playbook} --only {_ids(missing)}`)"
        nothing = "Nothing was run and no host was contacted."
    widen = _widen(graph, selector, missing)
    raise DependenciesNotDone(
        f"{head}{'; '.join(named)}. Widen the selection{widen} or {first}; --no-deps takes the "
        f"selection as it is, unchecked. {nothing}",
        missing,
    )


def _ids(task_ids: list[str]) -> str:
    return ",".join(task_ids)


def _widen(graph: TaskGraph, selector: Selector, missing: list[str]) -> str:
    """How the filters typed could take ``missing`` in (`` (--limit hello,cowsay)``), or ""
    when no one filter does."""
    if selector.limit:
        hosts = list(selector.limit)
        for need in missing:
            where = graph.tasks[need].where
            if where not in hosts:
                hosts.append(where)
        return f" (--limit {','.join(hosts)})"
    return ""
