"""The task graph: tasks as nodes, "must finish first" as edges, validated before anything runs.

:meth:`TaskGraph.build` is the only way in. It resolves every ``requires`` entry to task ids,
and raises one :class:`~fedi_run.engine.errors.GraphError` listing every duplicate id, unknown
dependency, unknown host and cycle (each knot of tasks waiting for each other printed as one
cycle in full, :mod:`~fedi_run.engine.planning.cycles`). An edge ``a -> b`` means ``a``
runs before ``b``. Plugins never see this object: they return :class:`Task` values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from functools import cached_property
from types import MappingProxyType

from fedi_run.engine.errors import GraphError
from fedi_run.engine.model.validators import did_you_mean
from fedi_run.engine.planning.cycles import find_cycles
from fedi_run.engine.planning.tasks import Task


def _origin(task: Task) -> str:
    if task.plugin:
        return f"plugin {task.plugin!r}"
    return "the playbook's [tasks]" if task.namespace == "tasks" else "the engine"


class TaskGraph:
    """A validated, acyclic graph of tasks. Immutable once built."""

    def __init__(self, tasks: Mapping[str, Task], edges: Mapping[str, Collection[str]]):
        """``edges``: task id -> the ids that run after it (each id of ``tasks`` at most once
        as a key; a missing key: none)."""
        self.tasks: Mapping[str, Task] = MappingProxyType(dict(tasks))
        self._successors = {task_id: frozenset(edges.get(task_id, ())) for task_id in self.tasks}
        predecessors: dict[str, set[str]] = {task_id: set() for task_id in self.tasks}
        for before, successors in self._successors.items():
            for successor in successors:
                predecessors[successor].add(before)
        self._predecessors = {task_id: frozenset(p) for task_id, p in predecessors.items()}

    @classmethod
    def build(
        cls,
        tasks: Iterable[Task],
        hosts: Collection[str],
        absent: Callable[[str], bool] | None = None,
    ) -> TaskGraph:
        """Validate ``tasks`` against each other and the known ``hosts``; see the module doc.
        ``absent``: the ``requires`` entries it says True for name tasks that are not there
        this time (their tables had problems of their own): not reported as unknown."""
        problems: list[str] = []
        about: list[tuple[tuple[str, ...], str]] = []

        def problem(text: str, tasks: tuple[str, ...] = (), short: str = "") -> None:
            problems.append(text)
            about.append((tasks, short or text))

        by_id: dict[str, Task] = {}
        for task in tasks:
            if task.id in by_id:
                problem(
                    f"duplicate task id {task.id!r}: contributed by {_origin(by_id[task.id])} "
                    f"and by {_origin(task)}"
                )
                continue
            by_id[task.id] = task
            if task.host is not None and task.host not in hosts:
                problem(
                    f"task {task.id!r} ({_origin(task)}) runs on host {task.host!r}, which is not "
                    f"in [hosts]{did_you_mean(task.host, hosts)}"
                )
        families: dict[str, list[str]] = defaultdict(list)
        for task_id, task in by_id.items():
            if task.family != task_id:
                families[task.family].append(task_id)
        edges: dict[str, set[str]] = {task_id: set() for task_id in by_id}
        for task in by_id.values():
            for requirement in task.requires:
                targets = _resolve(requirement, task, by_id, families)
                if not targets and not (absent and absent(requirement)):
                    hint = _unknown_hint(requirement, task, by_id, families)
                    problem(
                        f"task {task.id!r} ({_origin(task)}) requires {requirement!r}, which is "
                        f"not a task{hint}",
                        (task.id,),
                        f"unknown task {requirement!r}{hint}",
                    )
                for target in targets:
                    if target == task.id:
                        problem(f"task {task.id!r} requires itself", (task.id,), "requires itself")
                    else:
                        edges[target].add(task.id)
        for cycle in find_cycles(edges):
            text = f"dependency cycle: {' -> '.join(cycle)} (each runs before the next)"
            problem(text, tuple(cycle[:-1]))
        if problems:
            raise GraphError(problems, about=about)
        return cls(by_id, edges)

    def finished_with(self, make_final: Callable[[list[str]], Task]) -> TaskGraph:
        """A new graph with one more task that runs after every other: ``make_final`` gets the
        current sinks and returns the task, which must require exactly those."""
        final = make_final(self.sinks())
        if final.id in self.tasks:
            raise GraphError([f"duplicate task id {final.id!r}: it is reserved for the engine"])
        edges = {task_id: set(successors) for task_id, successors in self._successors.items()}
        for sink in final.requires:
            edges[sink].add(final.id)
        return TaskGraph({**self.tasks, final.id: final}, edges)

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.tasks

    def edges(self) -> list[tuple[str, str]]:
        """Every edge ``(before, after)``, sorted."""
        return sorted((a, b) for a, successors in self._successors.items() for b in successors)

    def dependencies(self, task_id: str) -> list[str]:
        """The ids ``task_id`` waits for directly, sorted."""
        return sorted(self._predecessors[task_id])

    def dependents(self, task_id: str) -> list[str]:
        """The ids that wait for ``task_id`` directly, sorted."""
        return sorted(self._successors[task_id])

    def ancestors(self, task_ids: Iterable[str]) -> set[str]:
        """Everything the given tasks need, transitively."""
        return _reach(self._predecessors.__getitem__, task_ids)

    def descendants(self, task_ids: Iterable[str]) -> set[str]:
        """Everything that needs the given tasks, transitively."""
        return _reach(self._successors.__getitem__, task_ids)

    def steps(self, task_ids: Collection[str] | None = None) -> list[list[str]]:
        """The tasks (all, or ``task_ids``) grouped into steps: every task of a step depends
        only on tasks of earlier steps, so a step's tasks may run in parallel. Each step is
        sorted by id, so the result is deterministic."""
        # Kahn's algorithm, one generation at a time (graphlib's TopologicalSorter gives the
        # same steps, at twice the cost on a 10,000-task graph).
        if task_ids is None:
            waiting = {node: len(before) for node, before in self._predecessors.items()}
        else:
            nodes = {t for t in task_ids if t in self.tasks}
            waiting = {n: sum(p in nodes for p in self._predecessors[n]) for n in nodes}
        step = [node for node, count in waiting.items() if count == 0]
        steps = []
        while step:
            steps.append(sorted(step))
            ready = []
            for node in step:
                for after in self._successors[node]:
                    if after in waiting:
                        waiting[after] -= 1
                        if waiting[after] == 0:
                            ready.append(after)
            step = ready
        return steps

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Every task id in execution order: the steps, one after another."""
        return tuple(task_id for step in self.steps() for task_id in step)

    def sinks(self) -> list[str]:
        """The tasks nothing depends on."""
        return sorted(task_id for task_id, after in self._successors.items() if not after)

    def hosts(self) -> set[str]:
        """The hosts any task runs on."""
        return {task.host for task in self.tasks.values() if task.host is not None}


def _unknown_hint(requirement: str, task: Task, by_id: Mapping[str, Task], families) -> str:
    """The did-you-mean of a ``requires`` entry of ``task`` that names no task: the operator's
    task of that name (``two`` → ``tasks.two``), else the closest other task id or family."""
    if f"tasks.{requirement}" in by_id or f"tasks.{requirement}" in families:
        return f" (did you mean 'tasks.{requirement}'? the operator's tasks are named tasks.<name>)"
    others = [name for name in (*by_id, *families) if name not in (task.id, task.family)]
    return did_you_mean(requirement, others)


def _resolve(
    requirement: str, task: Task, by_id: Mapping[str, Task], families: Mapping[str, list[str]]
) -> list[str]:
    """A ``requires`` entry as ids: itself, or its family's member on the task's host, or all
    of the family's members."""
    if requirement in by_id:
        return [requirement]
    members = families.get(requirement, [])
    if task.host is not None:
        same_host = f"{requirement}@{task.host}"
        if same_host in by_id:
            return [same_host]
    return sorted(members)


def _reach(neighbours, start: Iterable[str]) -> set[str]:
    """Every node reachable from ``start`` through ``neighbours`` (a start node only when it is
    reachable from another)."""
    seen: set[str] = set()
    stack = list(start)
    while stack:
        for node in neighbours(stack.pop()):
            if node not in seen:
                seen.add(node)
                stack.append(node)
    return seen
