"""Drawing a plan's graph: Mermaid (as the seed README draws its checks), Graphviz DOT, JSON.

Edges point from a task to the tasks that wait for it, i.e. in execution order. Only the
planned tasks and the edges between them are drawn.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from fedi_run.engine.planning.plan import Plan

FORMATS = ("mermaid", "dot", "json")


def _edges(plan: Plan) -> list[tuple[str, str]]:
    planned = {task.id for task in plan.tasks}
    return [(dep, task.id) for task in plan.tasks for dep in task.requires if dep in planned]


def to_mermaid(plan: Plan) -> str:
    """A ``flowchart LR`` with one node per task (its id, and its host in small type)."""

    def text(value: str) -> str:
        return (
            value.replace("&", "#amp;")
            .replace('"', "#quot;")
            .replace("<", "#lt;")
            .replace(">", "#gt;")
        )

    ids = {task.id: f"t{number}" for number, task in enumerate(plan.tasks)}
    lines = ["flowchart LR"]
    for task in plan.tasks:
        lines.append(
            f"  {ids[task.id]}[\"{text(task.id)}<br><font size='1'>{text(task.host)}</font>\"]"
        )
    for before, after in _edges(plan):
        lines.append(f"  {ids[before]} --> {ids[after]}")
    return "\n".join(lines) + "\n"


def to_dot(plan: Plan) -> str:
    """A Graphviz ``digraph`` named after the deployment, one box per task."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = [f"digraph {quoted(plan.deployment)} {{", "  rankdir=LR;", "  node [shape=box];"]
    for task in plan.tasks:
        lines.append(f"  {quoted(task.id)} [label={quoted(task.id + chr(10) + task.host)}];")
    for before, after in _edges(plan):
        lines.append(f"  {quoted(before)} -> {quoted(after)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(plan: Plan) -> str:
    """``{"deployment", "nodes": [{"id", "host", "tags", "plugin", "step", ...}],
    "edges": [{"from", "to"}]}``."""
    nodes = [
        {
            "id": t.id,
            "host": t.host,
            "tags": list(t.tags),
            "plugin": t.plugin,
            "step": t.step,
            "selected_by": t.selected_by,
            "description": t.description,
        }
        for t in plan.tasks
    ]
    edges = [{"from": before, "to": after} for before, after in _edges(plan)]
    return (
        json.dumps({"deployment": plan.deployment, "nodes": nodes, "edges": edges}, indent=2) + "\n"
    )


RENDERERS: dict[str, Callable[[Plan], str]] = {
    "mermaid": to_mermaid,
    "dot": to_dot,
    "json": to_json,
}
