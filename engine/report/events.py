"""What a run reports, as it happens: frozen event values, and the sink protocol.

The executor emits events in order — :class:`RunStarted`, then for each task
:class:`TaskStarted` / :class:`OutputChunk`\\* / :class:`TaskFinished` (or only
:class:`TaskFinished` for a task that was skipped or whose host was unreachable before it
started), then :class:`RunFinished` — to every :class:`EventSink`: the progress display, JSON
lines, the JUnit report, the state database. Between them may come, at any time,
:class:`CommandSent` and :class:`ConnectionChanged` (what ``-vv`` shows) and
:class:`StopRequested` (Ctrl-C); a sink that has no use for an event ignores it. Events are
already masked when a sink gets them:
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
    """Output of a running task, as it comes: a command's on its host or a local program's
    (nixops4), decoded and masked — complete lines, or the start of a line that has waited a
    moment for its end (``engine.report.live_lines``). Sent only while the task runs;
    ``stream`` is ``"stdout"`` or ``"stderr"`` (a task script's commands print both into
    ``"stdout"``). A batch's output is each task's own."""

    run_id: int
    task_id: str
    host: str
    stream: str
    text: str


@dataclass(frozen=True)
class CommandSent:
    """A command or script was sent to ``host`` for ``tasks`` (the job's task ids: several
    for a batch sharing one round trip). ``command`` describes what was sent, one line per
    operation — a command's own text in full, a file or secret by its path (never a
    content) — masked. Shown with ``-vv``."""

    run_id: int
    tasks: tuple[str, ...]
    host: str
    command: str
    at: float = 0.0  # time.time()


@dataclass(frozen=True)
class ConnectionChanged:
    """The SSH connection to ``host`` changed: ``state`` is ``"connecting"`` (``attempt``
    1, 2, …), ``"connected"``, ``"retry"`` (that attempt failed: ``detail`` says why, a new
    one follows), ``"failed"`` (no attempt left) or ``"lost"`` (it broke while in use).
    Shown with ``-vv``."""

    run_id: int
    host: str
    state: str
    detail: str = ""
    attempt: int = 0
    at: float = 0.0  # time.time()


@dataclass(frozen=True)
class StopRequested:
    """The run was asked to stop (``reason``: ``"SIGINT"``, ``"SIGTERM"`` or ``"requested"``,
    another thread's stop). Not ``immediate``: nothing new starts, and ``running`` — each
    running task and its host — gets at most ``grace`` seconds to finish. ``immediate`` (a
    second Ctrl-C): the running tasks are stopped now, their connections closed. Shown by
    every sink a person reads, whatever the verbosity."""

    run_id: int
    reason: str
    running: tuple[tuple[str, str], ...]
    grace: float
    immediate: bool = False
    at: float = 0.0  # time.time()


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

    For a failure, ``command`` is the whole command that failed (masked; empty when no
    command did: a file, a plugin's call); ``stdout`` and ``stderr`` are the tails of the
    output's two streams when the producer tells them apart (a command run on a host; empty
    otherwise, ``output`` then mixes both); ``log`` is the file holding the task's whole
    output (None: the task printed nothing, or the run keeps no log).
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
    command: str = ""
    stdout: str = ""
    stderr: str = ""
    log: Path | None = None


@dataclass(frozen=True)
class RunFinished:
    """The run ended. ``exit_status``: 0 all done, 1 a task failed or a host was unreachable,
    130 interrupted. ``recap`` maps each host to its count per status value."""

    run_id: int
    exit_status: int
    duration: float
    interrupted: bool
    recap: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


Event = (
    RunStarted
    | TaskStarted
    | OutputChunk
    | TaskFinished
    | RunFinished
    | CommandSent
    | ConnectionChanged
    | StopRequested
)


class EventSink(Protocol):
    """Receives every event of a run, in order."""

    def handle(self, event: Event) -> None:
        """Take one event. Must not raise for a well-formed event."""

    def close(self) -> None:
        """The run is over (called once, after :class:`RunFinished` or on an abort)."""
