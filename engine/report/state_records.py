"""The values the state database hands back — runs and tasks as frozen records — and its
errors. ``engine.state`` stores them; this module only describes them."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fedi_run.engine.errors import FediRunError
from fedi_run.engine.report.events import Status

NEVER_RAN = "never ran"
DID_NOT_FINISH = "did not finish"
_ELSEWHERE = "pass --state FILE to keep the run state elsewhere"


class StateError(FediRunError):
    """The state database cannot be created, opened, read or written (exit status 2)."""

    @classmethod
    def cannot(cls, what: str, path: Path, error: BaseException, hint: str = "") -> StateError:
        """``error: cannot <what> <path>: <reason>; <hint>``."""
        reason = getattr(error, "strerror", None) or str(error)
        hint = hint or f"make {path.parent} a writable directory, or {_ELSEWHERE}"
        return cls(f"error: cannot {what} {path}: {reason}; {hint}")


class RunNotFound(FediRunError):
    """``show-run`` (or :meth:`StateStore.get_run`) names a run that is not there (exit 2)."""


class NoPreviousRun(FediRunError):
    """``--resume`` with no previous run of the deployment recorded (exit 2)."""


class LockHeld(FediRunError):
    """Another run of the deployment holds its lock (exit status 3)."""

    exit_status = 3

    def __init__(self, deployment: str, lock_path: Path, holder: dict):
        self.deployment, self.lock_path = deployment, lock_path
        self.pid: int | None = holder.get("pid")
        self.started_at: float | None = holder.get("started_at")
        who = f"pid {self.pid}" if self.pid else "another process"
        if holder.get("host") and holder["host"] != socket.gethostname():
            who += f" on {holder['host']}"
        if self.started_at:
            started = time.localtime(self.started_at)
            who += f", started {time.strftime('%Y-%m-%d %H:%M:%S', started)}"
        super().__init__(
            f"error: another run of deployment '{deployment}' is in progress ({who}): it holds "
            f"the lock {lock_path}; wait for it to end (or stop it), then try again"
        )


@dataclass(frozen=True)
class TaskRecord:
    """One task of a recorded run. ``status`` is None for a task that never finished."""

    task_id: str
    host: str
    position: int
    status: Status | None
    duration: float | None
    message: str
    changes: tuple[str, ...]
    started_at: float | None
    finished_at: float | None
    output_tail: str = ""  # the last 4 KiB of a failed task's (masked) output, else ""

    @property
    def outcome(self) -> str:
        """The status value, or ``"did not finish"`` (started) / ``"never ran"``."""
        if self.status is not None:
            return self.status.value
        return DID_NOT_FINISH if self.started_at is not None else NEVER_RAN


@dataclass(frozen=True)
class RunRecord:
    """One recorded run. ``exit_status`` is None for a run that did not finish (killed).

    ``recap``: host → {outcome: count} (outcome as :attr:`TaskRecord.outcome`), hosts in order
    of first appearance. ``tasks`` is empty in the records :meth:`StateStore.runs` returns.
    """

    id: int
    deployment: str
    kind: str
    check: bool
    argv: tuple[str, ...]
    selection: str
    started_at: float
    finished_at: float | None
    duration: float | None
    exit_status: int | None
    interrupted: bool
    tasks: tuple[TaskRecord, ...] = ()
    recap: Mapping[str, Mapping[str, int]] = field(default_factory=dict, hash=False)

    @property
    def finished(self) -> bool:
        """Whether the run reached its end (a :class:`RunFinished` was recorded)."""
        return self.exit_status is not None

    @property
    def totals(self) -> dict[str, int]:
        """outcome → count over all hosts."""
        totals: Counter[str] = Counter()
        for counts in self.recap.values():
            totals.update(counts)
        return dict(totals)
