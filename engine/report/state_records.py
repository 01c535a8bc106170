"""The values the state database hands back — runs and tasks as frozen records (its errors
are in ``engine.errors``). ``engine.state`` stores them; this module only describes them."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fedi_run.engine.report.events import Status
from fedi_run.engine.report.recap import LOCAL

NEVER_RAN = "never ran"
DID_NOT_FINISH = "did not finish"


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
    deployer: str = ""
    """The deployer it ran on (:func:`~fedi_run.engine.report.state.deployer_identity`); "" for
    a run recorded before deployers were."""

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


@dataclass(frozen=True)
class LastOutcome:
    """What the latest run or teardown of a deployment (not a ``--check``) that touched a
    task did to it: ``run_id`` and its ``kind``, and the task's ``status`` there (ok, changed
    or failed; None: it started and did not finish), the task's ``host`` and the run's
    ``deployer``. Runs that skipped the task, or did not reach its host, did not touch it."""

    task_id: str
    run_id: int
    kind: str
    status: Status | None
    host: str = ""
    deployer: str = ""


def deployer_identity(local_directory: Path) -> str:
    """The deployer a run runs on, as the state records it: this machine's name and the run's
    local directory (``StateLocation.local_directory``), ``host:/path``."""
    return f"{socket.gethostname()}:{Path(local_directory).absolute()}"


def done_elsewhere(host: str, recorded: str, deployer: str | None) -> bool:
    """Whether a task on ``host`` that a run on the deployer ``recorded`` did is not done on
    ``deployer``: a task on ``local`` (its files are on the deployer that ran it), recorded
    on another deployer. A run recorded before deployers were (""), or no ``deployer`` given,
    counts as this one."""
    return host == LOCAL and bool(recorded) and deployer is not None and recorded != deployer
