"""Hosts that fail while a task runs on them: sshd killed mid-task, sshd stopped (SIGSTOP)
mid-task. The run ends with the documented status and message, the other hosts finish, the
state records it, and --resume completes with nothing done twice."""

from __future__ import annotations

import os
import signal
import time

import pytest
from fault_helpers import HEADER, Cli, fedi, recorded

pytestmark = pytest.mark.lab

# Each task appends a line to /srv/count on its host when it has done its work, so a second
# line would be a task done twice.
PLAYBOOK = (
    HEADER
    + """
[tasks.long]
host = "f1"
run = "echo start >> /srv/starts; [ -e /srv/fast ] || sleep 30; echo long >> /srv/count"

[tasks.after]
host = "f1"
run = "echo after >> /srv/count"
requires = ["tasks.long"]

[tasks.other]
host = "f2"
run = "sleep 1; echo other >> /srv/count"

[tasks.config]
host = "f3"
file = { path = "/srv/config", content = "new\\n" }
"""
)


def _count(lab, host: str) -> list[str]:
    return lab.run(host, "cat /srv/count 2>/dev/null; true").stdout.split()


def _wait_started_on_host(lab, host: str, path: str = "/srv/starts") -> None:
    deadline = time.monotonic() + 10
    while lab.run(host, f"test -s {path}").exit_status != 0:
        assert time.monotonic() < deadline, f"the task never started on {host}"
        time.sleep(0.05)


@pytest.mark.reliability(
    "faults",
    "sshd killed in the middle of a task",
    "exit 1; the task unreachable 'lost the connection to f1 … reconnecting failed', its "
    "dependent too, other hosts finish; state records it; after sshd restarts, --resume runs "
    "only those two, nothing twice",
)
def test_sshd_killed_mid_task(four, playbook):
    path = playbook(PLAYBOOK)
    run = Cli(
        "run",
        path,
        "-i",
        four.inventory_path,
        "--no-apply",
        "--json",
        "--connect-timeout",
        "2",
        "--retries",
        "1",
    )
    run.wait_for("task_started", "tasks.long")
    _wait_started_on_host(four, "f1")
    with four.addresses_held():  # no other lab may take f1's address while it is down
        sshd = four.host_processes("f1", "sshd")
        assert len(sshd) >= 2, sshd  # the listener, and the processes serving the connections
        for pid in sshd:
            os.kill(pid, signal.SIGKILL)
        result = run.finish()
        four.restart_host("f1", holding_addresses=True)

    assert result.exit_code == 1, result.stderr
    assert result.duration < 20
    finished = result.finished()
    long = finished["tasks.long"]
    assert long["status"] == "unreachable", repr(long)
    assert long["message"].startswith("lost the connection to f1")
    assert "reconnecting failed: cannot connect to f1" in long["message"]
    assert long["message"].endswith(("Connection refused", "Connection reset by peer")), long[
        "message"
    ]
    assert finished["tasks.after"]["status"] in ("unreachable", "skipped")
    assert finished["tasks.other"]["status"] == "changed"
    assert finished["tasks.config"]["status"] == "changed"
    assert "Traceback" not in result.stderr
    state = recorded(path)
    assert state["tasks.long"] == "unreachable" and state["tasks.other"] == "changed"
    assert state["tasks.after"] in ("unreachable", "skipped")

    four.run("f1", "touch /srv/fast", check=True)
    resumed = fedi("run", path, "-i", four.inventory_path, "--no-apply", "--json", "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert set(resumed.started()) == {"tasks.long", "tasks.after", "nixops4.render"}
    assert _count(four, "f1") == ["long", "after"]
    assert _count(four, "f2") == ["other"]
    assert recorded(path) == {
        "tasks.long": "changed",
        "tasks.after": "changed",
        "nixops4.render": "changed",
    }


@pytest.mark.reliability(
    "faults",
    "a host stops answering in the middle of a task (its sshd SIGSTOPped)",
    "the task's timeout fires: exit 1, the task failed 'timed out after 3 s on f1', its "
    "dependent skipped, the host's next task unreachable within --connect-timeout, other hosts "
    "finish, the run does not hang; after SIGCONT, --resume completes and the guarded task is "
    "not done twice",
)
def test_host_stops_answering_mid_task(four, playbook):
    path = playbook(
        HEADER
        + """
[tasks.stuck]
host = "f1"
run = "echo start >> /srv/starts; sleep 1; echo stuck >> /srv/count; touch /srv/stuck.done"
creates = "/srv/stuck.done"
timeout = 3

[tasks.next]
host = "f1"
run = "echo next >> /srv/count"
requires = ["tasks.stuck"]

[tasks.independent]
host = "f1"
file = { path = "/srv/independent", content = "x\\n" }
requires = ["tasks.other"]  # ready while tasks.stuck hangs

[tasks.other]
host = "f2"
run = "sleep 1; echo other >> /srv/count"

[tasks.more]
host = "f3"
run = "sleep 2; echo more >> /srv/count"
"""
    )
    run = Cli(
        "run",
        path,
        "-i",
        four.inventory_path,
        "--no-apply",
        "--json",
        "--connect-timeout",
        "1",
        "--retries",
        "1",
    )
    run.wait_for("task_started", "tasks.stuck")
    _wait_started_on_host(four, "f1")
    sshd = four.host_processes("f1", "sshd")
    for pid in sshd:
        os.kill(pid, signal.SIGSTOP)
    try:
        result = run.finish(timeout=60)
    finally:
        for pid in sshd:
            os.kill(pid, signal.SIGCONT)

    assert result.exit_code == 1, result.stderr
    # 3 s of timeout, then 1 s for a new channel, 2 connection attempts of 1 s: bounded
    assert result.duration < 15
    finished = result.finished()
    independent = finished["tasks.independent"]  # the host's next task: it is unreachable
    assert independent["status"] == "unreachable", independent
    assert independent["message"].startswith("lost the connection to f1: Timeout opening channel")
    assert "reconnecting failed: cannot connect to f1" in independent["message"]
    assert finished["tasks.stuck"]["status"] == "failed"
    assert finished["tasks.stuck"]["message"] == "timed out after 3 s on f1"
    assert finished["tasks.next"]["status"] == "skipped"
    assert finished["tasks.other"]["status"] == "changed"
    assert finished["tasks.more"]["status"] == "changed"
    state = recorded(path)
    assert state["tasks.stuck"] == "failed" and state["tasks.next"] == "skipped"
    assert state["tasks.more"] == "changed"

    resumed = fedi("run", path, "-i", four.inventory_path, "--no-apply", "--json", "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert set(resumed.started()) == {
        "tasks.stuck",
        "tasks.next",
        "tasks.independent",
        "nixops4.render",
    }
    assert resumed.statuses()["tasks.stuck"] == "ok"  # it had finished on f1: not run again
    assert _count(four, "f1") == ["stuck", "next"]
    assert _count(four, "f2") == ["other"] and _count(four, "f3") == ["more"]
