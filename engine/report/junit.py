"""``--junit FILE``: a JUnit XML report of a run, for CI systems.

One ``<testsuites name="<deployment>">`` holding one ``<testsuite name="<deployment>@<host>">``
per host (hosts sorted, ``local`` last), each with one ``<testcase classname="<deployment>.<host>"
name="<task id>" time="…">`` per task in execution order:

* failed → ``<failure message="…" type="failed">`` with the output's tail as its text;
* unreachable → ``<error message="…" type="unreachable">``;
* skipped → ``<skipped message="…"/>``;
* ok / changed → a pass; ``<system-out>`` holds the changes (``- …`` lines) and the output's
  tail, if any.

Output tails are at most 64 KiB. The file is written when :class:`RunFinished` arrives (or at
:meth:`JUnitSink.close` after an abort), atomically (a temporary file in the same directory,
then ``os.replace``) with mode 0600; characters XML 1.0 does not allow and ANSI escapes are
removed, so the file always parses.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from fedi_run.engine.private_files import write_atomically
from fedi_run.engine.report.events import Event, RunFinished, RunStarted, Status, TaskFinished
from fedi_run.engine.report.recap import MAX_CHARS, host_order, log_note, tail

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` without ANSI escapes and without the characters XML 1.0 forbids."""
    return _NOT_XML.sub("", _ANSI.sub("", text))


@dataclass(frozen=True)
class _Case:
    """What the report keeps of one finished task (the output tail only: memory stays
    bounded whatever a task printed)."""

    task_id: str
    host: str
    status: Status
    duration: float
    message: str
    changes: tuple[str, ...]
    output: str
    order: int


class JUnitSink:
    """An :class:`~fedi_run.engine.report.events.EventSink` that writes a JUnit XML file at
    ``path``.

    :meth:`handle` never raises; if the report cannot be written, :meth:`close` raises the
    :class:`OSError` so the caller can report it. Parent directories are created.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._deployment = "fedi-run"
        self._run: RunStarted | None = None
        self._order: dict[str, int] = {}
        self._cases: list[_Case] = []
        self._duration: float | None = None
        self._written = False
        self.error: OSError | None = None

    def handle(self, event: Event) -> None:
        """Collect ``event``; write the report on :class:`RunFinished`."""
        if isinstance(event, TaskFinished):
            note = log_note(event.output_cut) if event.output_cut else ""
            clip = tail(event.output, None, MAX_CHARS)
            output = clip.text
            if note:
                output = f"{note}\n{output}"
            elif clip.truncated:
                output = f"… {clip.cut_lines} lines cut\n{output}"
            order = self._order.get(event.task_id, len(self._order) + len(self._cases))
            self._cases.append(
                _Case(
                    event.task_id,
                    event.host,
                    Status(event.status),
                    event.duration,
                    event.message,
                    event.changes,
                    output,
                    order,
                )
            )
        elif isinstance(event, RunStarted):
            self._run = event
            self._deployment = event.deployment
            self._order = {task_id: i for i, task_id in enumerate(event.tasks)}
        elif isinstance(event, RunFinished):
            self._duration = event.duration
            self._write_once()

    def close(self) -> None:
        """Write the report if :class:`RunFinished` never came; raise the write error, if
        writing failed."""
        self._write_once()
        if self.error is not None:
            raise self.error

    def _write_once(self) -> None:
        if self._written:
            return
        self._written = True
        try:
            root = self.tree()
            ET.indent(root)
            self.path.parent.mkdir(parents=True, exist_ok=True)  # the user's own path: their umask
            write_atomically(
                self.path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
            )
        except OSError as error:
            self.error = error

    def tree(self) -> ET.Element:
        """The report as an element tree, from what was collected so far."""
        by_host: dict[str, list[_Case]] = {}
        for case in self._cases:
            by_host.setdefault(case.host, []).append(case)
        root = ET.Element("testsuites", name=xml_text(self._deployment))
        totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
        task_time = 0.0
        for host in host_order(by_host):
            suite = self._suite(host, sorted(by_host[host], key=lambda c: c.order))
            root.append(suite)
            for key in totals:
                totals[key] += int(suite.get(key, "0"))
            task_time += float(suite.get("time", "0"))
        for key, value in totals.items():
            root.set(key, str(value))
        root.set("time", _seconds(self._duration if self._duration is not None else task_time))
        return root

    def _suite(self, host: str, cases: list[_Case]) -> ET.Element:
        suite = ET.Element("testsuite", name=xml_text(f"{self._deployment}@{host}"))
        counts = {Status(s): 0 for s in Status}
        for case in cases:
            counts[case.status] += 1
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(counts[Status.FAILED]))
        suite.set("errors", str(counts[Status.UNREACHABLE]))
        suite.set("skipped", str(counts[Status.SKIPPED]))
        suite.set("time", _seconds(sum(c.duration for c in cases)))
        suite.set("hostname", xml_text(host))
        if self._run is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self._run.started_at))
            suite.set("timestamp", stamp)
            properties = ET.SubElement(suite, "properties")
            for name, value in (
                ("run_id", self._run.run_id),
                ("kind", self._run.kind),
                ("check", str(self._run.check).lower()),
            ):
                ET.SubElement(properties, "property", name=name, value=xml_text(str(value)))
        classname = xml_text(f"{self._deployment}.{host}")
        for case in cases:
            suite.append(_testcase(case, classname))
        return suite


def _testcase(case: _Case, classname: str) -> ET.Element:
    element = ET.Element(
        "testcase", classname=classname, name=xml_text(case.task_id), time=_seconds(case.duration)
    )
    message = xml_text(case.message)
    if case.status is Status.FAILED:
        failure = ET.SubElement(element, "failure", message=message, type="failed")
        failure.text = xml_text(case.output)
    elif case.status is Status.UNREACHABLE:
        error = ET.SubElement(element, "error", message=message, type="unreachable")
        error.text = xml_text(case.output) or None
    elif case.status is Status.SKIPPED:
        ET.SubElement(element, "skipped", message=message)
    else:
        lines = [f"- {change}" for change in case.changes]
        if case.output:
            lines.append(case.output)
        if lines:
            ET.SubElement(element, "system-out").text = xml_text("\n".join(lines))
    return element


def _seconds(value: float) -> str:
    return f"{value:.3f}"
