"""Running one job of the scheduler — one task, or a batch of one host's tasks in one round
trip — and reporting how each of its tasks ended.

Contract of :class:`JobRunner`: :meth:`~JobRunner.run_job` emits :class:`TaskStarted` for each
task of the job, performs it (``engine.execute.perform``) in a :class:`Context` whose output
streams as :class:`OutputChunk` events and whose scripts are reported as :class:`CommandSent`,
and finishes every task of the job (the scheduler's ``finish``: its status and
:class:`TaskFinished`) — a batched task failing on its own. Before the first task of a host the
host's secrets are primed (``engine.execute.host_secrets``). A connection lost during the job
is retried once on a fresh connection (operations are idempotent; not when a stop was asked);
then, or when it cannot be made, the tasks are ``unreachable``, and when the run's stop closed
it under them (``engine.execute.stopping``) they fail as interrupted. A teardown's task without
an undo is not run: it is ``ok``, "left in place". Whatever else a task raises fails it alone,
with its message (a bug: "internal error: …").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fedi_run.engine.errors import (
    ActionFailed,
    CommandTimedOut,
    FediRunError,
    HostKeyRejected,
    HostUnreachable,
)
from fedi_run.engine.execute.connection import ConnectionPool
from fedi_run.engine.execute.context import Context
from fedi_run.engine.execute.host_secrets import HostSecrets
from fedi_run.engine.execute.jobs import Jobs
from fedi_run.engine.execute.perform import batchable, perform, perform_batch
from fedi_run.engine.execute.stopping import RunStop
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.report.events import (
    CommandSent,
    Event,
    OutputChunk,
    Status,
    TaskStarted,
)
from fedi_run.engine.report.masking import Masker
from fedi_run.engine.report.recap import LEFT_IN_PLACE

if TYPE_CHECKING:
    from fedi_run.engine.execute.scheduler import ExecutionOptions

Finish = Callable[..., None]
"""``finish(task, status, duration, message, **fields)``: the scheduler's record of a task's
end (its status, and the :class:`TaskFinished` emitted)."""


class JobRunner:
    """Runs the scheduler's jobs (see the module); one per run, used from its worker threads."""

    def __init__(
        self,
        *,
        options: ExecutionOptions,
        pool: ConnectionPool,
        masker: Masker,
        emit: Callable[[Event], None],
        finish: Finish,
        stop: RunStop,
        host_secrets: HostSecrets,
        jobs: Jobs,
        run_id: int,
        playbook: Any = None,
        state_dir: Any = None,
        log: Any = None,
        secret_generators: Mapping[str, Callable[[], str]],
        restore: Mapping[str, str],
    ):
        """The run's ``options``, connections, masker, ``emit`` (masked, serialised) and
        ``finish``; its stop, its hosts' secrets and its ``jobs``; what each task's
        :class:`Context` carries besides (``restore``: path → the value put back)."""
        self._options, self._pool, self._masker = options, pool, masker
        self._emit, self._finish, self._stop = emit, finish, stop
        self._host_secrets, self._jobs, self._run_id = host_secrets, jobs, run_id
        self._playbook, self._state_dir, self._log = playbook, state_dir, log
        self._secret_generators, self._restore = secret_generators, restore

    def operations(self, task: Task):
        """What ``task`` runs: its actions in a run, their undo in a teardown."""
        return task.actions if self._options.kind == "run" else task.undo_actions()

    def batchable(self, task: Task) -> bool:
        """Whether ``task`` may share one round trip with other ready tasks of its host."""
        # a task with a timeout of its own runs alone, so that its timeout is exactly its own;
        # so does a teardown's task without an undo (it is not run: left in place)
        operations = self.operations(task)
        if task.skipped or (self._options.kind == "teardown" and not operations):
            return False
        return (
            task.host is not None
            and not self._options.diff
            and task.timeout is None
            and batchable(self.operations(task))
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
            return lambda stream, text: self._emit(
                OutputChunk(self._run_id, task_id, where, stream, text)
            )

        return Context(
            connection=connection,
            masker=self._masker,
            check=self._options.check,
            diff=self._options.diff,
            rotate_secrets=self._options.rotate_secrets,
            rotate_paths=self._options.rotate_paths,
            restore=self._restore,
            timeout=timeout,
            output=output_of(task.id),
            output_of=output_of,
            sent=lambda text: self._emit(
                CommandSent(self._run_id, ids, task.where, text, time.time())
            ),
            playbook=self._playbook,
            task=task,
            pool=self._pool,
            state_dir=self._state_dir,
            log=self._log,
            secret_generators=self._secret_generators,
        )

    def run_job(self, batch: list[Task]) -> list[tuple[str, Status, str, bool]]:
        """Run one task, or a batch of one host's tasks in one round trip; per task
        ``(id, status, message, host unreachable)``."""
        if len(batch) == 1:
            status, message, unreachable = self._run_task(batch[0])
            return [(batch[0].id, status, message, unreachable)]
        started = time.time()
        for task in batch:
            self._emit(TaskStarted(self._run_id, task.id, task.where, started))
        timeout = sum(task.timeout or self._options.timeout for task in batch)
        lost = ""
        for attempt in (1, 2):
            connection = self._pool[batch[0].host]
            try:
                self._host_secrets.prime(batch[0].host)
                outcomes = perform_batch(
                    [self.operations(t) for t in batch],
                    self._context(batch[0], connection, timeout, batch),
                    [t.id for t in batch],
                    self._jobs,
                )
                break
            except HostUnreachable as error:
                if self._stop.aborted:
                    aborted = self._stop.abort_message
                    return [
                        (t.id, self._done(t, started, Status.FAILED, aborted), aborted, False)
                        for t in batch
                    ]
                if attempt == 1 and error.lost and not self._stop.requested:
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
        operations = self.operations(task)
        if self._options.kind == "teardown" and not operations:
            self._finish(task, Status.OK, 0.0, LEFT_IN_PLACE)
            return Status.OK, "", False
        self._emit(TaskStarted(self._run_id, task.id, task.where, started))
        lost = ""
        for attempt in (1, 2):
            connection = self._pool[task.host] if task.host is not None else None
            context = self._context(task, connection, task.timeout or self._options.timeout)
            try:
                if task.host is not None:
                    self._host_secrets.prime(task.host)
                outcome = perform(operations, context, self._jobs)
            except HostKeyRejected as error:
                return self._done(task, started, Status.UNREACHABLE, str(error)), str(error), True
            except HostUnreachable as error:
                if self._stop.aborted:
                    aborted = self._stop.abort_message
                    return self._done(task, started, Status.FAILED, aborted), aborted, False
                if attempt == 1 and error.lost and not self._stop.requested:
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
        """Finish ``task``, started at ``started``, with ``status``; returns that status."""
        self._finish(task, status, time.time() - started, message, **fields)
        return status


def _unreachable_message(error: Exception, lost: str | None) -> str:
    """Why a task's host is unreachable: ``error``, after the connection ``lost`` during the
    task (then the reconnection failed too)."""
    if not lost or str(error) == lost:
        return str(error)
    return f"{lost} while the task ran; reconnecting failed: {error}"
