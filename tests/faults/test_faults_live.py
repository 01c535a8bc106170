"""A real ``fedi-run`` against a lab host while a long task runs: its output streams (``--json``
and ``-v``) before it ends, ``-vv`` shows the commands sent and the connection, and Ctrl-C says
at once what the run waits for; a second Ctrl-C stops at once (exit 130), the task recorded
interrupted and its command gone from the host."""

from __future__ import annotations

import json
import os
import select
import signal
import time

import pytest
from fault_helpers import HEADER, Cli, last_run

from fedi_run.engine.execute.stopping import STOPPED_AT_ONCE

pytestmark = pytest.mark.lab

SLOW = """
[tasks.slow]
host = "l1"
run = '''
echo $$ > /srv/live.pid
echo "started the long work"
{wait}
echo "finished the long work"
'''

[tasks.after]
host = "l1"
run = "echo after > /srv/after"
requires = ["tasks.slow"]
"""


@pytest.fixture
def one(lab_factory):
    return lab_factory(["l1"])


def slow(wait: str) -> str:
    return HEADER + SLOW.format(wait=wait)


def read_until(stream, wanted: str, seconds: float) -> str:
    """What ``stream`` (a pipe) gives within ``seconds``, up to the line holding ``wanted``."""
    fd, seen = stream.fileno(), ""
    os.set_blocking(fd, False)
    deadline = time.monotonic() + seconds
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {wanted!r} within {seconds} s; got: {seen!r}")
        if select.select([fd], [], [], left)[0]:
            data = os.read(fd, 65536)
            if not data:
                raise AssertionError(f"the stream ended before {wanted!r}; got: {seen!r}")
            seen += data.decode("utf-8", "replace")
    return seen


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_ctrl_c_says_what_it_waits_for_and_a_second_one_stops_at_once(one, playbook, tmp_path):
    path = playbook(slow("sleep 600"))
    run = Cli("run", path, "-i", one.inventory_path, "--no-apply", "--json", "-vv")
    # the task's first line is a JSON event while the task still runs (it sleeps 600 s)
    run.wait_for("output", "tasks.slow")
    output = json.loads(run.lines[-1])
    # (its newline may follow in the next event: the script's reader holds it back a moment)
    assert output["text"].rstrip("\n") == "started the long work" and output["host"] == "l1"
    pid = int(one.run("l1", "cat /srv/live.pid").stdout)
    assert alive(pid)

    run.process.send_signal(signal.SIGINT)
    asked = time.monotonic()
    notice = read_until(run.process.stderr, "again to stop them at once", 2.0)
    assert time.monotonic() - asked < 2.0
    assert "Stopping (Ctrl-C): nothing new starts; waiting up to 10 s for the 1 running task" in (
        notice
    )
    assert "tasks.slow @l1" in notice
    assert alive(pid)  # the first Ctrl-C waits: the command still runs

    run.process.send_signal(signal.SIGINT)
    again = time.monotonic()
    result = run.finish(timeout=30)
    assert result.exit_code == 130, result.stderr
    assert time.monotonic() - again < 6  # at once, not after the grace period
    assert gone_within(pid, 3), "the interrupted command still runs on l1"
    assert "Stopping at once (Ctrl-C again)" in notice + result.stderr

    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    kinds = [r["event"] for r in records]
    stops = [r for r in records if r["event"] == "stop_requested"]
    assert [s["immediate"] for s in stops] == [False, True]
    assert stops[0]["running"] == [{"id": "tasks.slow", "host": "l1"}] and stops[0]["grace"] == 10
    assert kinds[-1] == "run_finished" and records[-1]["status"] == "interrupted"
    finished = {r["id"]: r for r in records if r["event"] == "task_finished"}
    assert finished["tasks.slow"]["message"] == STOPPED_AT_ONCE
    assert finished["tasks.after"]["message"] == "skipped: interrupted"
    # -vv: the command sent for the task, and the connection's events
    sent = [r for r in records if r["event"] == "command_sent" and r["ids"] == ["tasks.slow"]]
    assert sent and "sleep 600" in sent[0]["command"]
    states = [r["state"] for r in records if r["event"] == "connection" and r["host"] == "l1"]
    assert states[:2] == ["connecting", "connected"]

    recorded = last_run(path)
    assert recorded.interrupted and recorded.exit_status == 130
    tasks = {t.task_id: t for t in recorded.tasks}
    assert tasks["tasks.slow"].outcome == "failed"
    assert tasks["tasks.slow"].message.startswith("interrupted: stopped at once")
    assert tasks["tasks.after"].message == "skipped: interrupted"
    assert one.run("l1", "cat /srv/after 2>/dev/null; true").stdout == ""


def test_verbose_plain_display_shows_each_line_while_the_task_runs(one, playbook):
    """``-v`` without a terminal: the task's line is on stderr, under its id, while the
    command still waits; the test lets it end only after seeing it."""
    path = playbook(slow("while [ ! -e /srv/go ]; do sleep 0.1; done"))
    run = Cli("run", path, "-i", one.inventory_path, "--no-apply", "-v")
    seen = read_until(run.process.stderr, "  tasks.slow | started the long work\n", 30)
    assert "finished the long work" not in seen and "changed " not in seen
    one.run("l1", "touch /srv/go", check=True)
    result = run.finish(timeout=60)
    assert result.exit_code == 0, seen + result.stderr
    shown = seen + result.stderr
    assert "  tasks.slow | finished the long work\n" in shown
    assert shown.count("started the long work") == 1  # not printed again at the end
