"""Choosing which tasks run: one implementation shared by ``plan``, ``graph``, ``run`` and
``teardown``.

The filters of a :class:`Selector` narrow the graph and combine with AND:

* ``only`` — globs over task ids (``mastodon.*``, ``acme.trust@*``); any one may match;
* ``tags`` — tasks with any of these tags; ``skip_tags`` — drop tasks with any of these;
* ``limit`` — globs over host names (``local`` is the deployer);
* ``start`` (``--from``) — that task and every task after it in the execution order.

Then, unless ``with_dependencies`` is false (``--no-deps``), everything the selected tasks
depend on is pulled in too — even when a filter left it out — and recorded as
``required by <task>``. A selection is therefore always closed under dependencies unless
``--no-deps`` was asked for. A filter that matches nothing is an error, not an empty run.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from fedi_run.engine.errors import SelectionError
from fedi_run.engine.model.validators import did_you_mean
from fedi_run.engine.planning.graph import TaskGraph

GLOB_CHARS = re.compile(r"[*?\[]")


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
        return bool(self.only or self.tags or self.skip_tags or self.limit or self.start)

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
    """The selected task ids, in execution order, and why each one was selected."""

    order: tuple[str, ...]
    reasons: Mapping[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "reasons", MappingProxyType(dict(self.reasons)))

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.reasons

    def __len__(self) -> int:
        return len(self.order)


def _match_ids(pattern: str, ids: list[str], families: set[str]) -> list[str]:
    if not GLOB_CHARS.search(pattern):
        if pattern in families:
            return [i for i in ids if i == pattern or i.startswith(pattern + "@")]
        return [pattern] if pattern in ids else []
    return fnmatch.filter(ids, pattern)


def select(graph: TaskGraph, selector: Selector) -> Selection:
    """Apply ``selector`` to ``graph``; see the module docstring for the rules."""
    order = graph.order
    if not selector.filters:
        return Selection(order, dict.fromkeys(order, "all"))
    ids = list(order)
    chosen: set[str] = set(ids)
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
            chosen = {i for i in chosen if wanted.intersection(graph.tasks[i].tags)}
        if selector.skip_tags:
            unwanted = set(selector.skip_tags)
            chosen = {i for i in chosen if not unwanted.intersection(graph.tasks[i].tags)}
    if selector.limit:
        hosts = {graph.tasks[i].where for i in ids}
        for pattern in selector.limit:
            if not fnmatch.filter(hosts, pattern):
                raise SelectionError(
                    f"error: --limit {pattern!r} matches no host that has tasks"
                    f"{did_you_mean(pattern, hosts)}; hosts: {', '.join(sorted(hosts))}"
                )
        chosen = {
            i
            for i in chosen
            if any(fnmatch.fnmatchcase(graph.tasks[i].where, p) for p in selector.limit)
        }
    if selector.start:
        if selector.start not in graph:
            raise SelectionError(
                f"error: --from {selector.start!r} is not a task{did_you_mean(selector.start, ids)}"
            )
        position = order.index(selector.start)
        chosen &= set(order[position:])
    if not chosen:
        raise SelectionError(f"error: the selection {selector.describe()} matches no task together")
    reasons = dict.fromkeys(chosen, selector.describe())
    if selector.with_dependencies:
        for task_id in reversed(order):  # dependencies come earlier: one backward walk
            if task_id in reasons:
                for dependency in graph.dependencies(task_id):
                    if dependency not in reasons:
                        reasons[dependency] = f"required by {task_id}"
    return Selection(tuple(i for i in order if i in reasons), reasons)
