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
  task is retried once on a fresh connection (operations are idempotent) before that (a job
  runs as ``engine.execute.job_runner`` says);
* :meth:`stop` (SIGINT/SIGTERM) starts nothing new, gives running tasks ``grace`` seconds, then
  closes the connections — which stops each running command on its host — and stops the
  deployer-local ones (``engine.execute.jobs``); everything not done is recorded as skipped
  ("interrupted"). ``stop(immediately=True)`` (a second Ctrl-C) does the closing at once. Each
  stop is reported at once (:class:`StopRequested`: the running tasks, their hosts, the grace
  period; ``engine.execute.stopping``). A task whose command of an earlier run still runs on
  its host is not started again: it fails saying so;
* a running task's output streams as :class:`OutputChunk` events, each batched task's its own
  (``engine.report.live_lines``: masked, a secret split across reads too); each script sent is
  a :class:`CommandSent`, and a real pool's connection events :class:`ConnectionChanged`;
* every event goes through one lock to the sinks, masked: before its first task on a host, the
  executor reads the secrets already placed there — those of the graph's tasks, and those the
  state says this deployment placed there earlier (a service switched off since) — so no
  output can show one (``engine.execute.host_secrets``);
* before its first task on a host, a secret this deployment placed there in an earlier run
  and the selected tasks would place again (``SecretPlan.guarded``) must be there, not empty:
  else none of that host's tasks runs — each fails naming the secret and the ways on
  (``engine.execute.secret_book``);
* in a teardown, a task without an undo is not run: it is ``ok``, "left in place";
* a task with ``skipped`` set (its ``when`` is false) is not run, its host not contacted for
  it: it is ``skipped`` with that reason, and the tasks waiting on it go on as if it were done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from fedi_run.engine.errors import FediRunError
from fedi_run.engine.execute.connection import ConnectionPool
from fedi_run.engine.execute.host_secrets import HostSecrets
from fedi_run.engine.execute.job_runner import JobRunner
from fedi_run.engine.execute.jobs import Jobs, host_directory
from fedi_run.engine.execute.secret_book import SecretPlan
from fedi_run.engine.execute.secret_generators import GENERIC
from fedi_run.engine.execute.stopping import RunStop
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.report.events import (
    CommandSent,
    ConnectionChanged,
    Event,
    OutputChunk,
    OutputCut,
    Status,
    TaskFinished,
)
from fedi_run.engine.report.masking import Masker

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
        self._log = log
        self._stop = RunStop(options.grace, stop_when)
        if jobs is None:
            name = getattr(playbook, "name", None)
            jobs = Jobs(host_directory(name, state_dir) if name else None)
        self.jobs = jobs
        """The run's jobs: the pid files of its tasks on the hosts, its local processes."""
        self.statuses: dict[str, Status] = {}
        secret_plan = secret_plan or SecretPlan()
        self._host_secrets = HostSecrets(
            graph, secret_plan, pool, masker, self.emit, run_id, options.timeout, options.kind
        )
        self._runner = JobRunner(
            options=options,
            pool=pool,
            masker=masker,
            emit=self.emit,
            finish=self._finish,
            stop=self._stop,
            host_secrets=self._host_secrets,
            jobs=jobs,
            run_id=run_id,
            playbook=playbook,
            state_dir=state_dir,
            log=log,
            secret_generators=secret_generators,
            restore=secret_plan.restore,
        )
        observe = getattr(pool, "observe", None)  # a real pool reports its connections
        if observe is not None:
            observe(self._connection_changed)

    def _connection_changed(self, host: str, state: str, detail: str, attempt: int) -> None:
        self.emit(ConnectionChanged(self.run_id, host, state, detail, attempt, time.time()))

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
        self._stop.stop(immediately, reason)

    @property
    def stop_requested(self) -> bool:
        """Whether a stop was asked (:meth:`stop`)."""
        return self._stop.requested

    @property
    def interrupted(self) -> bool:
        """Whether the run was asked to stop (:meth:`stop`, or ``stop_when``)."""
        return self._stop.requested

    def _announce_stop(self, running: Mapping[Future, list[str]]) -> None:
        """Emit :class:`StopRequested` once for the stop, once more when it is immediate."""
        event = self._stop.announcement(
            self.run_id,
            ((t, self.graph.tasks[t].where) for ids in running.values() for t in ids),
        )
        if event is not None:
            self.emit(event)

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
            if task.shares_host or not self._runner.batchable(task):
                return batch
            for other_id in ready:
                other = self.graph.tasks[other_id]
                if (
                    other_id != task.id
                    and other.host == task.host
                    and not other.shares_host
                    and self._runner.batchable(other)
                ):
                    batch.append(other)
                    if len(batch) >= BATCH_LIMIT:
                        break
            return batch

        def stopping() -> bool:
            return self._stop.asked() or bool(self.options.fail_fast and failed_first)

        with ThreadPoolExecutor(
            max_workers=max(1, self.options.forks), thread_name_prefix="fedi-run"
        ) as workers:
            while pending or running:
                self._announce_stop(running)
                if stopping():
                    reason = (
                        "skipped: interrupted"
                        if self._stop.requested
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
                    if host is not None and self._host_secrets.blocked(host):  # a secret lost
                        give_up(task_id, Status.FAILED, self._host_secrets.blocked_note(host))
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
                    submitted = workers.submit(self._runner.run_job, batch)
                    running[submitted] = [member.id for member in batch]
                if not running:
                    if pending and not ready:  # pragma: no cover - the graph is acyclic
                        raise FediRunError("error: internal: tasks wait on each other")
                    continue
                done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                self._announce_stop(running)
                if self._stop.grace_over(bool(done)):
                    self._stop.abort()
                    # the grace period is over, or a second Ctrl-C: abort what still runs —
                    # on the hosts (a job ends with its channel), and on the deployer
                    self.pool.close_all()
                    self.jobs.stop_local(
                        "when the run was stopped at once (a second Ctrl-C)"
                        if self._stop.immediate
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


def _masked_cut(cut: OutputCut | None, mask: Callable[[str], str]) -> OutputCut | None:
    """``cut`` with its texts masked, as the output they describe is."""
    if cut is None:
        return None
    log = Path(mask(str(cut.log))) if cut.log is not None else None
    return replace(cut, log=log, reason=mask(cut.reason))
