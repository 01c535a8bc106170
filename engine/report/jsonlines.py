"""``--json``: the run as JSON lines on stdout, one object per event, for scripts and CI.

Every line is one JSON object with an ``"event"`` key and the ``run_id``:

* ``run_started``: ``deployment``, ``kind`` (``run``/``teardown``), ``check``, ``tasks`` (how
  many), ``hosts`` (distinct, in first-use order), ``time`` (epoch seconds);
* ``task_started``: ``id``, ``host``, ``time``;
* ``output``: ``id``, ``host``, ``stream`` (``stdout``/``stderr``), ``text`` (at most the last
  64 KiB of one chunk; ``"truncated": true`` when cut);
* ``task_finished``: ``id``, ``host``, ``status`` (``ok``, ``changed``, ``failed``, ``skipped``,
  ``unreachable``), ``duration`` (seconds), ``message``, ``changes`` (list), ``time`` (or
  ``null``); and
  ``diff`` when there is one, ``"destructive": true`` for a task that removes data (secrets,
  keys, files), ``output`` when non-empty (its last 64 KiB, with
  ``"truncated": true`` when cut; a task's output longer than that starts with a line
  ``[… 49.9 MiB more in <log file>]`` naming the run's log, which keeps it whole);
* ``run_finished``: ``status`` (``ok``, ``failed``, ``interrupted``), ``exit_status``,
  ``duration``, ``recap`` (host → status → count, all five statuses per host).

Texts come from events only, so they are already masked. Each line is flushed as written. If
the stream breaks (``fedi-run --json | head``), the sink stops writing and the run goes on.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from fedi_run.engine.report.events import (
    Event,
    OutputChunk,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.recap import (
    MAX_CHARS,
    Recap,
    empty_counts,
    host_order,
    log_note,
    tail,
)


class JsonLinesSink:
    """An :class:`~fedi_run.engine.report.events.EventSink` writing one JSON object per line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._counts: Recap = {}
        self._destructive: set[str] = set()
        self._broken = False

    def handle(self, event: Event) -> None:
        """Write ``event`` as one line (see the module docstring for the keys)."""
        if self._broken:
            return
        record = self._record(event)
        if record is not None:
            self._write(record)

    def close(self) -> None:
        """Flush the stream (it is not closed: it belongs to the caller)."""
        if not self._broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._broken = True

    def _record(self, event: Event) -> dict[str, Any] | None:
        if isinstance(event, TaskStarted):
            return {
                "event": "task_started",
                "run_id": event.run_id,
                "id": event.task_id,
                "host": event.host,
                "time": round(event.at, 3),
            }
        if isinstance(event, OutputChunk):
            clip = tail(event.text, None, MAX_CHARS)
            record = {
                "event": "output",
                "run_id": event.run_id,
                "id": event.task_id,
                "host": event.host,
                "stream": event.stream,
                "text": clip.text,
            }
            if clip.truncated:
                record["truncated"] = True
            return record
        if isinstance(event, TaskFinished):
            return self._finished(event)
        if isinstance(event, RunStarted):
            self._destructive = set(event.destructive)
            return {
                "event": "run_started",
                "run_id": event.run_id,
                "deployment": event.deployment,
                "kind": event.kind,
                "check": event.check,
                "tasks": len(event.tasks),
                "hosts": list(dict.fromkeys(event.hosts)),
                "time": round(event.started_at, 3),
            }
        if isinstance(event, RunFinished):
            recap = _plain_recap(event.recap) if event.recap else self._counts
            status = "interrupted" if event.interrupted else "failed" if event.exit_status else "ok"
            return {
                "event": "run_finished",
                "run_id": event.run_id,
                "status": status,
                "exit_status": event.exit_status,
                "duration": round(event.duration, 3),
                "recap": {host: recap[host] for host in host_order(recap)},
            }
        return None

    def _finished(self, event: TaskFinished) -> dict[str, Any]:
        status = str(event.status)
        counts = self._counts.get(event.host)
        if counts is None:
            counts = self._counts[event.host] = empty_counts()
        counts[status] += 1
        record: dict[str, Any] = {
            "event": "task_finished",
            "run_id": event.run_id,
            "id": event.task_id,
            "host": event.host,
            "status": status,
            "duration": round(event.duration, 3),
            "message": event.message,
            "changes": list(event.changes),
            "time": round(event.at, 3) if event.at else None,
        }
        if event.diff:
            record["diff"] = event.diff
        if event.task_id in self._destructive:
            record["destructive"] = True
        if event.output:
            note = log_note(event.output_cut) if event.output_cut else ""
            clip = tail(event.output, None, MAX_CHARS)
            record["output"] = f"{note}\n{clip.text}" if note else clip.text
            if clip.truncated or note:
                record["truncated"] = True
        return record

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        try:
            self._stream.write(line)
            self._stream.flush()
        except (OSError, ValueError):
            self._broken = True


def _plain_recap(recap: Any) -> Recap:
    """An event's recap as plain dicts, with all five statuses per host."""
    return {
        host: {**empty_counts(), **{str(k): int(v) for k, v in counts.items()}}
        for host, counts in recap.items()
    }
