"""The task graph: tasks as nodes, "must finish first" as edges, validated before anything runs.

:meth:`TaskGraph.build` is the only way in. It resolves every ``requires`` entry to task ids,
and raises one :class:`~fedi_run.engine.errors.GraphError` listing every duplicate id, unknown
dependency, unknown host and cycle (the cycle printed in full). An edge ``a -> b`` means ``a``
runs before ``b``. Plugins never see this object: they return :class:`Task` values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from functools import cached_property
from types import MappingProxyType

import networkx as nx

from fedi_run.engine.errors import GraphError
from fedi_run.engine.model.validators import did_you_mean
from fedi_run.engine.planning.tasks import Task


def _origin(task: Task) -> str:
    if task.plugin:
        return f"plugin {task.plugin!r}"
    return "the playbook's [tasks]" if task.namespace == "tasks" else "the engine"


class TaskGraph:
    """A validated, acyclic graph of tasks. Immutable once built."""

    def __init__(self, tasks: Mapping[str, Task], digraph: nx.DiGraph):
        self.tasks: Mapping[str, Task] = MappingProxyType(dict(tasks))
        self._graph = digraph

    @classmethod
    def build(cls, tasks: Iterable[Task], hosts: Collection[str]) -> TaskGraph:
        """Validate ``tasks`` against each other and the known ``hosts``; see the module doc."""
        problems: list[str] = []
        by_id: dict[str, Task] = {}
        for task in tasks:
            if task.id in by_id:
                problems.append(
                    f"duplicate task id {task.id!r}: contributed by {_origin(by_id[task.id])} "
                    f"and by {_origin(task)}"
                )
                continue
            by_id[task.id] = task
            if task.host is not None and task.host not in hosts:
                problems.append(
                    f"task {task.id!r} ({_origin(task)}) runs on host {task.host!r}, which is not "
                    f"in [hosts]{did_you_mean(task.host, hosts)}"
                )
        families: dict[str, list[str]] = defaultdict(list)
        for task_id, task in by_id.items():
            if task.family != task_id:
                families[task.family].append(task_id)
        graph = nx.DiGraph()
        graph.add_nodes_from(by_id)
        for task in by_id.values():
            for requirement in task.requires:
                targets = _resolve(requirement, task, by_id, families)
                if not targets:
                    hint = did_you_mean(requirement, [*by_id, *families])
                    problems.append(
                        f"task {task.id!r} ({_origin(task)}) requires {requirement!r}, which is "
                        f"not a task{hint}"
                    )
                for target in targets:
                    if target == task.id:
                        problems.append(f"task {task.id!r} requires itself")
                    else:
                        graph.add_edge(target, task.id)
        if not problems and not nx.is_directed_acyclic_graph(graph):
            cycle = nx.find_cycle(graph)
            path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
            problems.append(f"dependency cycle: {path} (each runs before the next)")
        if problems:
            raise GraphError(problems)
        return cls(by_id, graph)

    def finished_with(self, make_final: Callable[[list[str]], Task]) -> TaskGraph:
        """A new graph with one more task that runs after every other: ``make_final`` gets the
        current sinks and returns the task, which must require exactly those."""
        final = make_final(self.sinks())
        if final.id in self.tasks:
            raise GraphError([f"duplicate task id {final.id!r}: it is reserved for the engine"])
        graph = self._graph.copy()
        graph.add_node(final.id)
        graph.add_edges_from((sink, final.id) for sink in final.requires)
        return TaskGraph({**self.tasks, final.id: final}, graph)

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.tasks

    @property
    def digraph(self) -> nx.DiGraph:
        """A read-only view of the underlying networkx graph (edges: before -> after)."""
        return nx.graphviews.subgraph_view(self._graph)

    def dependencies(self, task_id: str) -> list[str]:
        """The ids ``task_id`` waits for directly, sorted."""
        return sorted(self._graph.predecessors(task_id))

    def dependents(self, task_id: str) -> list[str]:
        """The ids that wait for ``task_id`` directly, sorted."""
        return sorted(self._graph.successors(task_id))

    def ancestors(self, task_ids: Iterable[str]) -> set[str]:
        """Everything the given tasks need, transitively."""
        return _reach(self._graph.predecessors, task_ids)

    def descendants(self, task_ids: Iterable[str]) -> set[str]:
        """Everything that needs the given tasks, transitively."""
        return _reach(self._graph.successors, task_ids)

    def steps(self, task_ids: Collection[str] | None = None) -> list[list[str]]:
        """The tasks (all, or ``task_ids``) grouped into steps: every task of a step depends
        only on tasks of earlier steps, so a step's tasks may run in parallel. Each step is
        sorted by id, so the result is deterministic."""
        graph = self._graph if task_ids is None else self._graph.subgraph(task_ids)
        return [sorted(step) for step in nx.topological_generations(graph)]

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Every task id in execution order: the steps, one after another."""
        return tuple(task_id for step in self.steps() for task_id in step)

    def sinks(self) -> list[str]:
        """The tasks nothing depends on."""
        return sorted(node for node, degree in self._graph.out_degree() if degree == 0)

    def hosts(self) -> set[str]:
        """The hosts any task runs on."""
        return {task.host for task in self.tasks.values() if task.host is not None}


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
