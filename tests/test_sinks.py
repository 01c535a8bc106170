"""The event sinks: recap, progress display, JSON lines and JUnit, driven by synthetic runs."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fedi_run.engine.report.display import ProgressDisplay
from fedi_run.engine.report.events import (
    OutputChunk,
    OutputCut,
    RunFinished,
    RunStarted,
    Status,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.jsonlines import JsonLinesSink
from fedi_run.engine.report.junit import JUnitSink
from fedi_run.engine.report.masking import MASK
from fedi_run.engine.report.recap import (
    STATUSES,
    TailBuffer,
    exit_status_for,
    head,
    plain,
    recap,
    render_recap,
    tail,
)

ANSI = re.compile(r"\x1b")
T0 = 1_700_000_000.0
TASKS = (
    ("garage.secrets@garage", "garage"),
    ("garage.keys", "garage"),
    ("mastodon.secrets", "mastodon"),
    ("mastodon.s3", "mastodon"),
    ("peertube.secrets", "peertube"),
    ("dns.check", "local"),
    ("nixops4.apply", "local"),
)


def scenario(*, output: str = "", check: bool = False, interrupted: bool = False) -> list:
    """A run with a task in every status on three hosts and the deployer (``local``)."""
    ids = tuple(t for t, _ in TASKS)
    finished = [
        TaskFinished(
            7,
            "garage.secrets@garage",
            "garage",
            Status.CHANGED,
            0.12,
            changes=("wrote /var/lib/fedi-run/secrets/rpc",),
            diff=f"--- a/rpc\n+++ b/rpc\n@@ -1 +1 @@\n-\n+{MASK}\n",
            output=f"rpc secret {MASK}\n",
            at=T0 + 1,
        ),
        TaskFinished(7, "garage.keys", "garage", Status.OK, 0.05, at=T0 + 2),
        TaskFinished(
            7,
            "mastodon.secrets",
            "mastodon",
            Status.FAILED,
            1.5,
            message="exit status 1\ncommand: install -m 0400 …",
            output="line 1\n" + output + f"error: bad key {MASK}\n",
            at=T0 + 3,
        ),
        TaskFinished(
            7,
            "mastodon.s3",
            "mastodon",
            Status.SKIPPED,
            0.0,
            message="skipped: dependency mastodon.secrets failed",
            at=T0 + 3,
        ),
        TaskFinished(
            7,
            "peertube.secrets",
            "peertube",
            Status.UNREACHABLE,
            0.0,
            message="unreachable: connection refused",
            at=T0 + 3,
        ),
        TaskFinished(7, "dns.check", "local", Status.OK, 0.01, at=T0 + 3),
        TaskFinished(
            7,
            "nixops4.apply",
            "local",
            Status.SKIPPED,
            0.0,
            message="skipped: dependency mastodon.secrets failed",
            at=T0 + 3,
        ),
    ]
    events: list = [RunStarted(7, "fediversity", "run", ids, tuple(h for _, h in TASKS), check, T0)]
    for event in finished:
        if event.status not in (Status.SKIPPED, Status.UNREACHABLE):
            events.append(TaskStarted(7, event.task_id, event.host, T0))
            events.append(OutputChunk(7, event.task_id, event.host, "stdout", "working\n"))
        events.append(event)
    counts = recap(e for e in events if isinstance(e, TaskFinished))
    events.append(RunFinished(7, exit_status_for(counts, interrupted), 3.21, interrupted, counts))
    return events


def drive(sink, events) -> None:
    for event in events:
        sink.handle(event)
    sink.close()


# --- recap ---------------------------------------------------------------------------------


def test_recap_counts_every_status_for_every_host_local_last():
    counts = recap(e for e in scenario() if isinstance(e, TaskFinished))
    assert list(counts) == ["garage", "mastodon", "peertube", "local"]
    assert all(list(c) == list(STATUSES) for c in counts.values())
    assert counts["garage"] == {"ok": 1, "changed": 1, "failed": 0, "skipped": 0, "unreachable": 0}
    assert counts["mastodon"]["failed"] == 1 and counts["mastodon"]["skipped"] == 1
    assert counts["peertube"]["unreachable"] == 1


@pytest.mark.parametrize(
    "status, interrupted, expected",
    [
        ("ok", False, 0),
        ("changed", False, 0),
        ("skipped", False, 0),
        ("failed", False, 1),
        ("unreachable", False, 1),
        ("ok", True, 130),
        ("failed", True, 130),
    ],
)
def test_exit_status(status, interrupted, expected):
    counts = {"web": {**dict.fromkeys(STATUSES, 0), status: 1}, "local": {"ok": 2}}
    assert exit_status_for(counts, interrupted) == expected


def test_render_recap_is_an_aligned_table_with_totals_and_wall_time():
    counts = recap(e for e in scenario() if isinstance(e, TaskFinished))
    assert render_recap(counts, 3.21, check=False) == (
        "RECAP\n"
        "garage   : ok=1  changed=1  failed=0  skipped=0  unreachable=0\n"
        "mastodon : ok=0  changed=0  failed=1  skipped=1  unreachable=0\n"
        "peertube : ok=0  changed=0  failed=0  skipped=0  unreachable=1\n"
        "local    : ok=1  changed=0  failed=0  skipped=1  unreachable=0\n"
        "total    : ok=2  changed=1  failed=1  skipped=2  unreachable=1\n"
        "wall time 3.21 s"
    )
    wide = {"a": {"ok": 1200, "changed": 3}, "local": {"failed": 1}}
    rows = render_recap(wide, 75.0, check=True).splitlines()
    assert "would change" in rows[0]
    assert len({row.index("changed=") for row in rows[1:-1]}) == 1
    assert rows[-1] == "wall time 75.00 s (1 min 15 s)"
    assert render_recap({}, 0.5, False).splitlines()[1] == "no tasks ran"


def test_tail_and_head_keep_whole_lines_and_count_what_they_cut():
    assert tail("a\nb\nc\n", max_lines=2) == tail("a\nb\nc\n", 2)
    clip = tail("a\nb\nc\n", max_lines=2)
    assert (clip.text, clip.cut_lines, clip.truncated) == ("b\nc\n", 1, True)
    assert not tail("short", 200).truncated
    assert tail("aaaa\nbbbb\ncccc", None, 7).text == "cccc"
    assert tail("x" * 100, 5, 10).text == "x" * 10  # a single huge line: its end
    assert head("a\nb\nc", 2).text == "a\nb\n" and head("a\nb\nc", 2).cut_lines == 1
    big = "0123456789\n" * 5_000_000  # 55 MB
    clip = tail(big)
    assert clip.text.count("\n") == 200 and clip.cut_lines == 5_000_000 - 200


def test_tail_buffer_stays_bounded():
    buffer = TailBuffer(max_chars=1000)
    for i in range(10_000):
        buffer.add(f"line {i}\n")
        assert len(buffer.text()) <= 2000
    assert buffer.text().endswith("line 9999\n") and buffer.cut_lines > 9000


def test_plain_removes_escapes_and_keeps_the_last_redraw():
    assert plain("\x1b[31mred\x1b[0m ok\x07\n10%\r50%\r100%\nend\r\n") == "red ok\n100%\nend\n"


# --- JSON lines ----------------------------------------------------------------------------


class CountingStream(io.StringIO):
    flushes = 0

    def flush(self):
        self.flushes += 1
        super().flush()


def test_json_lines_one_object_per_event_with_the_documented_keys():
    stream = CountingStream()
    events = scenario()
    drive(JsonLinesSink(stream), events)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) == len(events) and stream.flushes >= len(events)
    assert records[0] == {
        "event": "run_started",
        "run_id": 7,
        "deployment": "fediversity",
        "kind": "run",
        "check": False,
        "tasks": 7,
        "hosts": ["garage", "mastodon", "peertube", "local"],
        "time": T0,
    }
    assert records[1] == {
        "event": "task_started",
        "run_id": 7,
        "id": "garage.secrets@garage",
        "host": "garage",
        "time": T0,
    }
    assert records[2] == {
        "event": "output",
        "run_id": 7,
        "id": "garage.secrets@garage",
        "host": "garage",
        "stream": "stdout",
        "text": "working\n",
    }
    assert records[3] == {
        "event": "task_finished",
        "run_id": 7,
        "id": "garage.secrets@garage",
        "host": "garage",
        "status": "changed",
        "duration": 0.12,
        "message": "",
        "changes": ["wrote /var/lib/fedi-run/secrets/rpc"],
        "time": T0 + 1,
        "diff": f"--- a/rpc\n+++ b/rpc\n@@ -1 +1 @@\n-\n+{MASK}\n",
        "output": f"rpc secret {MASK}\n",
    }
    finished = [r for r in records if r["event"] == "task_finished"]
    assert [r["status"] for r in finished] == [
        "changed",
        "ok",
        "failed",
        "skipped",
        "unreachable",
        "ok",
        "skipped",
    ]
    skipped = finished[3]
    assert set(skipped) == {
        "event",
        "run_id",
        "id",
        "host",
        "status",
        "duration",
        "message",
        "changes",
        "time",
    }  # no diff, no output: they were empty
    assert skipped["message"] == "skipped: dependency mastodon.secrets failed"
    last = records[-1]
    assert last["event"] == "run_finished" and last["status"] == "failed"
    assert last["exit_status"] == 1 and last["duration"] == 3.21
    assert list(last["recap"]) == ["garage", "mastodon", "peertube", "local"]
    assert last["recap"]["peertube"]["unreachable"] == 1


def test_json_lines_truncate_long_output_and_count_on_their_own():
    stream = io.StringIO()
    events = [
        e for e in scenario(output=("y" * 99 + "\n") * 2000) if not isinstance(e, RunFinished)
    ]
    events.append(RunFinished(7, 130, 1.0, True))  # no recap given: the sink counts
    drive(JsonLinesSink(stream), events)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    failed = next(r for r in records if r.get("status") == "failed")
    assert failed["truncated"] is True and len(failed["output"]) <= 64 * 1024
    assert failed["output"].endswith(f"error: bad key {MASK}\n")
    assert records[-1]["status"] == "interrupted" and records[-1]["exit_status"] == 130
    assert records[-1]["recap"]["mastodon"] == {
        "ok": 0,
        "changed": 0,
        "failed": 1,
        "skipped": 1,
        "unreachable": 0,
    }


def test_json_lines_survive_a_broken_pipe():
    class Broken(io.StringIO):
        def write(self, text):
            raise BrokenPipeError

    drive(JsonLinesSink(Broken()), scenario())  # no exception


# --- JUnit ---------------------------------------------------------------------------------


def test_junit_report_has_a_suite_per_host_and_a_case_per_task(tmp_path):
    path = tmp_path / "reports" / "junit.xml"
    drive(JUnitSink(path), scenario(output="\x00bell\x07 \x1b[31mred\x1b[0m \ufffe\n"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(path.parent) == ["junit.xml"]  # no temporary file left
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and root.get("name") == "fediversity"
    assert (
        root.get("tests"),
        root.get("failures"),
        root.get("errors"),
        root.get("skipped"),
        root.get("time"),
    ) == ("7", "1", "1", "2", "3.210")
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == [
        "fediversity@garage",
        "fediversity@mastodon",
        "fediversity@peertube",
        "fediversity@local",
    ]
    mastodon = suites["fediversity@mastodon"]
    assert {k: mastodon.get(k) for k in ("tests", "failures", "errors", "skipped", "time")} == {
        "tests": "2",
        "failures": "1",
        "errors": "0",
        "skipped": "1",
        "time": "1.500",
    }
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["mastodon.secrets"].get("classname") == "fediversity.mastodon"
    failure = cases["mastodon.secrets"].find("failure")
    assert failure.get("message").startswith("exit status 1")
    assert "bell red" in failure.text and "\x07" not in failure.text and MASK in failure.text
    assert cases["peertube.secrets"].find("error").get("message").startswith("unreachable")
    assert cases["nixops4.apply"].find("skipped") is not None
    out = cases["garage.secrets@garage"].find("system-out").text
    assert "- wrote /var/lib/fedi-run/secrets/rpc" in out and MASK in out
    assert cases["garage.keys"].find("*") is None  # a plain pass
    assert cases["garage.secrets@garage"].get("time") == "0.120"


def test_junit_report_bounds_output_and_is_written_on_abort(tmp_path):
    path = tmp_path / "junit.xml"
    events = [
        e for e in scenario(output=("z" * 79 + "\n") * 10_000) if not isinstance(e, RunFinished)
    ]
    drive(JUnitSink(path), events)  # close() without RunFinished
    failure = ET.parse(path).getroot().find(".//failure")
    assert len(failure.text) <= 64 * 1024 + 100 and "lines cut" in failure.text


def test_junit_write_error_surfaces_at_close(tmp_path):
    (tmp_path / "junit.xml").mkdir()
    sink = JUnitSink(tmp_path / "junit.xml")
    for event in scenario():
        sink.handle(event)  # never raises
    with pytest.raises(OSError):
        sink.close()


# --- the progress display ------------------------------------------------------------------

LABELS = ("ok ", "changed ", "would change ", "failed ", "skipped ", "unreachable ")


def test_plain_display_one_line_per_task_no_escapes_then_the_recap():
    stream = io.StringIO()
    drive(ProgressDisplay(stream, live=False), scenario())
    text = stream.getvalue()
    assert not ANSI.search(text)
    lines = text.splitlines()
    assert lines[0] == "fediversity · run · 7 tasks on 3 hosts"
    task_lines = [line for line in lines if line.startswith(LABELS)]
    assert len(task_lines) == 7
    assert re.match(r"changed +garage\.secrets@garage +@garage +0\.12s$", task_lines[0])
    assert task_lines[2].endswith("1.50s  exit status 1")
    assert task_lines[3].endswith("skipped: dependency mastodon.secrets failed")
    assert "working" not in text and "wrote" not in text and "+++" not in text
    assert f"error: bad key {MASK}" in text  # a failed task's output tail, even without -v
    assert render_recap(scenario()[-1].recap, 3.21, False) + "\n\nFailures (2):\n" in text


def test_check_mode_says_would_change_and_lists_changes():
    stream = io.StringIO()
    drive(ProgressDisplay(stream, live=False), scenario(check=True))
    text = stream.getvalue()
    assert "would change garage.secrets@garage" in text
    assert "  - wrote /var/lib/fedi-run/secrets/rpc" in text
    assert "check mode: changed = would change" in text


def test_verbose_and_diff_show_output_and_diff_masked():
    stream = io.StringIO()
    drive(ProgressDisplay(stream, live=False, verbose=True, diff=True), scenario())
    text = stream.getvalue()
    assert f"    rpc secret {MASK}" in text and f"    +{MASK}" in text
    assert "    --- a/rpc" in text and "  - wrote /var/lib/fedi-run/secrets/rpc" in text


def test_verbose_display_of_50_mb_output_stays_bounded():
    stream = io.StringIO()
    big = f"a line of build output {MASK}\n" * (50 * 1024 * 1024 // 32)
    drive(ProgressDisplay(stream, live=False, verbose=True), scenario(output=big))
    text = stream.getvalue()
    assert len(text.encode()) < 200 * 1024
    assert re.search(r"… [\d,]+ earlier lines cut", text)
    assert f"error: bad key {MASK}" in text


def test_streamed_output_is_bounded_and_shown_when_the_event_has_none():
    stream = io.StringIO()
    display = ProgressDisplay(stream, live=False, verbose=True)
    display.handle(RunStarted(1, "d", "run", ("nixops4.apply",), ("local",), False, T0))
    display.handle(TaskStarted(1, "nixops4.apply", "local", T0))
    for i in range(200_000):
        display.handle(OutputChunk(1, "nixops4.apply", "local", "stdout", f"building {i}\n"))
    display.handle(TaskFinished(1, "nixops4.apply", "local", Status.OK, 9.0))
    display.close()
    text = stream.getvalue()
    assert "building 199999" in text and "earlier lines cut" in text and len(text) < 20_000


def test_color_without_live_uses_ansi_only_when_asked():
    stream = io.StringIO()
    drive(ProgressDisplay(stream, live=False, color=True), scenario())
    assert "\x1b[33mchanged" in stream.getvalue()


def test_display_survives_a_broken_stream():
    class Broken(io.StringIO):
        def write(self, text):
            raise BrokenPipeError

    drive(ProgressDisplay(Broken(), live=False, verbose=True), scenario())


def _display_threads():
    return [t for t in threading.enumerate() if t.name == "fedi-run display"]


def test_live_display_renders_on_a_terminal_and_closes_cleanly(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    stream = io.StringIO()
    display = ProgressDisplay(stream, live=True, verbose=True)
    events = scenario()
    for event in events[:4]:
        display.handle(event)
    time.sleep(0.4)  # let the redraw thread draw the live area a few times
    for event in events[4:]:
        display.handle(event)
    display.close()
    display.close()  # idempotent
    text = stream.getvalue()
    assert "fediversity · run · " in text and "running 0 · done 1 · left 6" in text
    assert "mastodon.secrets" in text and "RECAP" in text
    assert "wall time 3.21 s\n" in text and "Failures (2):" in text.split("wall time")[-1]
    assert "\x1b[?25h" in text  # the cursor is shown again
    assert not _display_threads()


def test_live_display_closed_without_run_finished(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    stream = io.StringIO()
    display = ProgressDisplay(stream, live=True, color=False)
    for event in scenario()[:6]:
        display.handle(event)
    display.close()
    text = stream.getvalue()
    assert "garage.secrets@garage" in text and "RECAP" not in text
    assert not _display_threads()


def test_the_log_note_of_a_long_output_is_kept_by_every_sink(tmp_path):
    """The engine reports a long output as its tail under '[… N MiB more in <log>]': the note
    survives each sink's own cut, so the display, JSON and JUnit all name the log."""
    note = "[… 49.9 MiB more in /srv/deploy/.fedi-run/logs/7/mastodon.secrets.log]"
    cut = OutputCut(52323942, Path("/srv/deploy/.fedi-run/logs/7/mastodon.secrets.log"))
    events = scenario(output=("z" * 99 + "\n") * 700)
    for event in events:  # the tail and its cut, as the engine reports them
        if isinstance(event, TaskFinished) and event.status is Status.FAILED:
            object.__setattr__(event, "output", event.output.removeprefix("line 1\n"))
            object.__setattr__(event, "output_cut", cut)
    stream = io.StringIO()
    drive(JsonLinesSink(stream), events)
    failed = next(json.loads(line) for line in stream.getvalue().splitlines() if '"failed"' in line)
    assert failed["output"].startswith(note + "\nz") and failed["truncated"] is True
    assert len(failed["output"]) <= 64 * 1024 + len(note) + 1
    shown = io.StringIO()
    drive(ProgressDisplay(shown, live=False, verbose=True), events)
    assert f"    {note}\n" in shown.getvalue() and "earlier lines cut" not in shown.getvalue()
    drive(JUnitSink(tmp_path / "junit.xml"), events)
    [failure] = ET.parse(tmp_path / "junit.xml").getroot().iter("failure")
    assert failure.text.startswith(note + "\n")
