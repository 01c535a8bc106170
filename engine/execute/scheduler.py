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
  closes the connections; everything not done is recorded as skipped ("interrupted");
* every event goes through one lock to the sinks, masked: before its first task on a host, the
  executor reads the secrets already placed there, so no output can show one.
"""

from __future__ import annotations

import base64
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

from fedi_run.engine.errors import FediRunError
from fedi_run.engine.execute.connection import (
    CommandTimedOut,
    ConnectionPool,
    HostKeyRejected,
    HostUnreachable,
)
from fedi_run.engine.execute.perform import ActionFailed, Context, batchable, perform, perform_batch
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.operations import Call, Secret
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.report.events import Event, OutputChunk, Status, TaskFinished, TaskStarted
from fedi_run.engine.report.masking import Masker

ABORTED = "interrupted: still running when the grace period ended (its connection was closed)"
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
    grace: float = 10.0


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
    ):
        """``stop_when``: an event another thread may set to stop the run as :meth:`stop`
        does (noticed within 0.2 s) — the panel's Stop button; signals need the main thread."""
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
        self._aborted = False  # the grace period ended: the connections were closed under the tasks
        self._playbook = playbook
        self._state_dir = state_dir
        self._log = log
        self.statuses: dict[str, Status] = {}
        self.interrupted = False
        self._secret_paths = _secret_paths(graph)
        self._primed: set[str] = set()
        self._prime_lock = threading.Lock()

    def _prime_masker(self, host: str) -> None:
        """Learn the values of the secrets already on ``host`` (every secret any task of the
        deployment places there), so that no output of this run can show one."""
        with self._prime_lock:
            if host in self._primed:
                return
            paths = self._secret_paths.get(host, ())
            if paths:
                quoted = " ".join(shlex.quote(p) for p in paths)
                script = (
                    f'for f in {quoted}; do [ -f "$f" ] && {{ base64 -w0 < "$f"; echo; }}; done; '
                    "true"
                )
                result = self.pool[host].run(script, timeout=self.options.timeout)
                for line in result.stdout.split():
                    try:
                        self.masker.add(base64.b64decode(line))
                    except ValueError:
                        continue
            self._primed.add(host)

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
            )
        elif isinstance(event, OutputChunk):
            event = replace(event, text=mask(event.text))
        with self._emit_lock:
            self._emit_to_sinks(event)

    def _finish(
        self, task: Task, status: Status, duration: float = 0.0, message: str = "", **fields
    ) -> None:
        self.statuses[task.id] = status
        self.emit(
            TaskFinished(
                self.run_id,
                task.id,
                task.where,
                status,
                duration,
                message,
                at=time.time(),
                **fields,
            )
        )

    # control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Start nothing new; let running tasks finish within the grace period."""
        self.interrupted = True
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        self._stop.set()

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
                    host = task.host
                    if host is not None and host in down_hosts:
                        give_up(task_id, Status.UNREACHABLE, down_hosts[host])
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
                if (
                    not done
                    and self._stopped_at is not None
                    and time.monotonic() - self._stopped_at > self.options.grace
                ):
                    self._aborted = True
                    self.pool.close_all()  # the grace period is over: abort what still runs
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
        # a task with a timeout of its own runs alone, so that its timeout is exactly its own
        return (
            task.host is not None
            and not self.options.diff
            and task.timeout is None
            and batchable(self._operations(task))
        )

    def _context(self, task: Task, connection, timeout: float) -> Context:
        return Context(
            connection=connection,
            masker=self.masker,
            check=self.options.check,
            diff=self.options.diff,
            rotate_secrets=self.options.rotate_secrets,
            timeout=timeout,
            output=lambda stream, text: self.emit(
                OutputChunk(self.run_id, task.id, task.where, stream, text)
            ),
            playbook=self._playbook,
            task=task,
            pool=self.pool,
            state_dir=self._state_dir,
            log=self._log,
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
                    self._context(batch[0], connection, timeout),
                    [t.id for t in batch],
                )
                break
            except HostUnreachable as error:
                if self._aborted:
                    return [
                        (t.id, self._done(t, started, Status.FAILED, ABORTED), ABORTED, False)
                        for t in batch
                    ]
                if (
                    attempt == 1
                    and not isinstance(error, HostKeyRejected)
                    and "lost the connection" in str(error)
                    and not self._stop.is_set()
                ):
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
                    changes=tuple(getattr(outcome, "changes", ())),
                    output=getattr(outcome, "output", ""),
                )
                results.append((task.id, Status.FAILED, str(outcome), False))
            else:
                status = Status.CHANGED if outcome.changes else Status.OK
                self._finish(
                    task, status, share, "", changes=outcome.changes, output=outcome.output
                )
                results.append((task.id, status, "", False))
        return results

    def _run_task(self, task: Task) -> tuple[Status, str, bool]:
        """Run one task in a worker thread; ``(status, message, host unreachable)``."""
        started = time.time()
        self.emit(TaskStarted(self.run_id, task.id, task.where, started))
        operations = self._operations(task)
        lost = ""
        for attempt in (1, 2):
            connection = self.pool[task.host] if task.host is not None else None
            context = self._context(task, connection, task.timeout or self.options.timeout)
            try:
                if task.host is not None:
                    self._prime_masker(task.host)
                outcome = perform(operations, context)
            except HostKeyRejected as error:
                return self._done(task, started, Status.UNREACHABLE, str(error)), str(error), True
            except HostUnreachable as error:
                if self._aborted:
                    return self._done(task, started, Status.FAILED, ABORTED), ABORTED, False
                if attempt == 1 and "lost the connection" in str(error) and not self._stop.is_set():
                    lost = str(error)
                    continue
                message = _unreachable_message(error, lost if attempt == 2 else None)
                return self._done(task, started, Status.UNREACHABLE, message), message, True
            except CommandTimedOut as error:
                return self._done(task, started, Status.FAILED, str(error)), str(error), False
            except ActionFailed as error:
                changes = tuple(getattr(error, "changes", ()))
                output = getattr(error, "output", "")
                return (
                    self._done(
                        task, started, Status.FAILED, str(error), changes=changes, output=output
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
            )
            return status, "", False
        raise AssertionError("unreachable")  # pragma: no cover

    def _done(self, task: Task, started: float, status: Status, message: str, **fields) -> Status:
        self._finish(task, status, time.time() - started, message, **fields)
        return status


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
