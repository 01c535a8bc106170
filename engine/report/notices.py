"""What an operator is told at once, in words, whatever the sink: the notice of a stop.

:func:`stop_notice` is the one line the progress display prints, and that ``--json`` writes on
stderr beside its JSON lines, when the run is asked to stop (:class:`StopRequested`): what it
waits for, how long at most, and how to stop at once.
"""

from __future__ import annotations

from fedi_run.engine.report.events import StopRequested

MAX_NAMED = 10
"""Running tasks named in a notice; the others are counted."""
_WHO = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM", "requested": "stop requested"}


def stop_notice(event: StopRequested) -> str:
    """The notice of ``event``, one line (its text comes from the event: already masked)."""
    who = _WHO.get(event.reason, event.reason)
    named = ", ".join(f"{task} @{host}" for task, host in event.running[:MAX_NAMED])
    if len(event.running) > MAX_NAMED:
        named += f" and {len(event.running) - MAX_NAMED} more"
    count = len(event.running)
    tasks = f"{count} running task{'s' if count != 1 else ''}"
    if event.immediate:
        if not count:
            return f"Stopping at once ({who} again)."
        return (
            f"Stopping at once ({who} again): closing the connections of the {tasks} ({named}); "
            "their commands stop on their hosts, and they are recorded interrupted."
        )
    if not count:
        return f"Stopping ({who}): nothing new starts; no task is running."
    return (
        f"Stopping ({who}): nothing new starts; waiting up to {event.grace:g} s for the {tasks} "
        f"to finish: {named}. Press Ctrl-C again to stop them at once."
    )
