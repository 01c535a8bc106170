"""How a failure is reported: the failed command whole (wrapped on word boundaries, never
cut), the output's stdout and stderr labelled, the task's log named, and the recap ending
with the list of failures and the ``--resume`` command that continues the run.

The display tests render events through the real :class:`ProgressDisplay` (plain mode, into
a StringIO); the producer tests run real scripts by a local ``sh`` on the fake pool, through
the real scheduler, so that the events' command, streams and log are the engine's own.
"""

from __future__ import annotations

import io
import re
import shlex
import time
from pathlib import Path

import pytest
from fakes.harness import graph_of
from fakes.pool import FakePool

from fedi_run.engine.execute.scheduler import ExecutionOptions, Scheduler
from fedi_run.engine.planning.operations import Command
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.report.display import ProgressDisplay
from fedi_run.engine.report.events import (
    OutputCut,
    RunFinished,
    RunStarted,
    Status,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.masking import MASK, Masker
from fedi_run.engine.report.output_log import OutputLog
from fedi_run.engine.report.recap import WIDTH, recap, resume_argv, wrap

T0 = 1_700_000_000.0
LONG_WORD = "https://example.org/" + "a-very-long-path-segment-" * 5 + "end"  # > 100 columns
COMMAND = (
    "install -m 0400 -o mastodon -g mastodon /var/lib/fedi-run/staging/secret-key-base "
    f"/var/lib/mastodon/secrets/secret-key-base && curl --fail --silent {LONG_WORD} "
    "--output /var/lib/mastodon/config/registration.json && systemctl restart "
    "mastodon-web.service mastodon-sidekiq.service"
)
LOG = Path("/srv/deploy/.fedi-run/logs/7/mastodon.secrets.log")
ARGV = ("run", "my deployment/playbook.toml", "--only", "mastodon.*")


def failed(task_id="mastodon.secrets", host="mastodon", **fields) -> TaskFinished:
    return TaskFinished(
        7,
        task_id,
        host,
        Status.FAILED,
        1.5,
        fields.pop("message", "ran: install -m 0400 …: exited with status 1"),
        at=T0 + 1,
        **fields,
    )


def show(
    *finished: TaskFinished,
    argv=ARGV,
    interrupted=False,
    verbose=False,
    live=False,
) -> str:
    """The display's whole text for a run ending with ``finished``."""
    ids = tuple(e.task_id for e in finished)
    hosts = tuple(e.host for e in finished)
    stream = io.StringIO()
    display = ProgressDisplay(stream, live=live, color=False, verbose=verbose)
    display.handle(RunStarted(7, "fediversity", "run", ids, hosts, False, T0, argv))
    for event in finished:
        if event.duration:
            display.handle(TaskStarted(7, event.task_id, event.host, T0))
        display.handle(event)
    counts = recap(finished)
    display.handle(RunFinished(7, 130 if interrupted else 1, 2.0, interrupted, counts))
    display.close()
    return stream.getvalue()


def block(text: str, label: str) -> list[str]:
    """The lines under ``    <label>:`` (indented deeper than it)."""
    lines = text.splitlines()
    start = lines.index(f"    {label}:") + 1
    end = start
    while end < len(lines) and lines[end].startswith("      "):
        end += 1
    return [line.strip() for line in lines[start:end]]


# --- the failed task -------------------------------------------------------------------------


def test_the_failed_command_is_shown_whole_wrapped_between_words_at_100_columns():
    assert len(COMMAND) >= 300 and len(LONG_WORD) > WIDTH
    text = show(failed(command=COMMAND, stdout="x\n"))
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("    command: "))
    rows = [lines[first]]
    for line in lines[first + 1 :]:
        if not line.startswith(" " * 15):
            break
        rows.append(line)
    assert len(rows) >= 4  # wrapped, not one 300-column line
    # every word whole, in order: the command is the rows' words joined
    words = " ".join(row.strip() for row in rows).removeprefix("command: ")
    assert words == COMMAND
    for row in rows:
        assert len(row) <= WIDTH or row.strip() == LONG_WORD, row
    assert any(row.strip() == LONG_WORD for row in rows)  # the long word alone, not cut
    assert all(row.startswith(" " * 15) for row in rows[1:])  # continuation indent
    assert "…" not in " ".join(rows)


def test_wrap_keeps_each_line_of_a_script_and_its_indentation():
    script = 'set -e\nfor f in a b; do\n  echo "$f"\ndone'
    rows = wrap("command: ", script, 100)
    assert rows == [
        "    command: set -e",
        "             for f in a b; do",
        '               echo "$f"',
        "             done",
    ]


def test_wrap_follows_a_narrow_terminal():
    rows = wrap("command: ", COMMAND, 60)
    assert all(len(row) <= 60 or row.strip() == LONG_WORD for row in rows)
    assert " ".join(row.strip() for row in rows).removeprefix("command: ") == COMMAND


def test_stdout_and_stderr_are_labelled_and_the_log_is_named():
    text = show(
        failed(
            command="make deploy",
            stdout="building\nlinking\n",
            stderr=f"error: bad key {MASK}\n",
            output=f"building\nerror: bad key {MASK}\nlinking\n",
            log=LOG,
        )
    )
    assert block(text, "stdout") == ["building", "linking"]
    assert block(text, "stderr") == [f"error: bad key {MASK}"]
    assert f"    log: {LOG}\n" in text
    assert "output (stdout and stderr)" not in text


def test_long_streams_are_tail_clipped_with_the_note_naming_the_log():
    stdout = "".join(f"out {i}\n" for i in range(500))
    cut = OutputCut(52323942, LOG)
    text = show(failed(stdout=stdout, stderr="boom\n", output=stdout, output_cut=cut, log=LOG))
    assert f"    [… 49.9 MiB more in {LOG}]\n" in text
    assert block(text, "stdout") == [f"out {i}" for i in range(480, 500)]
    text = show(failed(stdout=stdout, stderr="boom\n", output=stdout, log=LOG))
    assert block(text, "stdout")[0] == "… 480 earlier lines cut"
    assert block(text, "stdout")[1:] == [f"out {i}" for i in range(480, 500)]


def test_output_not_told_apart_is_labelled_as_both_streams():
    text = show(failed(output="one\ntwo\n", log=LOG))
    assert block(text, "output (stdout and stderr)") == ["one", "two"]
    assert "    stdout:" not in text and "    stderr:" not in text


def test_a_failure_without_output_says_so():
    text = show(failed(message="internal error: KeyError: 'x'"))
    assert "    no output\n" in text and "    log:" not in text


# --- the end of the recap ------------------------------------------------------------------


def test_the_recap_ends_with_the_failures_and_the_resume_command():
    unreachable = TaskFinished(
        7, "peertube.secrets", "peertube", Status.UNREACHABLE, 0.0, "unreachable: refused"
    )
    skipped = TaskFinished(
        7, "mastodon.s3", "mastodon", Status.SKIPPED, 0.0, "skipped: dependency failed"
    )
    ok = TaskFinished(7, "dns.check", "local", Status.OK, 0.1)
    text = show(failed(command=COMMAND, output="x\n"), unreachable, skipped, ok)
    after = text.split("wall time 2.00 s\n", 1)[1].splitlines()
    assert after == [
        "",
        "Failures (2):",
        "  failed      mastodon.secrets  @mastodon  ran: install -m 0400 …: exited with status 1",
        "  unreachable peertube.secrets  @peertube  unreachable: refused",
        "to continue: fedi-run run 'my deployment/playbook.toml' --only 'mastodon.*' --resume",
    ]
    command = after[-1].removeprefix("to continue: ")
    assert shlex.split(command) == ["fedi-run", *ARGV, "--resume"]


def test_resume_is_added_once_and_before_a_double_dash():
    assert resume_argv(("run", "p.toml", "--resume")) == ["fedi-run", "run", "p.toml", "--resume"]
    assert resume_argv(("run", "p.toml", "--", "--resume")) == [
        "fedi-run",
        "run",
        "p.toml",
        "--resume",
        "--",
        "--resume",
    ]
    text = show(failed(), argv=("run", "p.toml", "--resume"))
    assert text.endswith("to continue: fedi-run run p.toml --resume\n")
    assert text.count("--resume") == 1


def test_nothing_failed_no_failures_and_no_resume():
    text = show(TaskFinished(7, "dns.check", "local", Status.OK, 0.1))
    assert "Failures" not in text and "--resume" not in text
    assert text.endswith("wall time 2.00 s\n")


def test_an_interrupted_run_shows_the_resume_command_even_without_failures():
    skipped = TaskFinished(7, "mastodon.s3", "mastodon", Status.SKIPPED, 0.0, "skipped: stopped")
    text = show(TaskFinished(7, "a", "local", Status.OK, 0.1), skipped, interrupted=True)
    assert "Failures" not in text
    assert text.endswith(
        "to continue: fedi-run run 'my deployment/playbook.toml' --only 'mastodon.*' --resume\n"
    )


def test_without_argv_the_failures_are_listed_but_no_command_is_guessed():
    text = show(failed(), argv=())
    assert "Failures (1):" in text and "to continue" not in text


def test_the_live_display_ends_the_same_way(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    text = show(failed(command=COMMAND, stderr="boom\n", log=LOG), live=True)
    plain_text = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]", "", text)
    assert "    stderr:\n      boom\n" in plain_text and f"    log: {LOG}" in plain_text
    assert plain_text.rstrip().endswith("--only 'mastodon.*' --resume")
    assert "Failures (1):" in plain_text


# --- the producer: what the engine puts in the event ----------------------------------------

SECRET = "s3cr3t-hunter2-value"


def run_engine(tasks: list[Task], tmp_path: Path) -> dict[str, TaskFinished]:
    """Run ``tasks`` through the real scheduler on the fake pool, with a real output log."""
    graph = graph_of(tasks)
    masker = Masker()
    masker.add(SECRET)
    events: list = []
    (tmp_path / "state").mkdir(mode=0o700)
    log = OutputLog.create(tmp_path / "state", 7, masker)
    scheduler = Scheduler(
        graph,
        graph.order,
        FakePool(),
        masker,
        events.append,
        ExecutionOptions(),
        7,
        log=log,
        state_dir=tmp_path / "state",
    )
    hosts = tuple(graph.tasks[t].where for t in graph.order)
    scheduler.emit(RunStarted(7, "fake", "run", graph.order, hosts, False, time.time()))
    scheduler.run()
    return {e.task_id: e for e in events if isinstance(e, TaskFinished)}


LOUD = f"echo building; echo 'error: bad key {SECRET}' >&2; echo linking; exit 3"


@pytest.mark.parametrize("batched", [False, True])
def test_the_engine_reports_the_command_its_two_streams_and_its_log(tmp_path, batched):
    long_command = f"true {'x' * 150} && {LOUD}"
    tasks = [Task("a.fails", "web", actions=(Command(long_command),))]
    if batched:  # a second task of the host: both run in one script, one segment each
        tasks.append(Task("a.fine", "web", actions=(Command("echo fine; echo warn >&2"),)))
    finished = run_engine(tasks, tmp_path)
    event = finished["a.fails"]
    assert event.status is Status.FAILED
    assert event.command == long_command.replace(SECRET, MASK)
    assert event.stdout == "building\nlinking\n"
    assert event.stderr == f"error: bad key {MASK}\n"
    assert event.message.endswith(" …: exited with status 3")  # cut between words
    assert event.log == tmp_path / "state" / "logs" / "7" / "a.fails.log"
    whole = event.log.read_text()
    assert sorted(whole.splitlines()) == sorted(["building", "linking", f"error: bad key {MASK}"])
    assert SECRET not in whole and event.log.stat().st_mode & 0o777 == 0o600
    if batched:
        assert finished["a.fine"].status is Status.CHANGED
        assert finished["a.fine"].output.split() == ["fine", "warn"]
    text = show(event)
    assert block(text, "stdout") == ["building", "linking"]
    assert block(text, "stderr") == [f"error: bad key {MASK}"]
    assert f"    log: {event.log}\n" in text and SECRET not in text


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_command_s_streams_are_told_apart_line_for_line_however_they_interleave(shell):
    """Its stdout and stderr written in turns, a partial last line, a second task's segment
    after it: each byte reaches the right stream of the right segment (the script's marker
    lines are written whole, so a stdout write never falls inside one)."""
    import shutil
    import subprocess

    from fedi_run.engine.execute import scripts

    if shutil.which(shell) is None:
        pytest.fail(f"{shell} is needed for this test")
    loud = 'i=0; while [ $i -lt 300 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done'
    segments = [
        [scripts.command_part("0.0", f"{loud}; printf partial; exit 3", None, None)],
        [scripts.command_part("1.0", "echo fine; echo warn >&2", None, None)],
    ]
    script = scripts.compile_script(segments, False)
    done = subprocess.run([shell, "-c", script.text], input=script.payload, capture_output=True)
    out, err = [bytearray(), bytearray()], [bytearray(), bytearray()]
    reader = scripts.ReportReader(script.marker, [o.extend for o in out], [e.extend for e in err])
    for start in range(0, len(done.stdout), 61):  # as a channel delivers it: in pieces
        reader.feed(done.stdout[start : start + 61])
    reader.close()
    assert out[0].decode() == "".join(f"out {i}\n" for i in range(300)) + "partial"
    assert err[0].decode() == "".join(f"err {i}\n" for i in range(300))
    assert reader.states[0] == {0: ("F", "exited with status 3")}
    assert (out[1], err[1], reader.states[1]) == (b"fine\n", b"warn\n", {0: ("1", "")})
