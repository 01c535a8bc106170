"""Choosing which tasks run: one implementation shared by ``plan``, ``graph``, ``run`` and
``teardown`` (docs/selection.md has the table and examples).

The filters of a :class:`Selector` narrow the graph and combine with AND. Two kinds:

* ``only`` (``--only``, like Terraform's ``-target``) — globs, ids or per-host families
  (``mastodon.*``, ``acme.trust@*``, ``acme.reach``); any one may match. What a matched task
  needs is *pulled in* and runs too (``required by <task>``), unless ``--no-deps``;
* the *boundaries* ``tags``/``skip_tags`` (Ansible's ``--tags``/``--skip-tags``), ``limit``
  (Ansible's ``--limit``, globs over host names, ``local`` the deployer) and ``start``
  (``--from``, Ansible's ``--start-at-task``: the first task matching what ``--only`` takes,
  and every task after it in the execution order). Nothing outside a boundary is selected,
  not even to satisfy a dependency: pulling in stops at it.

What a selected task needs and the selection leaves out is :attr:`Selection.outside`: it is
not run, and must be done already (``engine.report.readiness`` checks the state before any
host is contacted). With ``--no-deps`` nothing is pulled in and nothing is checked.

"Needs" depends on the ``kind``: in a run, a task needs its dependencies (they run first); in
a teardown it needs its dependents (they are undone first), so ``teardown --only X`` undoes
what depends on ``X`` too, as Terraform's ``destroy -target`` does, and ``--from`` counts in
the teardown's (reversed) order. A filter that matches nothing is an error, not an empty run.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fedi_run.engine.errors import SelectionError
from fedi_run.engine.model.validators import did_you_mean
from fedi_run.engine.planning.graph import TaskGraph

GLOB_CHARS = re.compile(r"[*?\[]")
KINDS = ("run", "teardown")


@dataclass(frozen=True)
class Selector:
    """What the user asked for on the command line; the empty selector selects everything. An
    empty pattern, tag, host or task id (``--only ""``, ``--tags ","``) is a
    :class:`SelectionError` naming the flag."""

    only: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    limit: tuple[str, ...] = ()
    start: str | None = None
    with_dependencies: bool = True

    def __post_init__(self) -> None:
        for flag, values, what in (
            ("--only", self.only, "pattern"),
            ("--tags", self.tags, "tag"),
            ("--skip-tags", self.skip_tags, "tag"),
            ("--limit", self.limit, "host pattern"),
            ("--from", () if self.start is None else (self.start,), "task id"),
        ):
            if any(not value.strip() for value in values):
                raise SelectionError(
                    f"error: {flag}: an empty {what} (an empty value, or nothing between "
                    f"commas) would select nothing or everything; give {flag} a {what}, or "
                    "leave the flag out"
                )

    @property
    def filters(self) -> bool:
        """Whether any filter was given."""
        return bool(self.only or self.bounded)

    @property
    def bounded(self) -> bool:
        """Whether a boundary filter (``--tags``, ``--skip-tags``, ``--limit``, ``--from``) was
        given: one that what a selected task needs is never pulled in across."""
        return bool(self.tags or self.skip_tags or self.limit or self.start)

    def describe(self) -> str:
        """The filters as they were typed, for ``selected_by``."""
        parts = [f"--only {p}" for p in self.only]
        parts += [f"--tags {t}" for t in self.tags]
        parts += [f"--skip-tags {t}" for t in self.skip_tags]
        parts += [f"--limit {h}" for h in self.limit]
        if self.start:
            parts.append(f"--from {self.start}")
        return " ".join(parts) or "all"


@dataclass(frozen=True)
class Selection:
    """The selected task ids, in the graph's execution order (a teardown runs it reversed), why
    each one was selected, and ``outside``: each task a selected one needs that is not
    selected → the selected tasks that need it (empty with ``--no-deps``)."""

    order: tuple[str, ...]
    reasons: Mapping[str, str]
    outside: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reasons", MappingProxyType(dict(self.reasons)))
        object.__setattr__(self, "outside", MappingProxyType(dict(self.outside)))

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.reasons

    def __len__(self) -> int:
        return len(self.order)


def needs(graph: TaskGraph, task_id: str, kind: str = "run") -> list[str]:
    """What must be finished before ``task_id`` in a ``kind``: its dependencies in a run, its
    dependents in a teardown (sorted)."""
    if kind == "teardown":
        return graph.dependents(task_id)
    return graph.dependencies(task_id)


def outside_needs(
    graph: TaskGraph, chosen: Iterable[str], kind: str = "run"
) -> dict[str, tuple[str, ...]]:
    """Each task one of ``chosen`` needs (:func:`needs`) that is not among them → the chosen
    tasks that need it, both in execution order."""
    chosen = set(chosen)
    found: dict[str, list[str]] = {}
    for task_id in graph.order:
        if task_id in chosen:
            for need in needs(graph, task_id, kind):
                if need not in chosen:
                    found.setdefault(need, []).append(task_id)
    position = {task_id: index for index, task_id in enumerate(graph.order)}
    return {need: tuple(found[need]) for need in sorted(found, key=position.__getitem__)}


def _match_ids(pattern: str, ids: list[str], families: set[str]) -> list[str]:
    if not GLOB_CHARS.search(pattern):
        if pattern in families:
            return [i for i in ids if i == pattern or i.startswith(pattern + "@")]
        return [pattern] if pattern in ids else []
    return fnmatch.filter(ids, pattern)


def _boundary(graph: TaskGraph, selector: Selector, kind: str) -> set[str]:
    """The tasks inside every boundary filter of ``selector`` (all tasks when none)."""
    order = graph.order if kind == "run" else tuple(reversed(graph.order))
    ids = list(graph.order)
    inside: set[str] = set(ids)
    if selector.tags or selector.skip_tags:
        known_tags = {tag for task in graph.tasks.values() for tag in task.tags}
        for tag in (*selector.tags, *selector.skip_tags):
            if tag not in known_tags:
                raise SelectionError(
                    f"error: no task has the tag {tag!r}{did_you_mean(tag, known_tags)}; "
                    f"tags in use: {', '.join(sorted(known_tags)) or 'none'}"
                )
        if selector.tags:
            wanted = set(selector.tags)
            inside = {i for i in inside if wanted.intersection(graph.tasks[i].tags)}
        if selector.skip_tags:
            unwanted = set(selector.skip_tags)
            inside = {i for i in inside if not unwanted.intersection(graph.tasks[i].tags)}
    if selector.limit:
        hosts = {graph.tasks[i].where for i in ids}
        for pattern in selector.limit:
            if not fnmatch.filter(hosts, pattern):
                raise SelectionError(
                    f"error: --limit {pattern!r} matches no host that has tasks"
                    f"{did_you_mean(pattern, hosts)}; hosts: {', '.join(sorted(hosts))}"
                )
        inside = {
            i
            for i in inside
            if any(fnmatch.fnmatchcase(graph.tasks[i].where, p) for p in selector.limit)
        }
    if selector.start:
        families = {graph.tasks[i].family for i in ids}
        found = set(_match_ids(selector.start, ids, families))
        if not found:
            raise SelectionError(
                f"error: --from {selector.start!r} is not a task, a task family or a glob "
                f"matching one (what --only takes){did_you_mean(selector.start, ids)}"
            )
        position = min(order.index(i) for i in found)
        inside &= set(order[position:])
    return inside


def select(graph: TaskGraph, selector: Selector, kind: str = "run") -> Selection:
    """Apply ``selector`` to ``graph`` for a ``kind`` (``run`` or ``teardown``); see the module
    docstring for the rules."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    order = graph.order
    if not selector.filters:
        return Selection(order, dict.fromkeys(order, "all"))
    ids = list(order)
    inside = _boundary(graph, selector, kind)
    chosen = set(inside)
    if selector.only:
        families = {graph.tasks[i].family for i in ids}
        matched: set[str] = set()
        for pattern in selector.only:
            found = _match_ids(pattern, ids, families)
            if not found:
                raise SelectionError(
                    f"error: --only {pattern!r} matches no task{did_you_mean(pattern, ids)}; "
                    "`fedi-run plan PLAYBOOK` lists them"
                )
            matched.update(found)
        chosen &= matched
    if not chosen:
        raise SelectionError(f"error: the selection {selector.describe()} matches no task together")
    reasons = dict.fromkeys(chosen, selector.describe())
    if selector.with_dependencies and selector.only:
        walk = reversed(order) if kind == "run" else iter(order)  # what is needed comes first
        for task_id in walk:
            if task_id in reasons:
                for need in needs(graph, task_id, kind):
                    if need not in reasons and need in inside:
                        reasons[need] = (
                            f"required by {task_id}" if kind == "run" else f"depends on {task_id}"
                        )
    outside = outside_needs(graph, reasons, kind) if selector.with_dependencies else {}
    return Selection(tuple(i for i in order if i in reasons), reasons, outside)
