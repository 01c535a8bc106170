"""How long what a task starts lives, on the fake pool (a real local ``sh`` behind a fake
channel that hangs up as sshd does — closing the command's pipes, killing nothing) and on the
deployer: a task's command is stopped when its task times out, when the grace period of a
stop ends, and when its connection goes; a task whose earlier command still runs on its host
is not started again; and a deployer-local command (``nixops4 apply``) is stopped as well."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from fakes.harness import command, out_path, run_tasks, token
from fakes.pool import FakePool, notify

from fedi_run.engine.execute import jobs as jobs_module
from fedi_run.engine.execute.jobs import Jobs, pid_file_name
from fedi_run.engine.execute.stopping import ABORTED
from fedi_run.engine.planning.operations import LocalCommand
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.report.events import Status

CHANGED, FAILED = Status.CHANGED, Status.FAILED


@pytest.fixture
def pool():
    return FakePool()


def lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: nobody may reap it here)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def sleeper(pids) -> str:
    """Shell that starts a ``sleep 30`` (its pid into ``pids``) and waits for it."""
    return f"sleep 30 & echo $! >> {pids}; wait"


def start_time(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[19]


# a task's command on its host ------------------------------------------------------------------


def test_a_command_past_its_timeout_is_stopped_on_its_host(tmp_path, pool):
    pids = tmp_path / "pids"
    task = command("tasks.slow", "h1", tmp_path, sleeper(pids), timeout=0.5)
    out = run_tasks([task], pool)
    assert out.statuses == {"tasks.slow": FAILED}
    assert out.message("tasks.slow") == "timed out after 0.5 s on h1"
    [pid] = map(int, lines(pids))
    assert gone(pid), "the timed-out command still runs on its host"


@pytest.mark.parametrize("batched", [False, True])
def test_a_command_outliving_the_grace_period_is_stopped_on_its_host(tmp_path, pool, batched):
    """Stopped, grace 0.3 s: the connection is closed under the task — and its command, and
    what that started, end on the host too (alone or batched with a file)."""
    pids = tmp_path / "pids"
    tasks = [command("tasks.long", "h1", tmp_path, sleeper(pids))]
    if batched:
        tasks.append(command("tasks.neighbour", "h1", tmp_path))
    schedulers = []
    pool.on(notify(lambda: schedulers[0].stop()), when=token("tasks.long"))
    out = run_tasks(tasks, pool, grace=0.3, before_run=schedulers.append)
    assert out.statuses["tasks.long"] == FAILED and out.message("tasks.long") == ABORTED
    assert out.seconds < 5
    [pid] = map(int, lines(pids))
    assert gone(pid), "the interrupted command still runs on its host"


def test_a_lost_connection_stops_the_command_before_it_is_retried(tmp_path, pool):
    """The connection goes while the command runs (its sshd died, the deployer was killed):
    the command ends on the host with its session; the retry on a new connection runs it once
    more, and the two never run at the same time."""
    pids, log, flag = tmp_path / "pids", tmp_path / "log", tmp_path / "flag"
    run = (
        f"echo start >> {log}; "
        f"[ -e {flag} ] || {{ touch {flag}; {sleeper(pids)}; }}; echo end >> {log}"
    )
    pool.on(notify(lambda: threading.Timer(0.3, pool.close_all).start()), when="sleep 30", times=1)
    out = run_tasks([command("tasks.once", "h1", tmp_path, run)], pool)
    assert out.statuses == {"tasks.once": CHANGED}
    assert [c.generation for c in pool.calls_on("h1")] == [1, 2]
    [pid] = map(int, lines(pids))
    assert gone(pid)
    time.sleep(0.3)
    assert lines(log) == ["start", "start", "end"]  # the first never went on


# an earlier command still running on the host --------------------------------------------------


@pytest.fixture
def host_jobs(tmp_path, monkeypatch):
    """The run's :class:`Jobs`, its hosts' pid files under tmp_path; an earlier command is
    waited for 0.5 s."""
    monkeypatch.setattr(jobs_module, "WAIT_FOR_EARLIER", 0.5)
    return Jobs(host_dir=str(tmp_path / "run" / "fake"))


def earlier(host_jobs, task_id: str, seconds: float = 30, start: str | None = None):
    """A process group standing for ``task_id``'s command of an earlier run, still running:
    recorded in the task's pid file as the job wrapper records it."""
    process = subprocess.Popen(["sleep", str(seconds)], start_new_session=True)
    threading.Thread(target=process.wait, daemon=True).start()  # reaped when it ends
    directory = host_jobs.host_dir
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, pid_file_name(task_id)), "w") as pid_file:
        pid_file.write(f"{process.pid} {start or start_time(process.pid)}\n")
    return process


def test_a_task_whose_earlier_command_still_runs_is_not_started_again(tmp_path, pool, host_jobs):
    counted = out_path(tmp_path, "tasks.once")
    previous = earlier(host_jobs, "tasks.once")
    try:
        task = command("tasks.once", "h1", tmp_path, "echo done")
        out = run_tasks([task, command("tasks.other", "h1", tmp_path)], pool, jobs=host_jobs)
        assert out.statuses == {"tasks.once": FAILED, "tasks.other": CHANGED}
        message = out.message("tasks.once")
        assert "still running on h1" in message and f"process group {previous.pid}" in message
        assert lines(counted) == []  # not started a second time
        assert len(out.calls) == 1  # the check costs no round trip of its own
    finally:
        previous.kill()
        previous.wait()
    again = run_tasks([task], pool, jobs=host_jobs)
    assert again.statuses == {"tasks.once": CHANGED}
    assert lines(counted) == ["ran"]
    pid_file = os.path.join(host_jobs.host_dir, pid_file_name("tasks.once"))
    assert open(pid_file).read() == ""  # emptied as its job ended: it names no job


def test_a_task_waits_for_its_earlier_command_to_end(tmp_path, pool, host_jobs, monkeypatch):
    monkeypatch.setattr(jobs_module, "WAIT_FOR_EARLIER", 5.0)
    counted = out_path(tmp_path, "tasks.once")
    previous = earlier(host_jobs, "tasks.once", seconds=1)
    out = run_tasks([command("tasks.once", "h1", tmp_path)], pool, jobs=host_jobs)
    assert out.statuses == {"tasks.once": CHANGED}
    assert previous.poll() is not None or not alive(previous.pid)
    assert lines(counted) == ["ran"] and out.seconds >= 0.8


@pytest.mark.parametrize("how", ["ended", "pid-reused", "garbage"])
def test_a_stale_pid_file_does_not_hold_a_task_back(tmp_path, pool, host_jobs, how):
    """The earlier command ended (its group is gone), its pid now names another process (the
    start time differs), or the file holds garbage: the task runs."""
    if how == "ended":
        ended = earlier(host_jobs, "tasks.once")
        ended.kill()
        ended.wait()
    elif how == "pid-reused":
        previous = earlier(host_jobs, "tasks.once", start="1")
    else:
        os.makedirs(host_jobs.host_dir)
        with open(os.path.join(host_jobs.host_dir, pid_file_name("tasks.once")), "w") as f:
            f.write("-1 x; rm -rf /\n")
    try:
        out = run_tasks([command("tasks.once", "h1", tmp_path)], pool, jobs=host_jobs)
    finally:
        if how == "pid-reused":
            previous.kill()
            previous.wait()
    assert out.statuses == {"tasks.once": CHANGED}, out.message("tasks.once")
    assert lines(out_path(tmp_path, "tasks.once")) == ["ran"]


def test_a_resumed_task_waits_until_its_timed_out_command_is_gone(
    tmp_path, pool, host_jobs, monkeypatch
):
    """The command ignores SIGTERM: after its timeout it is killed KILL_AFTER later; the run
    right after waits for that, then runs it — one after the other, never both at once."""
    monkeypatch.setattr(jobs_module, "KILL_AFTER", 1.0)
    monkeypatch.setattr(jobs_module, "WAIT_FOR_EARLIER", 5.0)
    log = tmp_path / "log"
    run = (
        "trap '' TERM; "
        f'echo "start $(date +%s.%N)" >> {log}; sleep 3; echo "end $(date +%s.%N)" >> {log}'
    )
    first = run_tasks(
        [command("tasks.slow", "h1", tmp_path, run, timeout=0.5)], pool, jobs=host_jobs
    )
    assert first.statuses == {"tasks.slow": FAILED}
    second = run_tasks(
        [command("tasks.slow", "h1", tmp_path, run, timeout=10)], pool, jobs=host_jobs
    )
    assert second.statuses == {"tasks.slow": CHANGED}
    time.sleep(0.5)
    events = [line.split() for line in lines(log)]
    assert [e[0] for e in events] == ["start", "start", "end"], events
    assert float(events[1][1]) - float(events[0][1]) >= 1.3  # after the first was killed


# deployer-local commands -------------------------------------------------------------------------


def local(task_id: str, script: str, **fields) -> Task:
    return Task(task_id, None, actions=(LocalCommand(("sh", "-c", script)),), **fields)


def test_a_local_command_past_its_timeout_is_stopped(tmp_path, pool):
    pids = tmp_path / "pids"
    out = run_tasks([local("local.apply", sleeper(pids), timeout=0.5)], pool)
    assert out.statuses == {"local.apply": FAILED}
    assert out.message("local.apply").startswith("timed out after 0.5 s")
    assert out.seconds < 5
    [pid] = map(int, lines(pids))
    assert gone(pid)


@pytest.mark.parametrize("ignores_term", [False, True])
def test_a_local_command_outliving_the_grace_period_is_stopped(
    tmp_path, pool, monkeypatch, ignores_term
):
    """Stopped, grace 0.3 s: the local command's process group gets SIGTERM — SIGKILL
    KILL_AFTER later when it ignores that — and the run ends within the grace period."""
    monkeypatch.setattr(jobs_module, "KILL_AFTER", 1.0)
    pids = tmp_path / "pids"
    script = ("trap '' TERM; " if ignores_term else "") + sleeper(pids)
    task = local("local.apply", script)
    out = run_tasks(
        [task],
        pool,
        grace=0.3,
        before_run=lambda scheduler: threading.Timer(0.3, scheduler.stop).start(),
    )
    assert out.statuses == {"local.apply": FAILED}
    assert out.message("local.apply").startswith("interrupted: still running when the grace")
    assert out.seconds < (3 if ignores_term else 2)
    [pid] = map(int, lines(pids))
    assert gone(pid, within=1)


def test_a_local_command_that_ends_in_time_is_not_touched(tmp_path, pool):
    out = run_tasks([local("local.apply", "sleep 0.2; echo applied")], pool, timeout=5)
    assert out.statuses == {"local.apply": CHANGED}
    assert out.finished()["local.apply"].output == "applied\n"


SLEEPING_NIXOPS4 = """#!/bin/sh
echo $$ >> "$NIXOPS4_PIDS"
echo "applying (stand-in: sleeping)"
sleep 120 & wait
"""


@pytest.mark.reliability(
    "faults",
    "SIGTERM while `nixops4 apply` runs",
    "exit 130 within the grace period (10 s) and the 2 s between the SIGTERM and the SIGKILL "
    "of the apply's process group — not when the apply has finished; the apply failed "
    "'interrupted: still running when the grace period ended …', nothing of it left running",
)
def test_sigterm_stops_nixops4_apply_within_the_grace_period(tmp_path):
    """The CLI as a process, a playbook whose only work is the render and the apply, and a
    nixops4 that would take two minutes: SIGTERM ends the run after the grace period."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nixops4").write_text(SLEEPING_NIXOPS4)
    (bin_dir / "nixops4").chmod(0o755)
    playbook = tmp_path / "playbook.toml"
    playbook.write_text(
        '[deployment]\nname = "apply"\ndomain = "apply.example.org"\n\n'
        '[hosts.web]\naddress = "127.0.0.2"\n'
    )
    pid_file = tmp_path / "nixops4.pids"
    process = subprocess.Popen(
        [sys.executable, "-m", "fedi_run.engine.cli.main", "run", str(playbook), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "NIXOPS4_PIDS": str(pid_file),
        },
    )
    try:
        seen = []
        while not any('"nixops4.apply"' in line and "task_started" in line for line in seen):
            line = process.stdout.readline()
            assert line, process.stderr.read()
            seen.append(line)
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        [apply_pid] = map(int, pid_file.read_text().split())
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        took = time.monotonic() - stopped_at
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert 9 < took < 16, took  # the grace period, then at most KILL_AFTER
    assert gone(apply_pid, within=1), "nixops4 apply outlived the run"
    events = [json.loads(line) for line in (*seen, *out.splitlines()) if line.startswith("{")]
    [apply] = [e for e in events if e["event"] == "task_finished" and e["id"] == "nixops4.apply"]
    assert apply["status"] == "failed"
    assert apply["message"].startswith("interrupted: still running when the grace period ended")


# the wrapper itself ------------------------------------------------------------------------------


def start_job(command: str, input: bytes | None, new_session: bool = True):
    """``command`` as a job under a local ``sh``, its stdin kept open as sshd keeps it."""
    from fedi_run.engine.execute.jobs import remote_job

    line, data = remote_job(command, input)
    process = subprocess.Popen(
        ["sh", "-c", line],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=new_session,
    )
    process.stdin.write(data)
    process.stdin.flush()
    return process


def wait_for(path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("with_input", [False, True], ids=["inline", "piped"])
def test_a_job_that_is_no_session_leader_starts_a_session_of_its_own(tmp_path, with_input):
    """Started in this test's process group (not as sshd starts it), the wrapper starts
    itself again under setsid, so that ending its group ends the job — and not this test."""
    pids = tmp_path / "pids"
    command = f"read -r _ _ _ _ g _ </proc/self/stat; echo $g > {tmp_path}/group; {sleeper(pids)}"
    job = start_job(command, b"x" if with_input else None, new_session=False)
    wait_for(pids)
    group = int((tmp_path / "group").read_text())
    assert group != os.getpgid(0)
    job.stdin.close()  # the channel ends
    job.wait(5)
    [pid] = map(int, lines(pids))
    assert gone(pid)


def test_an_ended_job_leaves_no_private_directory(tmp_path):
    """A script with content on stdin (a secret's, say), ended mid-run: the private directory
    its stdin was split into goes with it."""
    from fedi_run.engine.execute import scripts
    from fedi_run.engine.execute.jobs import PRIVATE

    pids = tmp_path / "pids"
    script = scripts.compile_script(
        [
            [
                scripts.file_part("0.0", str(tmp_path / "f"), b"s3cr3t-value", 0o600, None, "f"),
                scripts.command_part("0.1", sleeper(pids), None, None),
            ]
        ],
        False,
    )
    job = start_job(script.text, script.payload)
    wait_for(pids)
    private = f"{PRIVATE}{job.pid}"
    assert os.path.isdir(private)
    job.stdin.close()
    job.wait(5)
    deadline = time.monotonic() + 5
    while os.path.exists(private):
        assert time.monotonic() < deadline, f"{private} is still there"
        time.sleep(0.05)
    [pid] = map(int, lines(pids))
    assert gone(pid)
