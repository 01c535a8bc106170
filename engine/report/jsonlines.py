"""``--json``: the run as JSON lines on stdout, one object per event, for scripts and CI.

Every line is one JSON object with an ``"event"`` key and the ``run_id``:

* ``run_started``: ``deployment``, ``kind`` (``run``/``teardown``), ``check``, ``tasks`` (how
  many), ``hosts`` (distinct, in first-use order), ``time`` (epoch seconds);
* ``task_started``: ``id``, ``host``, ``time``;
* ``output``: ``id``, ``host``, ``stream`` (``stdout``/``stderr``), ``text`` (at most the last
  64 KiB of one chunk; ``"truncated": true`` when cut), as the task prints it: the first
  :data:`STREAMED` characters of a task's records whole, then at most one record every
  :data:`EVERY` seconds, holding the latest line, with ``skipped``: how many characters before
  it were not written (the ``task_finished`` output and the run's log have them);
* ``task_finished``: ``id``, ``host``, ``status`` (``ok``, ``changed``, ``failed``, ``skipped``,
  ``unreachable``), ``duration`` (seconds), ``message``, ``changes`` (list), ``time`` (or
  ``null``); and
  ``diff`` when there is one, ``"destructive": true`` for a task that removes data (secrets,
  keys, files), ``output`` when non-empty (its last 64 KiB, with
  ``"truncated": true`` when cut; a task's output longer than that starts with a line
  ``[… 49.9 MiB more in <log file>]`` naming the run's log, which keeps it whole);
* ``stop_requested``: ``reason`` (``SIGINT``, ``SIGTERM``, ``requested``), ``immediate``
  (a second Ctrl-C: the running tasks are stopped now), ``grace`` (seconds the running tasks
  get otherwise), ``running`` (list of ``{"id", "host"}``), ``time``; its notice in words
  (``engine.report.notices``) is also written on ``notices`` (stderr), at once;
* with ``verbose`` 2 (``-vv``) only: ``command_sent``: ``ids`` (the job's tasks), ``host``,
  ``command`` (what the script does, one line per operation; its last 64 KiB), ``time``; and
  ``connection``: ``host``, ``state`` (``connecting``, ``connected``, ``retry``, ``failed``,
  ``lost``), ``detail``, ``attempt``, ``time``;
* ``run_finished``: ``status`` (``ok``, ``failed``, ``interrupted``), ``exit_status``,
  ``duration``, ``recap`` (host → status → count, all five statuses per host).

Texts come from events only, so they are already masked. Each line is flushed as written. If
the stream breaks (``fedi-run --json | head``), the sink stops writing and the run goes on.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from fedi_run.engine.report.events import (
    CommandSent,
    ConnectionChanged,
    Event,
    OutputChunk,
    RunFinished,
    RunStarted,
    StopRequested,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.notices import stop_notice
from fedi_run.engine.report.recap import (
    MAX_CHARS,
    Recap,
    empty_counts,
    host_order,
    log_note,
    tail,
)

STREAMED = 64 * 1024
"""About the characters of ``output`` records written whole for a task (its text and
:data:`RECORD` per record), before sampling."""
RECORD = 100
"""What an ``output`` record costs besides its text, in characters, for :data:`STREAMED`."""
EVERY = 1.0
"""Seconds between two sampled ``output`` records of a task, past :data:`STREAMED`."""


class JsonLinesSink:
    """An :class:`~fedi_run.engine.report.events.EventSink` writing one JSON object per line;
    ``verbose`` 2 adds the commands sent and the connections' events; ``notices`` (default
    stderr) gets the notices a person must read at once (a stop)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        verbose: int = 0,
        notices: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: seconds, for sampling (:data:`EVERY`); the monotonic clock but in tests."""
        self._clock = clock
        self._stream = stream if stream is not None else sys.stdout
        self._verbose = int(verbose)
        self._notices = notices
        self._streamed: dict[str, int] = {}  # characters of output written, per task
        self._sampled: dict[str, tuple[int, float]] = {}  # past STREAMED: skipped, last write
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
            return self._output(event)
        if isinstance(event, TaskFinished):
            return self._finished(event)
        if isinstance(event, StopRequested):
            self._notice(stop_notice(event))
            return {
                "event": "stop_requested",
                "run_id": event.run_id,
                "reason": event.reason,
                "immediate": event.immediate,
                "grace": event.grace,
                "running": [{"id": task, "host": host} for task, host in event.running],
                "time": round(event.at, 3) if event.at else None,
            }
        if isinstance(event, CommandSent):
            if self._verbose < 2:
                return None
            return {
                "event": "command_sent",
                "run_id": event.run_id,
                "ids": list(event.tasks),
                "host": event.host,
                "command": tail(event.command, None, MAX_CHARS).text,
                "time": round(event.at, 3) if event.at else None,
            }
        if isinstance(event, ConnectionChanged):
            if self._verbose < 2:
                return None
            return {
                "event": "connection",
                "run_id": event.run_id,
                "host": event.host,
                "state": event.state,
                "detail": event.detail,
                "attempt": event.attempt,
                "time": round(event.at, 3) if event.at else None,
            }
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

    def _output(self, event: OutputChunk) -> dict[str, Any] | None:
        """An ``output`` record: whole up to :data:`STREAMED` characters, then sampled."""
        text, skipped = event.text, 0
        written = self._streamed.get(event.task_id, 0)
        if written >= STREAMED:
            skipped, last = self._sampled.get(event.task_id, (0, 0.0))
            now = self._clock()
            latest = text.rstrip("\n").rsplit("\n", 1)[-1][-1000:]
            if now - last < EVERY or not latest:
                self._sampled[event.task_id] = (skipped + len(text), last)
                return None
            skipped += len(text) - len(latest)
            self._sampled[event.task_id] = (0, now)
            text = latest + "\n"
        self._streamed[event.task_id] = written + len(text) + RECORD
        clip = tail(text, None, MAX_CHARS)
        record: dict[str, Any] = {
            "event": "output",
            "run_id": event.run_id,
            "id": event.task_id,
            "host": event.host,
            "stream": event.stream,
            "text": clip.text,
        }
        if clip.truncated:
            record["truncated"] = True
        if skipped:
            record["skipped"] = skipped
        return record

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
        if event.command:  # what failed, whole (masked by the scheduler)
            record["command"] = event.command
        for stream in ("stdout", "stderr"):
            text = getattr(event, stream)
            if text:
                record[stream] = tail(text, None, MAX_CHARS).text
        if event.log is not None:
            record["log"] = str(event.log)
        return record

    def _notice(self, text: str) -> None:
        """Write ``text`` on the notices' stream (stderr), at once; never raises."""
        stream = self._notices if self._notices is not None else sys.stderr
        try:
            stream.write(text + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

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
