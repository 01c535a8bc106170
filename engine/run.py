"""A whole run or teardown: lock, state, selection or resume, preflight, execution, recap.

:func:`run_project` is the engine's Python API for running (the CLI and the panel call it). Its
contract: it takes the deployment's lock (another run holding it: ``LockHeld``, exit 3), checks
what the run needs before touching any host (the files it reads, among them each rendered host's
base configuration, each host's identity a key it can log in with, the initial user's password
UTF-8; the files it writes: each fetch's, the rendered deployment's directory; ``git`` on PATH
when the render is selected, ``nixops4`` when the apply is: ``engine.preflight``), records the
run in the state database, runs the tasks, and returns the exit status: 0 all done, 1 a task
failed or a host was unreachable, 130 interrupted. SIGINT and SIGTERM stop it gracefully when it
runs in the main thread (a second SIGINT stops it at once: ``engine.execute.stopping``); from
any thread, setting ``RunRequest.stop`` does. With ``--resume``, selection filters narrow what
the last run left to do; what they leave out is recorded unrun, for the next ``--resume``. A
report (a sink) that cannot be written at the end is an error with the run's own exit status,
unless that was 0 (then 2).

Before any host, too: a teardown that changes something must be confirmed (``RunRequest.yes``;
else ``NotConfirmed``, exit 2); the lock is the deployment's own — its name and playbook
directory, whatever the state file (``engine.report.locks``) — and, with a PostgreSQL state
(``--state postgresql://…``), also the deployment's advisory lock in that database, which
keeps deployers on other machines out; a PostgreSQL state that cannot be reached is an error
(exit 2) before any host, and one whose connection breaks during the run stops it
(``StateLockLost``, exit 1); a run whose domain differs from
the one of the last run whose ``nixops4 apply`` succeeded needs ``change_domain``
(``DomainChanged``, exit 2; a deployment never applied has nothing to guard); the initial
user's password is read once and masked in all its forms; and the secrets this deployment
placed before (the state records their paths) are checked, restored or generated anew as
``engine.execute.secret_book`` says — a task that succeeds has what it placed or removed
recorded.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from fedi_run.engine import startup
from fedi_run.engine.errors import (
    DomainChanged,
    FediRunError,
    NotConfirmed,
    NothingToResume,
    StateError,
    StateLockLost,
)
from fedi_run.engine.execute.connection import ConnectionPool, HostKeyPolicy
from fedi_run.engine.execute.jobs import Jobs, host_directory
from fedi_run.engine.execute.scheduler import ExecutionOptions, Scheduler
from fedi_run.engine.execute.secret_book import placed_by, plan_secrets, removed_by
from fedi_run.engine.execute.stopping import install_signal_handlers
from fedi_run.engine.nixops.apply import APPLY_ID
from fedi_run.engine.planning.selection import Selection, Selector, outside_needs
from fedi_run.engine.preflight import preflight
from fedi_run.engine.private_files import make_private_dirs
from fedi_run.engine.project import Project
from fedi_run.engine.report.events import (
    DONE,
    EventSink,
    RunFinished,
    RunStarted,
    Status,
    TaskFinished,
)
from fedi_run.engine.report.locks import deployment_lock
from fedi_run.engine.report.masking import Masker
from fedi_run.engine.report.output_log import OutputLog


@dataclass(frozen=True)
class RunRequest:
    """Everything a run needs to know besides the project."""

    options: ExecutionOptions = ExecutionOptions()
    selector: Selector = Selector()
    state_path: Path | str | None = None
    """The state (``--state``): an SQLite file, or a ``postgresql://`` URL (or a
    ``StateLocation``); None: ``.fedi-run/state.db`` beside the playbook."""
    resume: bool = False
    host_keys: HostKeyPolicy = HostKeyPolicy()
    retries: int = 2
    argv: tuple[str, ...] = ()
    stop: threading.Event | None = None
    """Set by another thread, it stops the run as SIGINT does (exit status 130): nothing new
    starts, running tasks get their grace period, the rest is recorded as interrupted."""
    yes: bool = False
    """A teardown (not ``--check``) was confirmed (``--yes``, the deployment's name typed, the
    panel's confirmation): without it, a teardown is refused (``NotConfirmed``, exit 2)."""
    rotate_secrets: tuple[str, ...] = ()
    """``--rotate-secrets``: names of the secrets to generate anew (``all``: every one)."""
    restore_secrets: tuple[tuple[str, Path], ...] = ()
    """``--restore-secret NAME=FILE``: each secret put back from its backup file."""
    change_domain: bool = False
    """``--change-domain``: run although the domain differs from the one last applied."""
    warn: Callable[[str], None] | None = None
    """Told, before any host is touched, each warning the operator must see (a secret
    generated anew and what that breaks); None: not told."""


@dataclass(frozen=True)
class RunOutcome:
    """How the run ended."""

    run_id: int
    exit_status: int
    statuses: dict[str, Status] = field(default_factory=dict)
    recap: dict[str, dict[str, int]] = field(default_factory=dict)


def _selection(project: Project, request: RunRequest, store) -> tuple[Selection, tuple[str, ...]]:
    """What the run runs, and what it records as left to do without running it.

    Without ``--resume``, the selector's selection (nothing left over). With it, what the last
    run left to do — narrowed, when filters are given too, to what they select: those tasks
    run, and the rest of what was left is recorded unrun, so the next ``--resume`` has it. A
    last run that left nothing to do is :class:`NothingToResume` (exit 0).

    Either way, unless ``--no-deps``, what the selected tasks need and the selection leaves
    out must be done already (``engine.report.readiness``), else :class:`DependenciesNotDone`
    — before any host is contacted."""
    kind, selector = request.options.kind, request.selector
    if not request.resume:
        selection, left_over = project.select(selector, kind), ()
    else:
        selection, left_over = _resumed(project, request, store)
    if selection.outside:
        from fedi_run.engine.report.readiness import check_outside, outside_states

        outcomes = store.last_outcomes(project.playbook.name, selection.outside)
        states = outside_states(project.graph, selection, outcomes, kind, _deployer(project, store))
        check_outside(
            project.graph,
            selection,
            states,
            kind,
            selector,
            _described(request),
            project.playbook.source,
        )
    return selection, left_over


def _resumed(project: Project, request: RunRequest, store) -> tuple[Selection, tuple[str, ...]]:
    """``--resume``: :func:`_selection` without the check of what it leaves out."""
    kind, selector = request.options.kind, request.selector
    wanted = set(
        store.resume_tasks(
            project.playbook.name,
            kind,
            check=request.options.check,
            deployer=_deployer(project, store),
        )
    )
    left = tuple(t for t in project.graph.order if t in wanted)
    if not left:
        raise NothingToResume(
            f"nothing to resume: the last {kind} of {project.playbook.name!r} left nothing to "
            "do (every task is done, or none of its tasks is in the playbook any more); "
            "nothing was run"
        )
    if not selector.filters:
        order, reason, left_over = left, "--resume", ()
    else:
        chosen = project.select(selector, kind)
        order = tuple(t for t in left if t in chosen)
        if not order:
            raise FediRunError(
                f"error: --resume {selector.describe()}: of the {len(left)} task(s) the last "
                f"{kind} of {project.playbook.name!r} left to do, the filters select none of "
                "them; nothing was run (`fedi-run history PLAYBOOK` and "
                "`fedi-run show-run PLAYBOOK ID` show what is left)"
            )
        reason = f"--resume {selector.describe()}"
        left_over = tuple(t for t in left if t not in chosen)
    outside = outside_needs(project.graph, order, kind) if selector.with_dependencies else {}
    return Selection(order, dict.fromkeys(order, reason), outside), left_over


def _described(request: RunRequest) -> str:
    """The selection as the state records it: the filters, ``--resume``, or both."""
    if not request.resume:
        return request.selector.describe()
    return "--resume" + (f" {request.selector.describe()}" if request.selector.filters else "")


def run_project(project: Project, request: RunRequest, sinks: Sequence[EventSink]) -> RunOutcome:
    """Run ``project`` as ``request`` says, reporting to ``sinks`` (and the state database)."""
    from fedi_run.engine.report.recap import exit_status_for, recap
    from fedi_run.engine.report.state import StateStore
    from fedi_run.engine.report.state_location import locate_state, without_passwords

    playbook = project.playbook
    _confirmed(project, request)
    request = replace(request, argv=without_passwords(request.argv))
    store = StateStore.open(locate_state(request.state_path, playbook.source))
    command = ("fedi-run", *request.argv) if request.argv else without_passwords(sys.argv)
    try:
        with (
            deployment_lock(playbook.name, Path(playbook.source).parent, command),
            store.lock(playbook.name, command),
        ):
            outcome = _run_locked(project, request, store, sinks, recap, exit_status_for)
    except BaseException:
        store.close()
        _close(sinks, None)  # the run's own error is the one raised
        raise
    store.close()
    _close(sinks, outcome.exit_status)
    return outcome


def _confirmed(project: Project, request: RunRequest) -> None:
    """A teardown that changes something must be confirmed (:attr:`RunRequest.yes`)."""
    if request.options.kind == "teardown" and not request.options.check and not request.yes:
        raise NotConfirmed(
            f"error: a teardown of deployment '{project.playbook.name}' undoes its tasks on "
            "its hosts (removes their secrets and files, puts back the originals) and was not "
            "confirmed: type the deployment's name when asked (on a terminal), or pass --yes. "
            "Nothing was changed."
        )


def _domain_guard(project: Project, request: RunRequest, store) -> None:
    """A run at another domain than the one last applied needs ``--change-domain``: "applied"
    is the last run whose ``nixops4 apply`` succeeded (a run with ``--no-apply`` or
    ``--check`` applies nothing, and is not it); when none did, there is nothing to guard."""
    if request.options.kind != "run" or request.change_domain:
        return
    playbook = project.playbook
    applied = store.applied_domain(playbook.name)
    if applied is not None and applied[0] != playbook.domain:
        raise DomainChanged(playbook.name, applied[0], playbook.domain, applied[1])


def _learn_password(project: Project, masker: Masker) -> None:
    """The initial user's password, read once from its file, is masked in every form it may
    take (``Masker.add_forms``) — in every run, also one that does not place it. A file that
    cannot be read is preflight's business (when a selected task reads it)."""
    user = project.playbook.initial_user
    if user is None or not user.password_file:
        return
    try:
        password = Path(user.password_file).read_text(encoding="utf-8").rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return
    masker.add_forms(password)


class _SecretRecords:
    """Records in the state what each task that succeeded did to the secrets of its host
    (``engine.execute.secret_book``), and the domain of an apply that succeeded."""

    def __init__(self, project: Project, kind: str, check: bool, store, run_id: int):
        self._project, self._kind, self._check = project, kind, check
        self._store, self._run_id = store, run_id

    def handle(self, event: TaskFinished) -> None:
        if self._check or event.status not in DONE:
            return
        task = self._project.graph.tasks.get(event.task_id)
        if task is None:
            return
        playbook = self._project.playbook
        if task.host is not None:
            operations = task.actions if self._kind == "run" else task.undo_actions()
            self._store.record_secrets(
                playbook.name,
                task.host,
                self._run_id,
                task.id,
                placed=placed_by(operations) if self._kind == "run" else (),
                removed=removed_by(operations),
            )
        if task.id == APPLY_ID and self._kind == "run":
            self._store.record_applied(playbook.name, playbook.domain, self._run_id)


def _close(sinks: Sequence[EventSink], status: int | None) -> None:
    """Close every sink, even when the run failed. A report that cannot be written is an
    error once the others are closed — with the run's own exit status ``status`` when that is
    not 0, so a report never hides how the run went (exit 2 after a run that succeeded); with
    ``status`` None (the run raised its own error), not raised at all."""
    problems = []
    for sink in sinks:
        try:
            sink.close()
        except OSError as error:
            problems.append(f"{getattr(error, 'filename', None) or ''}: {error.strerror or error}")
    if problems and status is not None:
        error = FediRunError(f"error: cannot write the report {'; '.join(problems)}")
        error.exit_status = status or error.exit_status
        raise error


def _run_locked(project, request, store, sinks, recap, exit_status_for) -> RunOutcome:
    playbook = project.playbook
    selection, left_over = _selection(project, request, store)
    preflight(project, selection, request.options)
    _domain_guard(project, request, store)
    order = selection.order
    if request.options.kind == "teardown":
        order = tuple(reversed(order))
    rotate = request.rotate_secrets + (("all",) if request.options.rotate_secrets else ())
    secret_plan = plan_secrets(
        project.graph,
        order,
        store.placed_secrets(playbook.name),
        run=request.options.kind == "run",
        rotate=rotate,
        restore=request.restore_secrets,
    )
    options = replace(
        request.options, rotate_secrets=secret_plan.rotate_all, rotate_paths=secret_plan.rotate
    )
    for warning in secret_plan.warnings:
        if request.warn is not None:
            request.warn(warning)
    hosts = tuple(project.graph.tasks[t].where for t in order)
    run_id = store.begin_run(  # what a narrowed --resume leaves over: recorded, not run
        playbook.name,
        request.options.kind,
        order + left_over,
        hosts + tuple(project.graph.tasks[t].where for t in left_over),
        request.options.check,
        request.argv,
        selection=_described(request),
        deployer=_deployer(project, store),
    )
    everyone: list[EventSink] = [store, *sinks]
    finished: list[TaskFinished] = []
    records = _SecretRecords(project, request.options.kind, request.options.check, store, run_id)

    def emit(event) -> None:
        if isinstance(event, TaskFinished):
            finished.append(event)
        for sink in everyone:
            sink.handle(event)
        if isinstance(event, TaskFinished):
            records.handle(event)

    masker = Masker()
    _learn_password(project, masker)
    for value in secret_plan.restore.values():
        masker.add(value)
    local = _local_directory(store, playbook)
    log = OutputLog.create(local, run_id, masker)  # before any host is touched
    pool = ConnectionPool(playbook.hosts, request.host_keys, request.retries)
    scheduler = Scheduler(
        project.graph,
        order,
        pool,
        masker,
        emit,
        options,
        run_id,
        playbook=playbook,
        state_dir=local,
        log=log,
        stop_when=request.stop,
        secret_generators=project.secret_generators,
        secret_plan=secret_plan,
        jobs=Jobs(host_directory(playbook.name, store.location.identity)),
    )
    store.on_lock_lost = scheduler.stop
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
            destructive=tuple(
                t
                for t in order
                if project.graph.tasks[t].is_destructive(request.options.kind == "teardown")
            ),
        )
    )
    startup.started()  # the tasks start: the collector back to normal (engine/startup.py)
    restore = install_signal_handlers(scheduler)
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
    if store.lock_lost:
        raise StateLockLost(
            f"error: run {run_id} of deployment '{playbook.name}' stopped: {store.lock_lost}. "
            "The deployment's lock was held by that connection, so another deployer may have "
            "taken it: nothing new was started after that. `fedi-run history` shows what ran "
            "(what the state missed is recorded as not finished), and `--resume` goes on "
            "once the state can be reached again."
        )
    return RunOutcome(run_id, status, statuses, summary)


def _deployer(project: Project, store) -> str:
    """This deployer, as the state records it: a task on ``local`` done on another one (a
    teammate's machine, another panel worker, sharing a PostgreSQL state) made its files
    there, so ``--resume`` runs it again here and a selection that needs it refuses to run
    without it (``engine.report.state_records.done_elsewhere``)."""
    from fedi_run.engine.report.state import deployer_identity

    return deployer_identity(store.location.local_directory(project.playbook.source))


def _local_directory(store, playbook) -> Path:
    """Where the run keeps its local files (output logs, ACME account keys): the SQLite
    state's directory, or — a PostgreSQL state — ``.fedi-run/`` beside the playbook, made
    0700 here (``StateLocation.local_directory``)."""
    directory = store.location.local_directory(playbook.source)
    if store.location.postgresql:
        try:
            make_private_dirs(directory)
        except OSError as error:
            raise StateError.cannot(
                "create the run's local directory",
                Path(error.filename or directory),
                error,
                f"make {Path(playbook.source).absolute().parent} writable",
            ) from None
    return directory
