"""A whole run or teardown: lock, state, selection or resume, preflight, execution, recap.

:func:`run_project` is the engine's Python API for running (the CLI and the panel call it). Its
contract: it takes the deployment's lock (another run holding it: ``LockHeld``, exit 3), checks
what the run needs before touching any host (``nixops4`` on PATH when the apply is selected),
records the run in the state database, runs the tasks, and returns the exit status: 0 all done,
1 a task failed or a host was unreachable, 130 interrupted. SIGINT and SIGTERM stop it
gracefully when it runs in the main thread; from any thread, setting ``RunRequest.stop`` does.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fedi_run.engine.errors import FediRunError, PlaybookError, Problem
from fedi_run.engine.execute.connection import ConnectionPool, HostKeyPolicy
from fedi_run.engine.execute.scheduler import ExecutionOptions, Scheduler
from fedi_run.engine.nixops.apply import APPLY_ID
from fedi_run.engine.planning.selection import Selection, Selector
from fedi_run.engine.project import Project
from fedi_run.engine.report.events import EventSink, RunFinished, RunStarted, Status, TaskFinished
from fedi_run.engine.report.masking import MIN_LENGTH, Masker
from fedi_run.engine.report.output_log import OutputLog


class MissingTool(FediRunError):
    """A program the run needs is not installed on the deployer (exit status 2)."""


@dataclass(frozen=True)
class RunRequest:
    """Everything a run needs to know besides the project."""

    options: ExecutionOptions = ExecutionOptions()
    selector: Selector = Selector()
    state_path: Path | None = None
    resume: bool = False
    host_keys: HostKeyPolicy = HostKeyPolicy()
    retries: int = 2
    argv: tuple[str, ...] = ()
    stop: threading.Event | None = None
    """Set by another thread, it stops the run as SIGINT does (exit status 130): nothing new
    starts, running tasks get their grace period, the rest is recorded as interrupted."""


@dataclass(frozen=True)
class RunOutcome:
    """How the run ended."""

    run_id: int
    exit_status: int
    statuses: dict[str, Status] = field(default_factory=dict)
    recap: dict[str, dict[str, int]] = field(default_factory=dict)


def _selection(project: Project, request: RunRequest, store) -> Selection:
    if not request.resume:
        return project.select(request.selector)
    wanted = set(
        store.resume_tasks(project.playbook.name, request.options.kind, check=request.options.check)
    )
    order = tuple(t for t in project.graph.order if t in wanted)
    if not order:
        raise FediRunError(
            f"error: --resume: the last {request.options.kind} of {project.playbook.name!r} left "
            "nothing to do (every task is done, or none of its tasks is in the playbook any more)"
        )
    return Selection(order, dict.fromkeys(order, "--resume"))


def _missing_files(project: Project, selection: Selection) -> list[Problem]:
    """The deployer files the selected tasks will read that cannot be read."""
    playbook = project.playbook
    wanted: list[tuple[tuple[str, ...], str]] = []
    hosts = {project.graph.tasks[t].host for t in selection.order}
    for name in sorted(h for h in hosts if h is not None):
        if playbook.hosts[name].identity:
            wanted.append((("hosts", name, "identity"), playbook.hosts[name].identity))
    if playbook.initial_user and any(t.endswith(".initial-user") for t in selection.order):
        wanted.append((("initial_user", "password_file"), playbook.initial_user.password_file))
    acme = playbook.section("acme")
    if acme is not None and acme.ca_file and any(t.startswith("acme.") for t in selection.order):
        wanted.append((("acme", "ca_file"), acme.ca_file))
    problems = []
    for key, path in wanted:
        if not os.access(path, os.R_OK) or not os.path.isfile(path):
            problems.append(
                Problem(
                    playbook.origin(*key),
                    ".".join(key),
                    f"found {path!r}, which is not a readable file; expected the file to exist",
                )
            )
        elif key == ("initial_user", "password_file"):
            problems += _short_password(playbook.origin(*key), path)
    return problems


MIN_PASSWORD = max(8, MIN_LENGTH)
"""The initial user's password has at least this many characters: the apps' own minimum, and
long enough for the masker (engine/report/masking.py) to hide it in every output."""


def _short_password(origin: str, path: str) -> list[Problem]:
    """A problem if the password in ``path`` is too short — its length only, never its text."""
    length = len(Path(path).read_text(errors="replace").rstrip("\n"))
    if length >= MIN_PASSWORD:
        return []
    return [
        Problem(
            origin,
            "initial_user.password_file",
            f"found a password of {length} characters in {path!r}; expected at least "
            f"{MIN_PASSWORD}",
        )
    ]


def preflight(project: Project, selection: Selection, options: ExecutionOptions) -> None:
    """What must hold before any host is touched: the files the run reads, and nixops4."""
    problems = _missing_files(project, selection)
    if problems:
        raise PlaybookError(problems)
    if APPLY_ID in selection and not options.check and shutil.which("nixops4") is None:
        raise MissingTool(
            "error: nixops4 is not on PATH, and this run ends with `nixops4 apply`. Install "
            "NixOps4 (see its documentation), or pass --no-apply to prepare the hosts and render "
            "the deployment without applying it. Nothing was changed on any host."
        )


def run_project(project: Project, request: RunRequest, sinks: Sequence[EventSink]) -> RunOutcome:
    """Run ``project`` as ``request`` says, reporting to ``sinks`` (and the state database)."""
    from fedi_run.engine.report.recap import exit_status_for, recap
    from fedi_run.engine.report.state import StateStore, default_state_path

    playbook = project.playbook
    state_path = request.state_path or default_state_path(playbook.source)
    store = StateStore.open(state_path)
    try:
        with store.lock(playbook.name):
            outcome = _run_locked(project, request, store, sinks, recap, exit_status_for)
    finally:
        store.close()
        _close(sinks)
    return outcome


def _close(sinks: Sequence[EventSink]) -> None:
    """Close every sink, even when the run failed; a report that cannot be written is an
    error (exit 2) once the others are closed."""
    problems = []
    for sink in sinks:
        try:
            sink.close()
        except OSError as error:
            problems.append(f"{getattr(error, 'filename', None) or ''}: {error.strerror or error}")
    if problems:
        raise FediRunError(f"error: cannot write the report {'; '.join(problems)}")


def _run_locked(project, request, store, sinks, recap, exit_status_for) -> RunOutcome:
    playbook = project.playbook
    selection = _selection(project, request, store)
    preflight(project, selection, request.options)
    order = selection.order
    if request.options.kind == "teardown":
        order = tuple(reversed(order))
    hosts = tuple(project.graph.tasks[t].where for t in order)
    run_id = store.begin_run(
        playbook.name,
        request.options.kind,
        order,
        hosts,
        request.options.check,
        request.argv,
        selection=request.selector.describe() if not request.resume else "--resume",
    )
    everyone: list[EventSink] = [store, *sinks]
    finished: list[TaskFinished] = []

    def emit(event) -> None:
        if isinstance(event, TaskFinished):
            finished.append(event)
        for sink in everyone:
            sink.handle(event)

    masker = Masker()
    log = OutputLog.create(store.path.parent, run_id, masker)  # before any host is touched
    pool = ConnectionPool(playbook.hosts, request.host_keys, request.retries)
    scheduler = Scheduler(
        project.graph,
        order,
        pool,
        masker,
        emit,
        request.options,
        run_id,
        playbook=playbook,
        state_dir=store.path.parent,
        log=log,
        stop_when=request.stop,
    )
    started = time.time()
    scheduler.emit(
        RunStarted(
            run_id,
            playbook.name,
            request.options.kind,
            order,
            hosts,
            request.options.check,
            started,
            tuple(request.argv),
        )
    )
    restore = _install_signal_handlers(scheduler)
    try:
        statuses = scheduler.run()
    finally:
        restore()
        pool.close_all()
    summary = recap(finished)
    status = exit_status_for(summary, scheduler.interrupted)
    scheduler.emit(
        RunFinished(run_id, status, time.time() - started, scheduler.interrupted, summary)
    )
    return RunOutcome(run_id, status, statuses, summary)


def _install_signal_handlers(scheduler: Scheduler):
    """SIGINT/SIGTERM stop the scheduler gracefully; returns a function restoring the old ones."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def handler(signum, frame) -> None:  # noqa: ARG001
        scheduler.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore
