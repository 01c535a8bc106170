"""The plan: the selected tasks in the order they would run, grouped into parallel steps, and
what they need that the selection leaves out (not run: it must be done already)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.selection import Selection

DESTRUCTIVE_MARK = "!"
"""The first column of a destructive task's line in the plan."""


@dataclass(frozen=True)
class PlannedTask:
    """One task of a plan: where it runs, what it waits for, and why it was selected."""

    id: str
    host: str
    requires: tuple[str, ...]
    tags: tuple[str, ...]
    selected_by: str
    description: str
    plugin: str
    step: int
    destructive: bool = False
    """Whether the task removes data (secrets, keys, buckets, files): ``Task.is_destructive``."""
    removes: tuple[str, ...] = ()
    """The paths it removes with what they hold (``Task.removes``)."""
    skipped: str = ""
    """Why the task will be skipped (``Task.skipped``: ``"when: false"``); empty: it runs."""


@dataclass(frozen=True)
class OutsideTask:
    """A task the selected ones need that the selection leaves out: it is not run, and must
    be done already (``Selection.outside``). ``state`` is what the deployment's state records
    of it ("done in run 3", "never run", ...; "" when the state was not read), ``done``
    whether that is enough (None: not read)."""

    id: str
    host: str
    needed_by: tuple[str, ...]
    state: str = ""
    done: bool | None = None


@dataclass(frozen=True)
class Plan:
    """``steps[i]`` holds the tasks that may run in parallel once steps ``0..i-1`` are done;
    ``outside`` what they need and the selection leaves out."""

    deployment: str
    steps: tuple[tuple[PlannedTask, ...], ...]
    outside: tuple[OutsideTask, ...] = ()

    @property
    def tasks(self) -> tuple[PlannedTask, ...]:
        """Every planned task in execution order."""
        return tuple(task for step in self.steps for task in step)

    def to_json(self) -> dict[str, Any]:
        """``{"deployment": ..., "tasks": [{"id", "host", "requires", "tags", "selected_by",
        ..., "destructive", "removes"}, ...], "outside": [{"id", "host", "needed_by", "state",
        "done"}, ...]}``, both in execution order."""
        return {
            "deployment": self.deployment,
            "tasks": [
                {
                    **asdict(task),
                    "requires": list(task.requires),
                    "tags": list(task.tags),
                    "removes": list(task.removes),
                }
                for task in self.tasks
            ],
            "outside": [
                {**asdict(task), "needed_by": list(task.needed_by)} for task in self.outside
            ],
        }

    def render(self) -> str:
        """The plan as text: a header, then each step with its tasks, hosts and reasons; a
        destructive task is marked ``!`` in the first column and listed at the end with what
        it removes."""
        tasks = self.tasks
        hosts = sorted({t.host for t in tasks})
        lines = [
            f"Plan for {self.deployment}: {len(tasks)} task(s) in {len(self.steps)} step(s) "
            f"on {len(hosts)} host(s)",
        ]
        width = max((len(t.id) for t in tasks), default=4)
        host_width = max((len(t.host) for t in tasks), default=4)
        lines.append("")
        lines.append(f"  {'TASK':<{width}}  {'HOST':<{host_width}}  SELECTED BY")
        for number, step in enumerate(self.steps, 1):
            lines.append("")
            lines.append(
                f"step {number} ({len(step)} in parallel)" if len(step) > 1 else f"step {number}"
            )
            for task in step:
                mark = DESTRUCTIVE_MARK if task.destructive else " "
                skipped = f"  (skipped: {task.skipped})" if task.skipped else ""
                lines.append(
                    f"{mark} {task.id:<{width}}  {task.host:<{host_width}}  {task.selected_by}"
                    + skipped
                )
        destructive = [task for task in tasks if task.destructive]
        if destructive:
            lines += ["", f"{DESTRUCTIVE_MARK} destructive: {len(destructive)} task(s) remove data"]
            for task in destructive:
                what = ", ".join(task.removes) or task.description
                lines.append(f"  {task.id} @{task.host}: removes {what}")
        if self.outside:
            lines += [
                "",
                f"not run, must be done already: {len(self.outside)} task(s) the "
                "selection needs and leaves out",
            ]
            width = max(len(t.id) for t in self.outside)
            host_width = max(len(t.host) for t in self.outside)
            for task in self.outside:
                lines.append(
                    f"  {task.id:<{width}}  {task.host:<{host_width}}  "
                    f"{task.state or 'state not read'}; needed by {_names(task.needed_by)}"
                )
        return "\n".join(lines)


def _names(ids: tuple[str, ...], most: int = 3) -> str:
    """``a, b, c`` or ``a, b, c and 4 more``."""
    shown = ", ".join(ids[:most])
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")


def make_plan(
    deployment: str,
    graph: TaskGraph,
    selection: Selection,
    states: Mapping[str, tuple[str, bool]] | None = None,
) -> Plan:
    """The plan of ``selection`` over ``graph``; ``states``: for each task of
    ``selection.outside``, what the state records of it and whether it is done (None: the
    state was not read)."""
    steps = []
    for number, step in enumerate(
        graph.steps(selection.reasons.keys() if len(selection) < len(graph) else None)
    ):
        planned = []
        for task_id in step:
            task = graph.tasks[task_id]
            planned.append(
                PlannedTask(
                    id=task.id,
                    host=task.where,
                    requires=tuple(graph.dependencies(task_id)),
                    tags=task.tags,
                    selected_by=selection.reasons[task_id],
                    description=task.description,
                    plugin=task.plugin,
                    step=number,
                    destructive=task.is_destructive(),
                    removes=task.removes(),
                    skipped=task.skipped,
                )
            )
        steps.append(tuple(planned))
    outside = tuple(
        OutsideTask(need, graph.tasks[need].where, needed_by, *(states or {}).get(need, ("", None)))
        for need, needed_by in selection.outside.items()
    )
    return Plan(deployment, tuple(steps), outside)
