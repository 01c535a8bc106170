"""The live state of one run in the worker process carrying it out, shared by the engine's
thread (which writes it, through :class:`~fedi_run.panel.sink.PanelSink`) and the worker's
watch loop (which copies what is new into the database, :mod:`fedi_run.panel.worker`, for
every web process to show).

:class:`LiveRun` is one run: its tasks' states, its output as numbered chunks, and, at the end,
the exit status and recap. Every method takes the object's lock, so any thread may call any of
them.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field

MAX_LOG = 2 * 1024 * 1024
"""Characters of log kept per run; beyond, the oldest output is dropped from the stored log."""

PENDING, RUNNING = "pending", "running"


@dataclass(frozen=True)
class TaskState:
    """A task as the page shows it: ``status`` is ``pending``, ``running``, or how it ended."""

    id: str
    host: str
    status: str = PENDING
    message: str = ""
    duration: float | None = None
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """One piece of a run's output, numbered from 1 in arrival order."""

    number: int
    task: str
    stream: str
    text: str


@dataclass
class LiveRun:
    """One run in progress (or just ended) in this process."""

    run_pk: int
    deployment_pk: int
    kind: str
    engine_run_id: int | None = None
    tasks: dict[str, TaskState] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    finished: bool = False
    exit_status: int | None = None
    recap: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str = ""
    duration: float | None = None
    stored: bool = False
    stop_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    """Set by the Stop button; the run thread passes it to the engine (``RunRequest.stop``)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def started(self, engine_run_id: int, tasks: tuple[str, ...], hosts: tuple[str, ...]) -> None:
        with self._lock:
            self.engine_run_id = engine_run_id
            for task, host in zip(tasks, hosts):
                self.tasks.setdefault(task, TaskState(task, host))

    def task_started(self, task: str, host: str) -> None:
        with self._lock:
            self.tasks[task] = TaskState(task, host, RUNNING)
            self._add(task, "event", f"[{host}] {task}: started\n")

    def task_finished(
        self,
        task: str,
        host: str,
        status: str,
        duration: float,
        message: str,
        changes: tuple[str, ...],
    ) -> None:
        with self._lock:
            self.tasks[task] = TaskState(task, host, status, message, round(duration, 3), changes)
            line = f"[{host}] {task}: {status} ({duration:.2f}s)"
            if message:
                line += f" — {message}"
            self._add(task, "event", line + "\n" + "".join(f"    ~ {c}\n" for c in changes))

    def output(self, task: str, stream: str, text: str) -> None:
        with self._lock:
            self._add(task, stream, text)

    def finish(self, exit_status: int, recap: dict, duration: float) -> None:
        with self._lock:
            self.exit_status, self.duration = exit_status, duration
            self.recap = {h: dict(c) for h, c in recap.items()}
            self.finished = True

    def fail(self, message: str) -> None:
        """The run could not start or broke off: ``message`` says why (already masked)."""
        with self._lock:
            self.error = message
            self._add("", "event", message + "\n")
            self.finished = True

    def request_stop(self, by: str) -> bool:
        """Ask the engine to stop the run (as Ctrl-C would): nothing new starts, running tasks
        get their grace period. False if the run has ended or a stop was already asked for."""
        with self._lock:
            if self.finished or self.stop_requested.is_set():
                return False
            self.stop_requested.set()
            self._add(
                "", "event", f"stop requested by {by}: running tasks finish, nothing new starts\n"
            )
            return True

    def _add(self, task: str, stream: str, text: str) -> None:
        self.chunks.append(Chunk(len(self.chunks) + 1, task, stream, text))

    def snapshot(self, after: int = 0) -> dict:
        """The run as JSON-ready data, with the output chunks numbered above ``after``."""
        with self._lock:
            return {
                "tasks": [asdict(t) for t in self.tasks.values()],
                "chunks": [asdict(c) for c in self.chunks[max(after, 0) :]],
                "next": len(self.chunks),
                "finished": self.finished,
                "exit_status": self.exit_status,
                "recap": self.recap,
                "error": self.error,
                "duration": self.duration,
                "engine_run_id": self.engine_run_id,
                "stored": self.stored,
                "stopping": self.stop_requested.is_set(),
            }

    def log(self) -> str:
        """The whole output as text (the newest :data:`MAX_LOG` characters)."""
        with self._lock:
            return _tail("".join(c.text for c in self.chunks))

    def apply_output(self) -> str:
        """What the ``nixops4.*`` tasks' programs printed."""
        with self._lock:
            return _tail(
                "".join(
                    c.text
                    for c in self.chunks
                    if c.task.startswith("nixops4.") and c.stream != "event"
                )
            )

    def mark_stored(self) -> None:
        """The run's record is in the database: the page may stop following it."""
        with self._lock:
            self.stored = True


def _tail(text: str) -> str:
    if len(text) > MAX_LOG:
        return "[… earlier output dropped …]\n" + text[-MAX_LOG:]
    return text
