"""Running the selected tasks in dependency order, in parallel where the graph allows.

Contract of :class:`Scheduler`:

* a task starts only when every selected task it depends on is done (ok or changed) — in a
  teardown, when every selected task that depends on *it* is undone;
* at most ``forks`` jobs run at once, and on one host one job at a time, unless a task
  ``shares_host``; deployer-local tasks have no host limit. A job is one task, or — when several
  tasks of one host are ready at once and consist only of file-like operations and guarded
  commands — up to :data:`BATCH_LIMIT` of them in ONE round trip, each still reported on its
  own (and failing on its own); a task with a ``timeout`` of its own always runs alone;
* a failed task makes every task waiting on it, transitively, ``skipped`` with the reason; the
  other branches go on. With ``fail_fast`` nothing new starts after the first failure;
* a host whose connection cannot be made (after the connection's retries) or whose key is
  refused is unreachable: its remaining tasks are ``unreachable``; a connection lost during a
  task is retried once on a fresh connection (operations are idempotent) before that;
* :meth:`stop` (SIGINT/SIGTERM) starts nothing new, gives running tasks ``grace`` seconds, then
  closes the connections — which stops each running command on its host — and stops the
  deployer-local ones (``engine.execute.jobs``); everything not done is recorded as skipped
  ("interrupted"). ``stop(immediately=True)`` (a second Ctrl-C) does the closing at once. Each
  stop is reported at once (:class:`StopRequested`: the running tasks, their hosts, the grace
  period). A task whose command of an earlier run still runs on its host is not started
  again: it fails saying so;
* a running task's output streams as :class:`OutputChunk` events, each batched task's its own
  (``engine.report.live_lines``: masked, a secret split across reads too); each script sent is
  a :class:`CommandSent`, and a real pool's connection events :class:`ConnectionChanged`;
* every event goes through one lock to the sinks, masked: before its first task on a host, the
  executor reads the secrets already placed there — those of the graph's tasks, and those the
  state says this deployment placed there earlier (a service switched off since) — so no
  output can show one;
* before its first task on a host, a secret this deployment placed there in an earlier run
  and the selected tasks would place again (``SecretPlan.guarded``) must be there, not empty:
  else none of that host's tasks runs — each fails naming the secret and the ways on
  (``engine.execute.secret_book``);
* in a teardown, a task without an undo is not run: it is ``ok``, "left in place";
* a task with ``skipped`` set (its ``when`` is false) is not run, its host not contacted for
  it: it is ``skipped`` with that reason, and the tasks waiting on it go on as if it were done.
"""

from __future__ import annotations

import base64
import json
import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from fedi_run.engine.errors import (
    ActionFailed,
    CommandTimedOut,
    FediRunError,
    HostKeyRejected,
    HostUnreachable,
)
from fedi_run.engine.execute.connection import ConnectionPool
from fedi_run.engine.execute.jobs import Jobs, host_directory
from fedi_run.engine.execute.perform import Context, batchable, perform, perform_batch
from fedi_run.engine.execute.secret_book import SecretPlan, missing_error
from fedi_run.engine.execute.secret_generators import GENERIC
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.operations import Call, Secret
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.report.events import (
    CommandSent,
    ConnectionChanged,
    Event,
    OutputChunk,
    OutputCut,
    Status,
    StopRequested,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.masking import Masker
from fedi_run.engine.report.recap import LEFT_IN_PLACE

ABORTED = (
    "interrupted: still running when the grace period ended (its connection was closed, and "
    "its command stopped on the host)"
)
STOPPED_AT_ONCE = (
    "interrupted: stopped at once by a second Ctrl-C (its connection was closed, and its "
    "command stopped on the host)"
)
BATCH_LIMIT = 64
"""At most this many ready tasks of one host share one round trip."""


@dataclass(frozen=True)
class ExecutionOptions:
    """How to run: ``kind`` is ``"run"`` (actions) or ``"teardown"`` (undo, reversed)."""

    kind: str = "run"
    check: bool = False
    diff: bool = False
    forks: int = 10
    fail_fast: bool = False
    timeout: float = 600.0
    rotate_secrets: bool = False
    """Generate every selected secret anew (``--rotate-secrets all``)."""
    grace: float = 10.0
    rotate_paths: frozenset[str] = frozenset()
    """The secrets generated anew (``--rotate-secrets NAME``)."""


class Scheduler:
    """Runs ``order`` (selected task ids, in execution order) over ``graph``."""

    def __init__(
        self,
        graph: TaskGraph,
        order: Sequence[str],
        pool: ConnectionPool,
        masker: Masker,
        emit: Callable[[Event], None],
        options: ExecutionOptions,
        run_id: int,
        playbook=None,
        state_dir=None,
        log=None,
        stop_when: threading.Event | None = None,
        secret_generators: Mapping[str, Callable[[], str]] = GENERIC,
        jobs: Jobs | None = None,
        secret_plan: SecretPlan | None = None,
    ):
        """``stop_when``: an event another thread may set to stop the run as :meth:`stop`
        does (noticed within 0.2 s) — the panel's Stop button; signals need the main thread.
        ``secret_generators``: the run's (``Project.secret_generators``), handed to every
        task in its :class:`Context` (default: only the engine's generic ones).
        ``secret_plan``: what the state says this deployment placed, and what the run must
        find, restore or generate anew (``engine.execute.secret_book``; None: nothing
        recorded)."""
        self.graph = graph
        self.order = list(order)
        self.pool = pool
        self.masker = masker
        self.options = options
        self.run_id = run_id
        self._emit_to_sinks = emit
        self._emit_lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_when = stop_when
        self._stopped_at: float | None = None
        self._stop_reason = "requested"
        self._stop_now = False  # a second Ctrl-C: abort the running tasks at once
        self._announced: set[bool] = set()  # the StopRequested emitted (immediate or not)
        self._aborted = False  # the grace period ended: the connections were closed under the tasks
        self._abort_message = ABORTED
        self._playbook = playbook
        self._state_dir = state_dir
        self._log = log
        self._secret_generators = secret_generators
        if jobs is None:
            name = getattr(playbook, "name", None)
            jobs = Jobs(host_directory(name, state_dir) if name else None)
        self.jobs = jobs
        """The run's jobs: the pid files of its tasks on the hosts, its local processes."""
        self.statuses: dict[str, Status] = {}
        self.interrupted = False
        self._secret_plan = secret_plan or SecretPlan()
        self._secret_paths = _secret_paths(graph)
        for host, recorded in self._secret_plan.recorded.items():
            known = set(self._secret_paths.get(host, ())) | set(recorded)
            self._secret_paths[host] = tuple(sorted(known))
        self._primed: set[str] = set()
        self._blocked: dict[str, FediRunError] = {}
        """host → why none of its tasks may run (a secret it placed is lost there)."""
        self._prime_lock = threading.Lock()
        observe = getattr(pool, "observe", None)  # a real pool reports its connections
        if observe is not None:
            observe(self._connection_changed)

    def _connection_changed(self, host: str, state: str, detail: str, attempt: int) -> None:
        self.emit(ConnectionChanged(self.run_id, host, state, detail, attempt, time.time()))

    def _prime_masker(self, host: str) -> None:
        """Learn the values of the secrets already on ``host`` (every secret any task of the
        deployment places there, and every one the state says it placed there), so that no
        output of this run can show one; and check that the guarded ones are there (else
        :class:`SecretMissing`, raised for every task of the host)."""
        with self._prime_lock:
            if host in self._blocked:
                raise self._blocked[host]
            if host in self._primed:
                return
            paths = self._secret_paths.get(host, ())
            found: dict[str, str] = {}
            if paths:
                quoted = " ".join(shlex.quote(p) for p in paths)
                # per path (by its index): "<i> s <base64>" there, "<i> e" empty, "<i> m" not
                # there — or "<i> u" when this user cannot tell (a directory it cannot search)
                script = (
                    f'i=0; for f in {quoted}; do if [ -s "$f" ]; then printf "%s s " $i; '
                    'base64 -w0 < "$f"; echo; elif [ -e "$f" ]; then echo "$i e"; '
                    'else a=${f%/*}; while [ -n "$a" ] && [ ! -e "$a" ]; do a=${a%/*}; done; '
                    'if [ -z "$a" ] || [ -x "$a" ]; then echo "$i m"; else echo "$i u"; fi; fi; '
                    "i=$((i+1)); done; true"
                )
                self.emit(
                    CommandSent(
                        self.run_id,
                        (),
                        host,
                        "read the secrets this deployment keeps on the host (to mask them): "
                        + ", ".join(paths),
                        time.time(),
                    )
                )
                result = self.pool[host].run(script, timeout=self.options.timeout)
                for line in result.stdout.decode("ascii", "replace").splitlines():
                    index, _, rest = line.partition(" ")
                    how, _, value = rest.partition(" ")
                    if not index.isdigit() or int(index) >= len(paths):
                        continue
                    found[paths[int(index)]] = how
                    if how == "s" and value:
                        try:
                            _learn(self.masker, base64.b64decode(value))
                        except ValueError:
                            continue
            guarded = self._secret_plan.guarded.get(host, frozenset())
            lost = {
                path: "empty" if found.get(path) == "e" else "missing"
                for path in guarded
                if found.get(path) in ("e", "m")
            }
            if lost and self.options.kind == "run":
                self._blocked[host] = missing_error(host, lost, self._secret_plan)
                raise self._blocked[host]
            self._primed.add(host)

    def _blocked_note(self, host: str) -> str:
        """Why a task of ``host`` is not run, once its first task said it in full."""
        error = self._blocked[host]
        lost = ", ".join(self._secret_plan.names.get(p, p) for p in getattr(error, "paths", ()))
        return f"not run: {host} has lost secrets this deployment placed there ({lost})"

    # events -------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Mask and hand one event to the sinks (serialised)."""
        mask = self.masker.mask
        if isinstance(event, TaskFinished):
            event = replace(
                event,
                message=mask(event.message),
                changes=tuple(mask(c) for c in event.changes),
                diff=mask(event.diff),
                output=mask(event.output),
                output_cut=_masked_cut(event.output_cut, mask),
                command=mask(event.command),
                stdout=mask(event.stdout),
                stderr=mask(event.stderr),
                log=Path(mask(str(event.log))) if event.log is not None else None,
            )
        elif isinstance(event, OutputChunk):
            event = replace(event, text=mask(event.text))
        elif isinstance(event, CommandSent):
            event = replace(event, command=mask(event.command))
        elif isinstance(event, ConnectionChanged):
            event = replace(event, detail=mask(event.detail))
        with self._emit_lock:
            self._emit_to_sinks(event)

    def _finish(
        self, task: Task, status: Status, duration: float = 0.0, message: str = "", **fields
    ) -> None:
        self.statuses[task.id] = status
        log = self._log.file_of(task.id) if self._log is not None else None
        self.emit(
            TaskFinished(
                self.run_id,
                task.id,
                task.where,
                status,
                duration,
                message,
                at=time.time(),
                log=log,
                **fields,
            )
        )

    # control ----------------------------------------------------------------------------

    def stop(self, immediately: bool = False, reason: str = "requested") -> None:
        """Start nothing new; let running tasks finish within the grace period — or, when
        ``immediately`` (a second Ctrl-C), stop them now: their connections are closed (each
        command ends on its host with its channel) and the local programs ended, and they are
        recorded interrupted. ``reason`` (``"SIGINT"``, ``"SIGTERM"``, ``"requested"``) is
        what the first call says. Only sets flags (safe in a signal handler): the run loop
        acts on them, and reports them (:class:`StopRequested`), within 0.2 s."""
        self.interrupted = True
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
            self._stop_reason = reason
        if immediately:
            self._stop_now = True
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """Whether a stop was asked (:meth:`stop`)."""
        return self._stop.is_set()

    def _announce_stop(self, running: Mapping[Future, list[str]]) -> None:
        """Emit :class:`StopRequested` once for the stop, once more when it is immediate."""
        if not self._stop.is_set() or self._stop_now in self._announced:
            return
        tasks = tuple((t, self.graph.tasks[t].where) for ids in running.values() for t in ids)
        self._announced.add(self._stop_now)
        self.emit(
            StopRequested(
                self.run_id,
                self._stop_reason,
                tasks,
                self.options.grace,
                self._stop_now,
                time.time(),
            )
        )

    def _waits(self) -> dict[str, set[str]]:
        selected = set(self.order)
        if self.options.kind == "teardown":
            return {t: {d for d in self.graph.dependents(t) if d in selected} for t in self.order}
        return {t: {d for d in self.graph.dependencies(t) if d in selected} for t in self.order}

    def run(self) -> dict[str, Status]:
        """Run everything; returns each task's status (every selected task has one)."""
        waits = self._waits()
        waiters: dict[str, list[str]] = {t: [] for t in self.order}
        for task_id, needs in waits.items():
            for need in needs:
                waiters[need].append(task_id)
        position = {t: i for i, t in enumerate(self.order)}
        pending = dict(waits)
        ready = sorted((t for t, needs in pending.items() if not needs), key=position.__getitem__)
        busy_hosts: dict[str, int] = {}
        exclusive_hosts: set[str] = set()
        down_hosts: dict[str, str] = {}
        running: dict[Future, list[str]] = {}
        failed_first: list[str] = []

        def give_up(task_id: str, status: Status, reason: str) -> None:
            """Mark ``task_id`` as not run, and everything waiting on it as skipped."""
            stack = [(task_id, status, reason)]
            while stack:
                current, current_status, current_reason = stack.pop()
                if current in self.statuses:
                    continue
                pending.pop(current, None)
                if current in ready:
                    ready.remove(current)
                self._finish(self.graph.tasks[current], current_status, message=current_reason)
                why = "was not run" if current_status == Status.SKIPPED else current_status.value
                for waiter in waiters[current]:
                    stack.append(
                        (
                            waiter,
                            Status.SKIPPED,
                            f"skipped: {current} {why}",
                        )
                    )

        def release(task_id: str) -> None:
            for waiter in waiters[task_id]:
                if waiter in pending:
                    pending[waiter].discard(task_id)
                    if not pending[waiter] and waiter not in ready:
                        ready.append(waiter)
            ready.sort(key=position.__getitem__)

        def take(task_id: str) -> None:
            ready.remove(task_id)
            pending.pop(task_id, None)

        def batch_for(task: Task) -> list[Task]:
            """``task`` and the other ready tasks of its host that can share its round trip."""
            batch = [task]
            if task.shares_host or not self._batchable(task):
                return batch
            for other_id in ready:
                other = self.graph.tasks[other_id]
                if (
                    other_id != task.id
                    and other.host == task.host
                    and not other.shares_host
                    and self._batchable(other)
                ):
                    batch.append(other)
                    if len(batch) >= BATCH_LIMIT:
                        break
            return batch

        def stopping() -> bool:
            if self._stop_when is not None and self._stop_when.is_set() and not self._stop.is_set():
                self.stop()
            return self._stop.is_set() or bool(self.options.fail_fast and failed_first)

        with ThreadPoolExecutor(
            max_workers=max(1, self.options.forks), thread_name_prefix="fedi-run"
        ) as workers:
            while pending or running:
                self._announce_stop(running)
                if stopping():
                    reason = (
                        "skipped: interrupted"
                        if self._stop.is_set()
                        else f"skipped: --fail-fast after {failed_first[0]} failed"
                    )
                    for task_id in list(pending):
                        give_up(task_id, Status.SKIPPED, reason)
                for task_id in list(ready):
                    if len(running) >= self.options.forks or stopping():
                        break
                    if task_id not in ready:  # taken into a batch meanwhile
                        continue
                    task = self.graph.tasks[task_id]
                    if task.skipped:  # its `when` is false: recorded, and done for the others
                        take(task_id)
                        self._finish(task, Status.SKIPPED, message=f"skipped: {task.skipped}")
                        release(task_id)
                        continue
                    host = task.host
                    if host is not None and host in down_hosts:
                        give_up(task_id, Status.UNREACHABLE, down_hosts[host])
                        continue
                    if host is not None and host in self._blocked:  # a secret is lost there
                        give_up(task_id, Status.FAILED, self._blocked_note(host))
                        continue
                    if host is not None and (
                        host in exclusive_hosts or (not task.shares_host and busy_hosts.get(host))
                    ):
                        continue
                    batch = batch_for(task) if host is not None else [task]
                    for member in batch:
                        take(member.id)
                    if host is not None:
                        busy_hosts[host] = busy_hosts.get(host, 0) + 1
                        if not task.shares_host:
                            exclusive_hosts.add(host)
                    running[workers.submit(self._run_job, batch)] = [member.id for member in batch]
                if not running:
                    if pending and not ready:  # pragma: no cover - the graph is acyclic
                        raise FediRunError("error: internal: tasks wait on each other")
                    continue
                done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                self._announce_stop(running)
                if self._stopped_at is not None and (
                    self._stop_now
                    or (not done and time.monotonic() - self._stopped_at > self.options.grace)
                ):
                    if not self._aborted and self._stop_now:
                        self._abort_message = STOPPED_AT_ONCE
                    self._aborted = True
                    # the grace period is over, or a second Ctrl-C: abort what still runs —
                    # on the hosts (a job ends with its channel), and on the deployer
                    self.pool.close_all()
                    self.jobs.stop_local(
                        "when the run was stopped at once (a second Ctrl-C)"
                        if self._stop_now
                        else None
                    )
                    done, _ = wait(list(running), timeout=5)
                for future in done:
                    job = running.pop(future)
                    host = self.graph.tasks[job[0]].host
                    if host is not None:
                        busy_hosts[host] -= 1
                        exclusive_hosts.discard(host)
                    for task_id, status, message, unreachable_host in future.result():
                        if unreachable_host:
                            down_hosts[host] = message
                            for other in [t for t in pending if self.graph.tasks[t].host == host]:
                                give_up(other, Status.UNREACHABLE, message)
                        if status in (Status.OK, Status.CHANGED):
                            release(task_id)
                            continue
                        if status == Status.FAILED:
                            failed_first.append(task_id)
                        for waiter in waiters[task_id]:
                            give_up(
                                waiter,
                                Status.SKIPPED,
                                f"skipped: dependency {task_id} {status.value}",
                            )
        return self.statuses

    def _operations(self, task: Task):
        return task.actions if self.options.kind == "run" else task.undo_actions()

    def _batchable(self, task: Task) -> bool:
        # a task with a timeout of its own runs alone, so that its timeout is exactly its own;
        # so does a teardown's task without an undo (it is not run: left in place)
        operations = self._operations(task)
        if task.skipped or (self.options.kind == "teardown" and not operations):
            return False
        return (
            task.host is not None
            and not self.options.diff
            and task.timeout is None
            and batchable(self._operations(task))
        )

    def _context(
        self, task: Task, connection, timeout: float, batch: Sequence[Task] = ()
    ) -> Context:
        """The context of ``task``'s job (``batch``: the job's tasks when several share it):
        each task's output streams as :class:`OutputChunk`, each script sent is reported as
        :class:`CommandSent`."""
        hosts = {t.id: t.where for t in batch or (task,)}
        ids = tuple(hosts)

        def output_of(task_id: str):
            where = hosts.get(task_id, task.where)
            return lambda stream, text: self.emit(
                OutputChunk(self.run_id, task_id, where, stream, text)
            )

        return Context(
            connection=connection,
            masker=self.masker,
            check=self.options.check,
            diff=self.options.diff,
            rotate_secrets=self.options.rotate_secrets,
            rotate_paths=self.options.rotate_paths,
            restore=self._secret_plan.restore,
            timeout=timeout,
            output=output_of(task.id),
            output_of=output_of,
            sent=lambda text: self.emit(
                CommandSent(self.run_id, ids, task.where, text, time.time())
            ),
            playbook=self._playbook,
            task=task,
            pool=self.pool,
            state_dir=self._state_dir,
            log=self._log,
            secret_generators=self._secret_generators,
        )

    def _run_job(self, batch: list[Task]) -> list[tuple[str, Status, str, bool]]:
        """Run one task, or a batch of one host's tasks in one round trip; per task
        ``(id, status, message, host unreachable)``."""
        if len(batch) == 1:
            status, message, unreachable = self._run_task(batch[0])
            return [(batch[0].id, status, message, unreachable)]
        started = time.time()
        for task in batch:
            self.emit(TaskStarted(self.run_id, task.id, task.where, started))
        timeout = sum(task.timeout or self.options.timeout for task in batch)
        lost = ""
        for attempt in (1, 2):
            connection = self.pool[batch[0].host]
            try:
                self._prime_masker(batch[0].host)
                outcomes = perform_batch(
                    [self._operations(t) for t in batch],
                    self._context(batch[0], connection, timeout, batch),
                    [t.id for t in batch],
                    self.jobs,
                )
                break
            except HostUnreachable as error:
                if self._aborted:
                    aborted = self._abort_message
                    return [
                        (t.id, self._done(t, started, Status.FAILED, aborted), aborted, False)
                        for t in batch
                    ]
                if attempt == 1 and error.lost and not self._stop.is_set():
                    lost = str(error)
                    continue
                message = _unreachable_message(error, lost if attempt == 2 else None)
                return [
                    (t.id, self._done(t, started, Status.UNREACHABLE, message), message, True)
                    for t in batch
                ]
            except CommandTimedOut as error:
                return [
                    (t.id, self._done(t, started, Status.FAILED, str(error)), str(error), False)
                    for t in batch
                ]
            except Exception as error:  # noqa: BLE001 - a bug here, reported on every task
                message = (
                    str(error)
                    if isinstance(error, FediRunError)
                    else f"internal error: {type(error).__name__}: {error}"
                )
                return [
                    (t.id, self._done(t, started, Status.FAILED, message), message, False)
                    for t in batch
                ]
        share = (time.time() - started) / len(batch)
        results = []
        for task, outcome in zip(batch, outcomes):
            if isinstance(outcome, ActionFailed):
                self._finish(
                    task,
                    Status.FAILED,
                    share,
                    str(outcome),
                    changes=tuple(outcome.changes),
                    output=outcome.output,
                    output_cut=outcome.output_cut,
                    command=outcome.command,
                    stdout=outcome.stdout,
                    stderr=outcome.stderr,
                )
                results.append((task.id, Status.FAILED, str(outcome), False))
            else:
                status = Status.CHANGED if outcome.changes else Status.OK
                self._finish(
                    task,
                    status,
                    share,
                    "",
                    changes=outcome.changes,
                    output=outcome.output,
                    output_cut=outcome.output_cut,
                )
                results.append((task.id, status, "", False))
        return results

    def _run_task(self, task: Task) -> tuple[Status, str, bool]:
        """Run one task in a worker thread; ``(status, message, host unreachable)``."""
        started = time.time()
        operations = self._operations(task)
        if self.options.kind == "teardown" and not operations:
            self._finish(task, Status.OK, 0.0, LEFT_IN_PLACE)
            return Status.OK, "", False
        self.emit(TaskStarted(self.run_id, task.id, task.where, started))
        lost = ""
        for attempt in (1, 2):
            connection = self.pool[task.host] if task.host is not None else None
            context = self._context(task, connection, task.timeout or self.options.timeout)
            try:
                if task.host is not None:
                    self._prime_masker(task.host)
                outcome = perform(operations, context, self.jobs)
            except HostKeyRejected as error:
                return self._done(task, started, Status.UNREACHABLE, str(error)), str(error), True
            except HostUnreachable as error:
                if self._aborted:
                    aborted = self._abort_message
                    return self._done(task, started, Status.FAILED, aborted), aborted, False
                if attempt == 1 and error.lost and not self._stop.is_set():
                    lost = str(error)
                    continue
                message = _unreachable_message(error, lost if attempt == 2 else None)
                return self._done(task, started, Status.UNREACHABLE, message), message, True
            except CommandTimedOut as error:
                return self._done(task, started, Status.FAILED, str(error)), str(error), False
            except ActionFailed as error:
                return (
                    self._done(
                        task,
                        started,
                        Status.FAILED,
                        str(error),
                        changes=tuple(error.changes),
                        output=error.output,
                        output_cut=error.output_cut,
                        command=error.command,
                        stdout=error.stdout,
                        stderr=error.stderr,
                    ),
                    str(error),
                    False,
                )
            except FediRunError as error:
                return self._done(task, started, Status.FAILED, str(error)), str(error), False
            except Exception as error:  # noqa: BLE001 - a bug in a plugin function or here
                message = f"internal error: {type(error).__name__}: {error}"
                return self._done(task, started, Status.FAILED, message), message, False
            status = Status.CHANGED if outcome.changes else Status.OK
            message = "; ".join(f"warning: {w}" for w in outcome.warnings)
            self._done(
                task,
                started,
                status,
                message,
                changes=outcome.changes,
                output=outcome.output,
                diff=outcome.diff,
                output_cut=outcome.output_cut,
            )
            return status, "", False
        raise AssertionError("unreachable")  # pragma: no cover

    def _done(self, task: Task, started: float, status: Status, message: str, **fields) -> Status:
        self._finish(task, status, time.time() - started, message, **fields)
        return status


SECRET_KEYS = ("pass", "secret", "token", "key")
"""A JSON document's string values under keys naming one of these are secrets on their own
(the initial user's password in its file)."""


def _learn(masker: Masker, value: bytes) -> None:
    """Mask ``value`` — and, when it is a JSON object, each of its secret-named string
    values, in every form (:meth:`Masker.add_forms`): a password inside a document."""
    masker.add(value)
    if not value.lstrip().startswith(b"{"):
        return
    try:
        document = json.loads(value)
    except ValueError:
        return
    if isinstance(document, dict):
        for key, item in document.items():
            if isinstance(item, str) and any(word in key.lower() for word in SECRET_KEYS):
                masker.add_forms(item)


def _masked_cut(cut: OutputCut | None, mask: Callable[[str], str]) -> OutputCut | None:
    """``cut`` with its texts masked, as the output they describe is."""
    if cut is None:
        return None
    log = Path(mask(str(cut.log))) if cut.log is not None else None
    return replace(cut, log=log, reason=mask(cut.reason))


def _unreachable_message(error: Exception, lost: str | None) -> str:
    """Why a task's host is unreachable: ``error``, after the connection ``lost`` during the
    task (then the reconnection failed too)."""
    if not lost or str(error) == lost:
        return str(error)
    return f"{lost} while the task ran; reconnecting failed: {error}"


def _secret_paths(graph: TaskGraph) -> dict[str, tuple[str, ...]]:
    """Per host, the paths of every secret the deployment's tasks place there: each
    :class:`Secret`'s, and those a :class:`Call` declares in its ``secrets``."""
    paths: dict[str, set[str]] = {}
    for task in graph.tasks.values():
        if task.host is None:
            continue
        for op in task.actions:
            if isinstance(op, Secret):
                paths.setdefault(task.host, set()).add(op.path)
            elif isinstance(op, Call) and op.secrets:
                paths.setdefault(task.host, set()).update(op.secrets)
    return {host: tuple(sorted(found)) for host, found in paths.items()}
