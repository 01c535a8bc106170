"""A run's stop: asked (Ctrl-C, SIGTERM, the panel's Stop), announced, and — when the grace
period ends or a second Ctrl-C asks — the abort of what still runs.

Contract of :class:`RunStop`, which the scheduler owns and acts on (``engine.execute.scheduler``):

* :meth:`~RunStop.stop` only sets flags, so a signal handler may call it; the first call's
  ``reason`` is the stop's, and ``immediately`` (a second Ctrl-C) may come with a later one;
* :meth:`~RunStop.asked` is whether a stop was asked — a ``stop_when`` event another thread
  set counting as one (the panel's Stop button: signals need the main thread);
* :meth:`~RunStop.announcement` is the :class:`StopRequested` to emit — once for the stop,
  once more when it becomes immediate — else None;
* :meth:`~RunStop.grace_over` says when to abort what still runs: at once when the stop is
  immediate and that was announced (so its :class:`StopRequested` always comes first, and the
  loop has recorded what waits as interrupted), else once the grace period has passed and no
  job ended meanwhile; :meth:`~RunStop.abort` records it, and a task whose connection is then
  closed under it fails with :attr:`~RunStop.abort_message` (:data:`ABORTED`, or
  :data:`STOPPED_AT_ONCE` when a second Ctrl-C did it).

:func:`install_signal_handlers` makes SIGINT and SIGTERM stop a scheduler that way.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from fedi_run.engine.report.events import StopRequested

if TYPE_CHECKING:
    from fedi_run.engine.execute.scheduler import Scheduler

ABORTED = (
    "interrupted: still running when the grace period ended (its connection was closed, and "
    "its command stopped on the host)"
)
STOPPED_AT_ONCE = (
    "interrupted: stopped at once by a second Ctrl-C (its connection was closed, and its "
    "command stopped on the host)"
)


class RunStop:
    """The stop of one run, with ``grace`` seconds for the running tasks (see the module)."""

    def __init__(self, grace: float, stop_when: threading.Event | None = None):
        """``stop_when``: an event another thread may set to stop the run as :meth:`stop`
        does (noticed at the next :meth:`asked`)."""
        self.grace = grace
        self._asked = threading.Event()
        self._stop_when = stop_when
        self._stopped_at: float | None = None
        self._reason = "requested"
        self.immediate = False
        """A second Ctrl-C: abort the running tasks at once."""
        self._announced: set[bool] = set()  # the StopRequested emitted (immediate or not)
        self.aborted = False
        """The grace period ended (or a second Ctrl-C): the connections were closed under the
        running tasks."""
        self.abort_message = ABORTED
        """What a task stopped by the abort fails with."""

    def stop(self, immediately: bool = False, reason: str = "requested") -> None:
        """Ask the stop (``immediately``: a second Ctrl-C); ``reason`` (``"SIGINT"``,
        ``"SIGTERM"``, ``"requested"``) is what the first call says. Only sets flags."""
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
            self._reason = reason
        if immediately:
            self.immediate = True
        self._asked.set()

    @property
    def requested(self) -> bool:
        """Whether a stop was asked (:meth:`stop`)."""
        return self._asked.is_set()

    def asked(self) -> bool:
        """Whether a stop was asked, ``stop_when`` being set counting as :meth:`stop`."""
        if self._stop_when is not None and self._stop_when.is_set() and not self._asked.is_set():
            self.stop()
        return self._asked.is_set()

    def announcement(self, run_id: int, running: Iterable[tuple[str, str]]) -> StopRequested | None:
        """The :class:`StopRequested` to emit now (``running``: ``(task, host)`` of each running
        task, read only then): once for the stop, once more when it is immediate; else None."""
        if not self._asked.is_set() or self.immediate in self._announced:
            return None
        tasks = tuple(running)
        self._announced.add(self.immediate)
        return StopRequested(
            run_id,
            self._reason,
            tasks,
            self.grace,
            self.immediate,
            time.time(),
        )

    def grace_over(self, any_done: bool) -> bool:
        """Whether to abort what still runs: the immediate stop was announced (one asked after
        the last :meth:`announcement` waits for the next), or the grace period has passed
        (``any_done``: a job ended in the last wait — the run still moves)."""
        return self._stopped_at is not None and (
            True in self._announced
            or (not any_done and time.monotonic() - self._stopped_at > self.grace)
        )

    def abort(self) -> None:
        """Record that the connections are closed under the running tasks now."""
        if not self.aborted and self.immediate:
            self.abort_message = STOPPED_AT_ONCE
        self.aborted = True


def install_signal_handlers(scheduler: Scheduler) -> Callable[[], None]:
    """SIGINT/SIGTERM stop the scheduler gracefully (the sinks say at once what the run waits
    for, and how long at most); a SIGINT after a stop was asked stops it at once (the running
    tasks' connections closed, exit status 130). Returns a function restoring the old
    handlers. Outside the main thread (signals need it) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def handler(signum, frame) -> None:  # noqa: ARG001
        again = signum == signal.SIGINT and scheduler.stop_requested
        scheduler.stop(immediately=again, reason=signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore
