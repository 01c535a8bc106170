"""What re-running one task alone runs: the engine's ``--only TASK`` selection, shown to the
operator before they confirm it.

Contract: :func:`plan_rerun` loads the deployment as a run would (its ``playbook.toml`` and
inventory, with or without the apply) and selects ``Selector(only=(task,))`` for a run
(docs/selection.md): the task and what it needs, pulled in and run too (each with the engine's
reason, ``required by <task>``), in execution order. A task the deployment no longer has, or a
deployment that cannot be loaded, is a :class:`RerunPlan` with ``problem`` set (the engine's
message) and no tasks: the page says why it cannot re-run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PlannedTask:
    """One task the re-run runs, its host (``local``: the deployer) and why it is selected."""

    id: str
    host: str
    reason: str


@dataclass(frozen=True)
class RerunPlan:
    """What ``--only task`` runs in the deployment as it is now."""

    task: str
    tasks: tuple[PlannedTask, ...] = ()
    problem: str = ""

    @property
    def pulled_in(self) -> tuple[PlannedTask, ...]:
        """The tasks run besides the one asked for (what it needs)."""
        return tuple(t for t in self.tasks if t.id != self.task)


def plan_rerun(playbook: Path, inventory: Path, apply: bool, task: str) -> RerunPlan:
    """The tasks ``--only task`` runs (see the module's contract)."""
    from fedi_run.engine.errors import FediRunError
    from fedi_run.engine.planning.selection import Selector
    from fedi_run.engine.project import load_project

    try:
        project = load_project(playbook, [inventory], apply=apply)
        if task not in project.graph.tasks:
            return RerunPlan(
                task,
                problem=f"the deployment has no task {task} any more (its settings changed "
                "since this run), so it cannot be re-run alone",
            )
        selection = project.select(Selector(only=(task,)), "run")
    except FediRunError as error:
        return RerunPlan(task, problem=str(error))
    return RerunPlan(
        task,
        tuple(
            PlannedTask(t, project.graph.tasks[t].host or "local", selection.reasons[t])
            for t in selection.order
        ),
    )
