"""Every dependency cycle of a graph, one per knot: for :class:`~.graph.TaskGraph` to report.

:func:`find_cycles` takes the graph as ``node -> the nodes after it`` and returns one cycle for
each strongly connected component of more than one node (a knot of tasks each waiting, through
the others, for itself): the shortest cycle through the component's smallest node, as the path
``[a, b, ..., a]``. Knots are disjoint, so fixing one never hides another; a component holds
many cycles, and the one shown is enough to break it open. Pure Python, linear in the graph.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping


def find_cycles(after: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle per knot of ``after`` (see the module docstring), sorted by first node."""
    successors = {node: sorted(set(targets)) for node, targets in after.items()}
    for targets in list(successors.values()):
        for target in targets:
            successors.setdefault(target, [])
    cycles = []
    for component in _components(successors):
        if len(component) > 1:
            cycles.append(_cycle_through(min(component), component, successors))
    return sorted(cycles)


def _components(successors: Mapping[str, list[str]]) -> list[set[str]]:
    """The strongly connected components (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(successors):
        if root in index:
            continue
        work = [(root, iter(successors[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return found


def _cycle_through(start: str, component: set[str], successors) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``component`` (breadth first)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in successors[node]:
            if child not in component:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError("a strongly connected component has a cycle")  # pragma: no cover
