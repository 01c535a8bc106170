"""Running the real :class:`~fedi_run.engine.execute.scheduler.Scheduler` on a :class:`FakePool`.

:func:`run_tasks` builds the real :class:`TaskGraph` from :class:`Task` values, runs them with
the real Masker and events (collected in a list; optionally recorded in a real
:class:`StateStore` too, as ``run_project`` does) and returns an :class:`Outcome`. The task
builders (:func:`command`, :func:`file`, :func:`directory`) put every task's operations on a
path ``<root>/<task id>.out`` — ``root`` a ``tmp_path`` — so that the fake's recorded calls
can be told apart by task (:func:`token`), and what really ran can be read back from disk.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fakes.pool import Call, FakePool
from fedi_run.engine.execute.scheduler import ExecutionOptions, Scheduler
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.operations import Command, Directory, File
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.report.events import (
    Event,
    RunFinished,
    RunStarted,
    Status,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.masking import Masker


def token(task_id: str) -> str:
    """What every operation of a task built here names: ``/<task id>.out``."""
    return f"/{task_id}.out"


def out_path(root: Path, task_id: str) -> Path:
    """``<root>/<task id>.out``: the file (or directory) the task works on."""
    return Path(root) / f"{task_id}.out"


def command(task_id: str, host: str | None, root: Path, run: str = "true", **fields) -> Task:
    """A task running ``run`` that first appends ``ran`` to its ``.out`` file: the file's lines
    count how many times it really ran."""
    script = f"echo ran >> {shlex.quote(str(out_path(root, task_id)))}\n{run}"
    return Task(task_id, host, actions=(Command(script),), **fields)


def file(task_id: str, host: str | None, root: Path, content: str | None = None, **fields) -> Task:
    """A task placing its ``.out`` file with ``content`` (default: its id and a newline)."""
    text = f"{task_id}\n" if content is None else content
    return Task(task_id, host, actions=(File(str(out_path(root, task_id)), text),), **fields)


def directory(task_id: str, host: str | None, root: Path, **fields) -> Task:
    """A task making its ``.out`` path a directory."""
    return Task(task_id, host, actions=(Directory(str(out_path(root, task_id))),), **fields)


def graph_of(tasks: Iterable[Task]) -> TaskGraph:
    """The real graph of ``tasks`` (every host they name is known)."""
    tasks = list(tasks)
    return TaskGraph.build(tasks, {t.host for t in tasks if t.host is not None})


@dataclass
class Outcome:
    """What a run did: the scheduler's statuses, every event (in order), the fake's calls."""

    graph: TaskGraph
    order: tuple[str, ...]
    statuses: dict[str, Status]
    events: list[Event]
    pool: FakePool
    scheduler: Scheduler
    seconds: float
    run_id: int = 1
    calls: list[Call] = field(default_factory=list)

    def finished(self) -> dict[str, TaskFinished]:
        """task id → its TaskFinished."""
        return {e.task_id: e for e in self.events if isinstance(e, TaskFinished)}

    def started(self) -> list[str]:
        """The ids of the tasks that started, in order."""
        return [e.task_id for e in self.events if isinstance(e, TaskStarted)]

    def message(self, task_id: str) -> str:
        return self.finished()[task_id].message

    def calls_for(self, task_id: str) -> list[Call]:
        """This run's calls that carried ``task_id``'s operations."""
        return [call for call in self.calls if call.contains(token(task_id))]

    def tasks_in(self, call: Call) -> list[str]:
        """The tasks (of this graph) whose operations ``call`` carried, in order."""
        return [t for t in self.graph.tasks if call.contains(token(t))]

    def span(self, task_id: str) -> tuple[float, float]:
        """From the start of the task's first call to the end of its last (fake's clock)."""
        calls = self.calls_for(task_id)
        assert calls, f"{task_id} never reached a host"
        return min(c.start for c in calls), max(c.end for c in calls)


def run_tasks(
    tasks: Sequence[Task] | TaskGraph,
    pool: FakePool,
    order: Sequence[str] | None = None,
    *,
    store=None,
    deployment: str = "fake",
    stop_when=None,
    masker: Masker | None = None,
    before_run=None,
    jobs=None,
    **options,
) -> Outcome:
    """Run ``tasks`` (or a graph) — all of them in the graph's order unless ``order`` — with
    ``ExecutionOptions(**options)`` on ``pool``. With ``store`` (a StateStore), the run is
    begun there and every event recorded, as ``run_project`` does; ``before_run(scheduler)``
    is called just before :meth:`Scheduler.run`; ``jobs`` is the run's
    :class:`~fedi_run.engine.execute.jobs.Jobs` (default: no pid files). Checks the event invariants
    (:func:`check_events`) before returning."""
    graph = tasks if isinstance(tasks, TaskGraph) else graph_of(tasks)
    execution = ExecutionOptions(**options)
    if order is None:
        order = graph.order if execution.kind == "run" else tuple(reversed(graph.order))
    order = tuple(order)
    hosts = tuple(graph.tasks[t].where for t in order)
    events: list[Event] = []
    run_id = 1
    if store is not None:
        run_id = store.begin_run(deployment, execution.kind, order, hosts, execution.check, ())

    def emit(event: Event) -> None:
        events.append(event)
        if store is not None:
            store.handle(event)

    first_call = len(pool.calls)
    scheduler = Scheduler(
        graph,
        order,
        pool,
        masker or Masker(),
        emit,
        execution,
        run_id,
        stop_when=stop_when,
        jobs=jobs,
    )
    started = time.time()
    scheduler.emit(
        RunStarted(run_id, deployment, execution.kind, order, hosts, execution.check, started)
    )
    if before_run is not None:
        before_run(scheduler)
    clock = time.monotonic()
    statuses = scheduler.run()
    seconds = time.monotonic() - clock
    exit_status = (
        130 if scheduler.interrupted else int(any(s not in DONE for s in statuses.values()))
    )
    scheduler.emit(
        RunFinished(run_id, exit_status, time.time() - started, scheduler.interrupted, {})
    )
    outcome = Outcome(
        graph,
        order,
        dict(statuses),
        events,
        pool,
        scheduler,
        seconds,
        run_id,
        pool.calls[first_call:],
    )
    check_events(outcome)
    return outcome


DONE = (Status.OK, Status.CHANGED)


def check_events(outcome: Outcome) -> None:
    """What every run's events must show, whatever happened: each selected task finished
    exactly once, with the status ``run`` returned; a task that started did so before it
    finished; a skipped task never started; and nothing outside the selection appears."""
    selected = set(outcome.order)
    assert set(outcome.statuses) == selected, "every selected task has a status"
    finished = [e for e in outcome.events if isinstance(e, TaskFinished)]
    assert sorted(e.task_id for e in finished) == sorted(selected), "each finished once"
    position = {id(e): i for i, e in enumerate(outcome.events)}
    started = {e.task_id: position[id(e)] for e in outcome.events if isinstance(e, TaskStarted)}
    assert set(started) <= selected
    for event in finished:
        assert event.status == outcome.statuses[event.task_id]
        if event.task_id in started:
            assert started[event.task_id] < position[id(event)]
        if event.status == Status.SKIPPED:
            assert event.task_id not in started, f"{event.task_id} skipped after it started"
    assert isinstance(outcome.events[0], RunStarted)
    assert isinstance(outcome.events[-1], RunFinished)


def assert_ran_after(outcome: Outcome, before: str, after: str) -> None:
    """``after``'s first call started only once ``before``'s last call had ended."""
    _, before_end = outcome.span(before)
    after_start, _ = outcome.span(after)
    assert after_start >= before_end, (
        f"{after} started {before_end - after_start:.3f} s before {before} ended"
    )


def assert_no_overlap(calls: Iterable[Call]) -> None:
    """No two of ``calls`` ran at the same time."""
    spans = sorted((c.start, c.end) for c in calls)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"two calls overlap by {end - start:.3f} s"
