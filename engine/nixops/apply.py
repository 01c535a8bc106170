"""The final task of every run: ``nixops4 apply`` in the rendered deployment's directory."""

from __future__ import annotations

from pathlib import Path

from fedi_run.engine.model.playbook import Playbook
from fedi_run.engine.planning.operations import LocalCommand, Operation
from fedi_run.engine.planning.tasks import Task

APPLY_ID = "nixops4.apply"
STATE_DIRNAME = ".fedi-run"
APPLY_TIMEOUT = 4 * 3600.0
"""Seconds the apply may take — copying every host's closure and switching it takes far longer
than an SSH task's default limit; ``--timeout`` does not shorten it (a task's own limit wins)."""


def deployment_directory(playbook: Playbook) -> Path:
    """Where the NixOps4 deployment is rendered: ``.fedi-run/<name>/`` beside the playbook."""
    return playbook.source.absolute().parent / STATE_DIRNAME / playbook.name


def apply_task(
    playbook: Playbook, last_tasks: list[str], switch_off: Operation | None = None
) -> Task:
    """``nixops4.apply``, running after ``last_tasks`` (the graph's sinks) and so after every
    other task of the deployment. In a teardown it runs first: ``switch_off`` (the rendering
    with every service off), then the apply, before anything else is undone."""
    command = LocalCommand(
        ("nixops4", "apply", playbook.name, "--no-interactive", "--show-trace"),
        cwd=str(deployment_directory(playbook)),
    )
    return Task(
        id=APPLY_ID,
        host=None,
        requires=tuple(last_tasks),
        tags=("apply",),
        description=f"nixops4 apply {playbook.name}: make the rendered NixOS configuration live",
        actions=(command,),
        undo=(switch_off, command) if switch_off is not None else (command,),
        timeout=APPLY_TIMEOUT,
    )
