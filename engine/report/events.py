"""What a run reports, as it happens: frozen event values, and the sink protocol.

The executor emits events in order — :class:`RunStarted`, then for each task
:class:`TaskStarted` / :class:`OutputChunk`\\* / :class:`TaskFinished` (or only
:class:`TaskFinished` for a task that was skipped or whose host was unreachable before it
started), then :class:`RunFinished` — to every :class:`EventSink`: the progress display, JSON
lines, the JUnit report, the state database. Events are already masked when a sink gets them:
no sink ever sees a secret value. Sinks are called from the executor's threads one event at a
time (the executor serialises ``emit``), so a sink needs no locking of its own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class Status(str, enum.Enum):
    """How a task ended."""

    OK = "ok"  # ran (or checked) and changed nothing
    CHANGED = "changed"  # ran and changed something (in --check: would change)
    FAILED = "failed"  # ran and failed, or timed out
    SKIPPED = "skipped"  # never ran: a dependency failed or was skipped, or the run stopped
    UNREACHABLE = "unreachable"  # never ran: its host could not be reached

    def __str__(self) -> str:
        return self.value


DONE = (Status.OK, Status.CHANGED)
"""Statuses that count as done: ``--resume`` runs every task of the last run not in these."""


@dataclass(frozen=True)
class RunStarted:
    """A run begins. ``kind`` is ``"run"`` or ``"teardown"``; ``tasks`` the selected ids in
    execution order, with ``hosts[i]`` the host (or ``"local"``) of ``tasks[i]``;
    ``destructive`` the ids of those that remove data (secrets, keys, buckets, files), which
    the sinks mark."""

    run_id: int
    deployment: str
    kind: str
    tasks: tuple[str, ...]
    hosts: tuple[str, ...]
    check: bool
    started_at: float  # time.time()
    argv: tuple[str, ...] = ()
    destructive: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskStarted:
    """A task begins on its host (``"local"`` for the deployer)."""

    run_id: int
    task_id: str
    host: str
    at: float  # time.time()


@dataclass(frozen=True)
class OutputChunk:
    """Output of a running task: a command's stdout/stderr or a local program's (nixops4),
    decoded and masked. Sent only while the task runs; ``stream`` is ``"stdout"`` or
    ``"stderr"``."""

    run_id: int
    task_id: str
    host: str
    stream: str
    text: str


@dataclass(frozen=True)
class OutputCut:
    """How a task's output was cut before it was reported: its first ``dropped`` bytes are
    not in the event's ``output`` (the tail). ``log`` is the run's log file that keeps the
    whole output; None when nothing keeps it — the run has no log, or ``reason`` says why the
    log could not be written. Sinks render it with ``recap.log_note``."""

    dropped: int
    log: Path | None = None
    reason: str = ""


@dataclass(frozen=True)
class TaskFinished:
    """A task ended (or was given up without starting: skipped, unreachable).

    ``message`` says why it failed, was skipped (``"skipped: dependency mastodon.secrets
    failed"``) or unreachable; ``changes`` lists what changed (or would, in --check), one
    short line each; ``diff`` is a unified diff for ``--diff`` (secrets masked); ``output``
    the task's command output (masked; may be long — sinks truncate for display): all of it,
    or, when ``output_cut`` says so, its tail.
    """

    run_id: int
    task_id: str
    host: str
    status: Status
    duration: float
    message: str = ""
    changes: tuple[str, ...] = ()
    diff: str = ""
    output: str = ""
    at: float = 0.0
    output_cut: OutputCut | None = None


@dataclass(frozen=True)
class RunFinished:
    """The run ended. ``exit_status``: 0 all done, 1 a task failed or a host was unreachable,
    130 interrupted. ``recap`` maps each host to its count per status value."""

    run_id: int
    exit_status: int
    duration: float
    interrupted: bool
    recap: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


Event = RunStarted | TaskStarted | OutputChunk | TaskFinished | RunFinished


class EventSink(Protocol):
    """Receives every event of a run, in order."""

    def handle(self, event: Event) -> None:
        """Take one event. Must not raise for a well-formed event."""

    def close(self) -> None:
        """The run is over (called once, after :class:`RunFinished` or on an abort)."""
