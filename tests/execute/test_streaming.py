"""Remote output streams while a task runs: each task's lines reach the sinks as they come
(masked, a secret split across reads at any offset included), batched tasks each get their own,
the final output stays whole; what each job sends is reported; a second stop is at once."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest
from fakes.harness import command, file, out_path, run_tasks
from fakes.pool import FakePool, notify

from fedi_run.engine.execute.stopping import STOPPED_AT_ONCE
from fedi_run.engine.report.display import ProgressDisplay
from fedi_run.engine.report.events import (
    CommandSent,
    ConnectionChanged,
    OutputChunk,
    RunFinished,
    RunStarted,
    Status,
    StopRequested,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.jsonlines import JsonLinesSink
from fedi_run.engine.report.live_lines import LiveLines
from fedi_run.engine.report.masking import MASK, Masker

SECRET = "s3cr3t-Value-0123456789-abcdefghij"


def chunks(events, task_id=None) -> list[OutputChunk]:
    return [
        e
        for e in events
        if isinstance(e, OutputChunk) and (task_id is None or e.task_id == task_id)
    ]


# LiveLines: masking across reads ------------------------------------------------------------


def _collect(masker: Masker, delay: float = 60.0) -> tuple[LiveLines, list[str]]:
    out: list[str] = []
    return LiveLines(masker, out.append, delay=delay), out


@pytest.mark.parametrize("newline", [True, False], ids=["line", "no-newline"])
def test_a_secret_split_at_every_offset_never_comes_out(newline):
    """The secret, split at every offset across two reads (and three around the middle),
    with the partial line flushed between the reads (the timer's flush point): it never
    appears in what comes out, and what comes out is the text with the secret masked."""
    masker = Masker()
    masker.add(SECRET)
    text = f"before {SECRET} after" + ("\n" if newline else "")
    expected = text.replace(SECRET, MASK)
    for offset in range(1, len(text)):
        for flush in (False, True):
            live, out = _collect(masker)
            live.write(text[:offset].encode())
            if flush:
                live._waited()  # the delay passed: the start of the line comes out alone
            live.write(text[offset:].encode())
            live.close()
            joined = "".join(out)
            assert SECRET not in joined and all(SECRET not in piece for piece in out)
            assert joined == expected, (offset, flush, out)
    middle = len(text) // 2
    for first in range(1, middle):
        live, out = _collect(masker)
        for piece in (text[:first], text[first:middle], text[middle:]):
            live.write(piece.encode())
            live._waited()
        live.close()
        assert "".join(out) == expected


def test_a_multi_line_secret_split_at_a_newline_stays_masked():
    """A multi-line secret (a key) whose first lines end a read: the complete lines wait
    until it is known whether the secret goes on."""
    key = "-----BEGIN KEY-----\nMIIabcdefghijklmnop\nqrstuvwxyz0123456\n-----END KEY-----"
    masker = Masker()
    masker.add(key)
    text = f"key:\n{key}\ndone\n"
    for offset in range(1, len(text)):
        live, out = _collect(masker)
        live.write(text[:offset].encode())
        live._waited()
        live.write(text[offset:].encode())
        live.close()
        joined = "".join(out)
        assert "MIIabc" not in joined and "-----BEGIN KEY-----" not in joined, offset
        assert joined.endswith("done\n")


def test_complete_lines_come_out_at_once_and_a_partial_line_after_the_delay():
    masker = Masker()
    masker.add(SECRET)
    partial = "progress: " + "#" * 60
    live, out = _collect(masker, delay=0.2)
    live.write(f"first line\n{partial}".encode())
    assert out == ["first line\n"]  # at once, without waiting for more
    deadline = time.monotonic() + 3
    while len(out) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    # the partial line came out, but for its last characters that could start a secret
    assert len(out) == 2 and out[1] == partial[: len(partial) - (len(SECRET) - 1)]
    live.write(b" 100%\n")
    live.close()
    assert "".join(out) == f"first line\n{partial} 100%\n"


def test_without_secrets_a_partial_line_comes_out_whole_after_the_delay():
    live, out = _collect(Masker(), delay=0.1)
    live.write("a prompt: é".encode()[:-1])  # a character split across reads
    deadline = time.monotonic() + 3
    while not out and time.monotonic() < deadline:
        time.sleep(0.02)
    assert out == ["a prompt: "]
    live.write("é".encode()[-1:])
    live.close()
    assert "".join(out) == "a prompt: é"
    live.write(b"after the end\n")
    assert "".join(out) == "a prompt: é"  # nothing after close


# the scheduler on the fake pool ---------------------------------------------------------------


def test_a_long_tasks_lines_reach_the_sinks_before_it_ends(tmp_path):
    """A command printing a line, then waiting: the line is an OutputChunk event — and a JSON
    line, and a display line with -v — while the command still runs."""
    gate = tmp_path / "gate"
    task = command(
        "tasks.slow",
        "h1",
        tmp_path,
        f"echo first line; echo to stderr >&2; while [ ! -e {gate} ]; do sleep 0.05; done; "
        "echo last line",
    )
    seen: dict[str, float] = {}
    json_out, shown = io.StringIO(), io.StringIO()
    json_sink = JsonLinesSink(json_out)
    display = ProgressDisplay(shown, live=False, verbose=1)

    def before_run(scheduler):
        emit = scheduler._emit_to_sinks

        def tee(event):
            emit(event)
            json_sink.handle(event)
            display.handle(event)
            if isinstance(event, OutputChunk):
                seen.setdefault(event.text, time.monotonic())
                if "first line" in json_out.getvalue() and "to stderr" in json_out.getvalue():
                    gate.touch()  # the task may end only once its lines were seen

        scheduler._emit_to_sinks = tee

    run = run_tasks([task], FakePool(), before_run=before_run, timeout=20)
    assert run.statuses == {"tasks.slow": Status.CHANGED}
    texts = [c.text for c in chunks(run.events, "tasks.slow")]
    assert "first line\n" in texts and "last line\n" in texts
    streams = {c.text: c.stream for c in chunks(run.events)}
    assert streams["to stderr\n"] == "stderr" and streams["first line\n"] == "stdout"
    finished = run.finished()["tasks.slow"]
    assert "first line" in finished.output and "last line" in finished.output  # as before
    records = [json.loads(line) for line in json_out.getvalue().splitlines()]
    kinds = [r["event"] for r in records]
    assert kinds.index("output") < kinds.index("task_finished")
    text = shown.getvalue()
    assert "  tasks.slow | first line\n" in text and "  tasks.slow (stderr) | to stderr\n" in text
    assert text.index("tasks.slow | first line") < text.index("changed ")
    assert text.count("first line") == 1  # printed as it came, not again at the end


def test_batched_tasks_each_stream_their_own_output(tmp_path):
    """Tasks sharing one round trip: each line is attributed to the task that printed it."""
    tasks = [command(f"tasks.b{i}", "h1", tmp_path, f"echo out-of-b{i}") for i in range(3)]
    pool = FakePool()
    run = run_tasks(tasks, pool)
    assert len(pool.calls) == 1  # one round trip for the three
    for i in range(3):
        texts = "".join(c.text for c in chunks(run.events, f"tasks.b{i}"))
        assert texts == f"out-of-b{i}\n"
    [sent] = [e for e in run.events if isinstance(e, CommandSent)]
    assert sent.tasks == ("tasks.b0", "tasks.b1", "tasks.b2") and sent.host == "h1"
    assert "tasks.b1: run: echo ran >>" in sent.command and "echo out-of-b1" in sent.command


def test_streamed_output_is_masked_and_the_command_sent_shows_no_content(tmp_path):
    masker = Masker()
    masker.add(SECRET)
    tasks = [
        file("tasks.f", "h1", tmp_path, content=f"key={SECRET}\n"),
        command(
            "tasks.c",
            "h1",
            tmp_path,
            f"printf '%s' '{SECRET[:10]}'; sleep 0.6; printf '%s\\n' '{SECRET[10:]}'",
            requires=("tasks.f",),
        ),
    ]
    run = run_tasks(tasks, FakePool(), masker=masker)
    assert run.statuses["tasks.c"] == Status.CHANGED
    assert all(SECRET not in repr(e) for e in run.events if not isinstance(e, CommandSent))
    assert "".join(c.text for c in chunks(run.events, "tasks.c")) == MASK + "\n"
    sent = [e for e in run.events if isinstance(e, CommandSent)]
    file_sent = next(e for e in sent if e.tasks == ("tasks.f",))
    assert str(out_path(tmp_path, "tasks.f")) in file_sent.command
    assert "key=" not in file_sent.command  # a file's content is never shown


def test_a_second_stop_aborts_the_running_tasks_at_once(tmp_path):
    """stop() then stop(immediately=True): the running task is ended long before the grace
    period, recorded interrupted; StopRequested names it, then says it stops at once."""
    scheduler_box = []
    task = command("tasks.long", "h1", tmp_path, "sleep 30")
    other = command("tasks.next", "h1", tmp_path, "true", requires=("tasks.long",))

    def stop_twice():
        def later():
            time.sleep(0.3)
            scheduler_box[0].stop(reason="SIGINT")
            time.sleep(0.5)
            scheduler_box[0].stop(immediately=True, reason="SIGINT")

        threading.Thread(target=later, daemon=True).start()

    pool = FakePool()
    pool.on(notify(stop_twice), when="sleep 30")
    started = time.monotonic()
    run = run_tasks([task, other], pool, before_run=scheduler_box.append, grace=60, timeout=120)
    assert time.monotonic() - started < 10
    assert run.statuses == {"tasks.long": Status.FAILED, "tasks.next": Status.SKIPPED}
    assert run.message("tasks.long") == STOPPED_AT_ONCE
    assert run.message("tasks.next") == "skipped: interrupted"
    stops = [e for e in run.events if isinstance(e, StopRequested)]
    assert [s.immediate for s in stops] == [False, True]
    assert stops[0].running == (("tasks.long", "h1"),) and stops[0].grace == 60
    assert stops[0].reason == "SIGINT"
    assert isinstance(run.events[-1], RunFinished) and run.events[-1].interrupted


# sinks and the new events -------------------------------------------------------------------


def test_every_sink_takes_the_new_events(tmp_path):
    """The display (each verbosity, live or not), JSON lines, JUnit and the state store take
    CommandSent, ConnectionChanged and StopRequested without breaking; -vv shows the first
    two, every sink a person reads the stop's notice."""
    from fedi_run.engine.report.junit import JUnitSink
    from fedi_run.engine.report.state import StateStore

    stop = StopRequested(1, "SIGINT", (("tasks.a", "h1"),), 10.0, False, 1.0)
    events = [
        RunStarted(1, "d", "run", ("tasks.a",), ("h1",), False, 1.0),
        ConnectionChanged(1, "h1", "connecting", "root@127.0.0.2:22", 1, 1.0),
        ConnectionChanged(1, "h1", "connected", "root@127.0.0.2:22", 1, 1.0),
        TaskStarted(1, "tasks.a", "h1", 1.0),
        CommandSent(1, ("tasks.a",), "h1", "run: sleep 600", 1.0),
        OutputChunk(1, "tasks.a", "h1", "stdout", "working\n"),
        stop,
        TaskFinished(1, "tasks.a", "h1", Status.FAILED, 1.0, "interrupted: …"),
        RunFinished(1, 130, 2.0, True, {"h1": {"failed": 1}}),
    ]
    texts = {}
    for verbose in (0, 1, 2):
        shown = io.StringIO()
        display = ProgressDisplay(shown, live=False, verbose=verbose)
        for event in events:
            display.handle(event)
        display.close()
        texts[verbose] = shown.getvalue()
    notice = "waiting up to 10 s for the 1 running task to finish: tasks.a @h1"
    assert all(notice in text for text in texts.values())
    assert "Press Ctrl-C again to stop them at once." in texts[0]
    assert "run: sleep 600" in texts[2] and "~ @h1 connecting (attempt 1)" in texts[2]
    assert "run: sleep 600" not in texts[1] and "connecting" not in texts[1]
    assert "  tasks.a | working" in texts[1] and "tasks.a | working" not in texts[0]

    for verbose, expect in ((0, False), (2, True)):
        out, notices = io.StringIO(), io.StringIO()
        sink = JsonLinesSink(out, verbose=verbose, notices=notices)
        for event in events:
            sink.handle(event)
        kinds = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
        assert "stop_requested" in kinds and "output" in kinds
        assert ("command_sent" in kinds) is expect and ("connection" in kinds) is expect
        assert notice in notices.getvalue()

    junit = JUnitSink(tmp_path / "junit.xml")
    store = StateStore.open(tmp_path / "state.db")
    run_id = store.begin_run("d", "run", ("tasks.a",), ("h1",), False, ())
    for event in events:
        event = event if not hasattr(event, "run_id") else _with_run(event, run_id)
        junit.handle(event)
        store.handle(event)
    junit.close()
    [task] = store.get_run(run_id).tasks
    assert task.status == "failed" and store.write_error is None
    store.close()


def _with_run(event, run_id):
    from dataclasses import replace

    return replace(event, run_id=run_id)


def test_the_live_view_shows_each_running_tasks_latest_line_under_it(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    for verbose in (0, 1):
        display = ProgressDisplay(io.StringIO(), live=True, verbose=verbose)
        display.handle(RunStarted(1, "d", "run", ("tasks.a",), ("h1",), False, 1.0))
        display.handle(TaskStarted(1, "tasks.a", "h1", 1.0))
        display.handle(OutputChunk(1, "tasks.a", "h1", "stdout", "compiling x\nlinking y\n"))
        from rich.console import Console

        console = Console(file=io.StringIO(), width=60, force_terminal=False)
        with console.capture() as capture:
            console.print(display._view(time.monotonic()))
        display.close()
        rows = capture.get().splitlines()
        [at] = [i for i, row in enumerate(rows) if "tasks.a" in row and "@h1" in row]
        if verbose:
            assert rows[at + 1].strip() == "linking y" and "linking" not in rows[at]
        else:
            assert "linking y" in rows[at]


def test_json_output_records_stay_bounded_for_a_task_that_prints_without_end():
    """Past the first 64 KiB of a task's output, JSON output records are sampled (the latest
    line, with how much was skipped): 20 MB printed make well under 200 KiB of JSON. The
    chunks come 20 µs apart on the sink's clock — 10 s in all, so about ten samples — whatever
    the machine's speed (on the monotonic clock, a fast machine handled them all in under a
    second and wrote one sample)."""
    out = io.StringIO()
    ticks = iter(range(10**9))
    sink = JsonLinesSink(out, clock=lambda: next(ticks) * 20e-6)
    line = "building something rather long, step %d\n"
    for i in range(500_000):
        sink.handle(OutputChunk(1, "tasks.loud", "h1", "stdout", line % i))
    sink.handle(OutputChunk(1, "tasks.quiet", "h1", "stdout", "a quiet line\n"))
    records = [json.loads(row) for row in out.getvalue().splitlines()]
    assert len(out.getvalue()) < 200 * 1024
    assert records[0]["text"] == line % 0 and "skipped" not in records[0]
    assert any(r.get("skipped", 0) > 1_000_000 for r in records)
    assert records[-1]["id"] == "tasks.quiet" and records[-1]["text"] == "a quiet line\n"
