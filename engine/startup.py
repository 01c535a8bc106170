"""The cyclic garbage collector while a command starts (issue 15: a one-task run should feel
instant).

Start-up — imports, loading and validating the playbook, planning — allocates a few hundred
thousand objects that live until the process ends, and frees almost nothing in cycles; with the
collector's default thresholds it scans that growing heap a hundred times for nothing, and once
more at exit. :func:`begin` (the console entry point's first call) raises the thresholds so
that start-up triggers next to no collection; :func:`started` (once start-up is over: before a
run executes its tasks) moves every object alive into the permanent generation
(:func:`gc.freeze`) and puts the thresholds back, so that the run's own garbage is collected as
usual and neither its collections nor the last one at exit rescan what start-up built. A
command that never calls :func:`started` keeps collecting, only less often.
"""

from __future__ import annotations

import gc

START_UP_THRESHOLDS = (100_000, 50, 100)
"""Collections while starting: generation 0 after 100 000 net allocations (default 700)."""

_saved: tuple[int, ...] | None = None


def begin() -> None:
    """Raise the collector's thresholds for start-up (remembering the current ones)."""
    global _saved
    if _saved is None:
        _saved = gc.get_threshold()
        gc.set_threshold(*START_UP_THRESHOLDS)


def started() -> None:
    """Start-up is over: freeze what is alive and restore the thresholds (a no-op without
    :func:`begin`)."""
    global _saved
    if _saved is not None:
        gc.freeze()
        gc.set_threshold(*_saved)
        _saved = None
