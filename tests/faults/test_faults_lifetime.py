"""How long a task's command lives on its host: past the task's timeout, past the grace period
of SIGTERM, after the deployer is killed (SIGKILL), and while its own sshd is stopped. Each
case ends with ``--resume``, and a counter on the host proves that nothing ran twice and
nothing ran at once: the guarded task appends ``start <pid>`` as it starts (``overlap`` if the
shell of an earlier start still runs: sleeping, not a zombie), ``done`` when it has done its
work."""

from __future__ import annotations

import os
import signal
import time

import pytest
from fault_helpers import HEADER, Cli, fedi, recorded

pytestmark = pytest.mark.lab

GUARDED = """
[tasks.guarded]
host = "f1"
run = '''
{prefix}echo "start $$" >> /srv/count
p=$(cat /srv/running 2>/dev/null)
if [ -n "$p" ] && [ "$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null)" = S ] &&
        grep -q fedi-run /proc/$p/cmdline 2>/dev/null; then
    echo overlap >> /srv/count  # an earlier start of this task is still running
fi
echo $$ > /srv/running
[ -e /srv/fast ] || sleep 20
echo done >> /srv/count
touch /srv/guarded.done
'''
creates = "/srv/guarded.done"
{extra}
[tasks.after]
host = "f1"
run = "echo after >> /srv/after"
requires = ["tasks.guarded"]

[tasks.other]
host = "f2"
run = "echo other >> /srv/count"
"""


def guarded(prefix: str = "", extra: str = "") -> str:
    return HEADER + GUARDED.format(prefix=prefix, extra=extra)


def count(lab) -> list[str]:
    return lab.run("f1", "cat /srv/count 2>/dev/null; true").stdout.splitlines()


def started_on_host(lab, timeout: float = 20) -> int:
    """The pid of the guarded task's shell, once it has started on f1."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = count(lab)
        if lines and lines[0].startswith("start "):
            return int(lines[0].split()[1])
        time.sleep(0.05)
    raise AssertionError("the guarded task never started on f1")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (the lab's hosts share this machine's process table)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def process_group(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[2])


def run_args(path, lab, *extra: object) -> tuple:
    return ("run", path, "-i", lab.inventory_path, "--no-apply", "--json", *extra)


def resume_completes_once(lab, path, first: int) -> None:
    """``--resume`` runs the guarded task and what needs it, once: the counter holds the first
    start (which never got to ``done``), the resumed one, one ``done``, no overlap."""
    lab.run("f1", "touch /srv/fast", check=True)
    resumed = fedi(*run_args(path, lab, "--resume"))
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert {"tasks.guarded", "tasks.after"} <= set(resumed.started())
    lines = count(lab)
    assert [line.split()[0] for line in lines] == ["start", "start", "done"], lines
    assert lines[0] == f"start {first}" and lines[1] != lines[0]
    assert not alive(first)  # the first can never write a second "done"
    assert lab.run("f1", "cat /srv/after").stdout == "after\n"
    assert recorded(path)["tasks.guarded"] == "changed"


def test_the_counter_sees_an_overlap(four, playbook):
    """A control for the counter: two starts while the first still runs are an overlap."""
    four.run(  # a shell that looks like the task's own, still running
        "f1", "sh -c 'sleep 5; :' fedi-run >/dev/null 2>&1 & echo $! > /srv/running", check=True
    )
    path = playbook(guarded())
    four.run("f1", "touch /srv/fast", check=True)
    result = fedi(*run_args(path, four))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "overlap" in count(four)


@pytest.mark.reliability(
    "faults",
    "a task past its timeout, then --resume",
    "exit 1, the task failed 'timed out after 2 s on f1'; its command (and what it started) "
    "is stopped on the host at once; --resume runs it once more: one completed run, no overlap",
)
def test_a_timed_out_command_is_stopped_and_resume_runs_it_once(four, playbook):
    path = playbook(guarded(extra="timeout = 2"))
    first = fedi(*run_args(path, four))
    assert first.exit_code == 1, first.stdout + first.stderr
    finished = first.finished()
    assert finished["tasks.guarded"]["status"] == "failed"
    assert finished["tasks.guarded"]["message"] == "timed out after 2 s on f1"
    assert finished["tasks.after"]["status"] == "skipped"
    assert finished["tasks.other"]["status"] == "changed"
    pid = started_on_host(four)
    assert ends_within(pid, 3), "the timed-out command still runs on f1"
    resume_completes_once(four, path, pid)


@pytest.mark.reliability(
    "faults",
    "SIGTERM while a task runs past the grace period, then --resume",
    "exit 130 after the 10 s grace period, the task failed 'interrupted: still running when the "
    "grace period ended …', its command stopped on the host; --resume runs it once more: one "
    "completed run, no overlap",
)
def test_sigterm_stops_the_command_on_its_host_and_resume_runs_it_once(four, playbook):
    path = playbook(guarded())
    run = Cli(*run_args(path, four))
    run.wait_for("task_started", "tasks.guarded")
    pid = started_on_host(four)
    run.process.send_signal(signal.SIGTERM)
    result = run.finish(timeout=60)
    assert result.exit_code == 130, result.stderr
    assert result.duration < 25
    guarded_task = result.finished()["tasks.guarded"]
    assert guarded_task["status"] == "failed"
    assert guarded_task["message"].startswith(
        "interrupted: still running when the grace period ended"
    )
    assert result.finished()["tasks.after"]["message"] == "skipped: interrupted"
    assert ends_within(pid, 3), "the interrupted command still runs on f1"
    assert count(four) == [f"start {pid}"]
    resume_completes_once(four, path, pid)


@pytest.mark.reliability(
    "faults",
    "the deployer killed (SIGKILL) while a task runs, then --resume at once",
    "the command ends on the host with its SSH session (SIGTERM, SIGKILL 2 s later: it "
    "ignores SIGTERM); the resumed run waits for it to be gone, then runs the task once more: "
    "one completed run, no overlap",
)
def test_a_killed_deployer_leaves_no_command_behind_and_resume_runs_it_once(four, playbook):
    path = playbook(guarded(prefix="trap '' TERM\n"))
    run = Cli(*run_args(path, four))
    run.wait_for("task_started", "tasks.guarded")
    pid = started_on_host(four)
    run.process.kill()
    run.process.wait(10)
    assert alive(pid)  # it ignores SIGTERM: it is there still, for KILL_AFTER
    resume_completes_once(four, path, pid)


@pytest.mark.reliability(
    "faults",
    "--resume while the task's command of the earlier run still runs on its host (its SSH "
    "session stopped, so nothing could end it)",
    "the task is not started again: it fails 'still running on f1: its command of an earlier "
    "run (process group N …) has not ended' after waiting for it (half its timeout, 5 s at "
    "most); once that session goes on (and so ends), --resume runs it once: one completed run, "
    "no overlap",
)
def test_resume_does_not_start_a_task_whose_earlier_command_still_runs(four, playbook):
    path = playbook(guarded(extra="timeout = 2"))
    run = Cli(*run_args(path, four, "--connect-timeout", "2"))
    run.wait_for("task_started", "tasks.guarded")
    pid = started_on_host(four)
    group = process_group(pid)
    sshd = four.host_processes("f1", "sshd")
    # the sshd processes serving this run's connection (the command's ancestors), not the
    # listener (whose parent is no sshd) nor the lab's own connection
    sessions, ancestor = [], _parent(pid)
    while ancestor > 1:
        if ancestor in sshd and _parent(ancestor) in sshd:
            sessions.append(ancestor)
        ancestor = _parent(ancestor)
    assert sessions, sshd
    for session in sessions:
        os.kill(session, signal.SIGSTOP)
    try:
        result = run.finish(timeout=60)
        assert result.exit_code == 1, result.stderr
        assert result.finished()["tasks.guarded"]["message"] == "timed out after 2 s on f1"
        assert alive(pid)  # its session is stopped: the command goes on

        four.run("f1", "touch /srv/fast", check=True)
        refused = fedi(*run_args(path, four, "--resume"))
        assert refused.exit_code == 1, refused.stdout + refused.stderr
        message = refused.finished()["tasks.guarded"]["message"]
        assert message.startswith("still running on f1: its command of an earlier run"), message
        assert f"process group {group}" in message
        assert refused.finished()["tasks.after"]["status"] == "skipped"
        assert count(four) == [f"start {pid}"]  # not started a second time
    finally:
        for session in sessions:
            os.kill(session, signal.SIGCONT)
    assert ends_within(pid, 5)  # its session ended, and the command with it
    resume_completes_once(four, path, pid)


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])
