"""Executing the graph on lab hosts: parallelism, one task per host at a time, failures and
--resume, unreachable hosts, the lock, interruption, and the final apply."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from run_helpers import fedi

from fedi_run.engine.report.state import StateStore, default_state_path

pytestmark = pytest.mark.lab

HEADER = '[deployment]\nname = "exec"\ndomain = "exec.example.org"\n'


def sleeper(name: str, host: str, seconds: float, extra: str = "") -> str:
    return f'[tasks.{name}]\nhost = "{host}"\nrun = "sleep {seconds}"\n{extra}\n'


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    from fedi_run.engine.lab.pytest_plugin import LabFactory

    factory = LabFactory(lambda: tmp_path_factory.mktemp("fedi-lab"))
    try:
        yield factory([f"h{i}" for i in range(1, 9)])
    finally:
        factory.close()


def test_independent_tasks_run_in_parallel(eight, playbook):
    """8 hosts each sleep 1 s: the run takes about the critical path (1 s), not the sum (8 s)."""
    path = playbook(HEADER + "".join(sleeper(f"s{i}", f"h{i}", 1) for i in range(1, 9)))
    result = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.run_finished()["duration"] < 4.0
    assert all(e["status"] == "changed" for e in result.finished().values())


def test_forks_limits_concurrency(eight, playbook):
    path = playbook(HEADER + "".join(sleeper(f"s{i}", f"h{i}", 0.5) for i in range(1, 5)))
    result = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json", "--forks", "1")
    assert result.exit_code == 0
    assert result.run_finished()["duration"] >= 2.0
    _assert_no_overlap(result.events(), set(result.finished()))


def _intervals(events):
    starts = {e["id"]: e["time"] for e in events if e["event"] == "task_started"}
    return {
        e["id"]: (starts[e["id"]], e["time"])
        for e in events
        if e["event"] == "task_finished" and e["id"] in starts
    }


def _assert_no_overlap(events, ids):
    spans = sorted(_intervals(events)[i] for i in ids)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end - 0.01


def logged_sleeper(name: str, host: str, extra: str = "") -> str:
    """A task that records on its host when it starts and ends (host clock, one file each)."""
    return (
        f'[tasks.{name}]\nhost = "{host}"\n'
        f'run = "date +%s.%N > /tmp/{name}.span; sleep 0.5; date +%s.%N >> /tmp/{name}.span"\n'
        f"{extra}\n"
    )


def _host_span(lab, host: str, name: str) -> tuple[float, float]:
    start, end = lab.read_file(host, f"/tmp/{name}.span").split()
    return float(start), float(end)


def test_one_task_per_host_unless_shared(eight, playbook):
    """Measured on the hosts themselves: tasks of one host never run at the same time (even
    when the executor sends them in one round trip), unless they say they may share it."""
    path = playbook(
        HEADER
        + logged_sleeper("a", "h1")
        + logged_sleeper("b", "h1")
        + logged_sleeper("c", "h2", "shares_host = true")
        + logged_sleeper("d", "h2", "shares_host = true")
    )
    result = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json")
    assert result.exit_code == 0
    (a_start, a_end), (b_start, b_end) = sorted(
        [_host_span(eight, "h1", "a"), _host_span(eight, "h1", "b")]
    )
    assert b_start >= a_end
    (c_start, c_end), (d_start, d_end) = _host_span(eight, "h2", "c"), _host_span(eight, "h2", "d")
    assert c_start < d_end and d_start < c_end  # shared: they overlapped


def test_ready_tasks_of_a_host_share_one_round_trip_but_fail_alone(eight, playbook):
    eight.run("h3", "rm -rf /srv/batch", check=True)
    path = playbook(
        HEADER
        + '[tasks.dir]\nhost = "h3"\ndirectory = { path = "/srv/batch" }\n'
        + "".join(
            f'[tasks.f{i}]\nhost = "h3"\n'
            f'file = {{ path = "/srv/batch/f{i}", content = "{i}\\n" }}\n'
            'requires = ["tasks.dir"]\n'
            for i in range(5)
        )
        + '[tasks.bad]\nhost = "h3"\nrun = "echo broken >&2; exit 7"\nrequires = ["tasks.dir"]\n'
        + (
            '[tasks.after]\nhost = "h3"\nfile = { path = "/srv/batch/after", content = "x" }\n'
            'requires = ["tasks.bad"]\n'
        )
    )
    result = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json")
    assert result.exit_code == 1
    finished = result.finished()
    assert all(finished[f"tasks.f{i}"]["status"] == "changed" for i in range(5))
    assert (
        finished["tasks.bad"]["status"] == "failed"
        and "exited with status 7" in finished["tasks.bad"]["message"]
    )
    assert finished["tasks.bad"]["output"].strip() == "broken"
    assert finished["tasks.after"]["status"] == "skipped"
    starts = {e["id"]: e["time"] for e in result.events() if e["event"] == "task_started"}
    batch = {t for t in starts if t.startswith("tasks.f") or t == "tasks.bad"}
    assert len({starts[t] for t in batch}) == 1  # one round trip for the six ready tasks
    assert eight.run("h3", "cat /srv/batch/f0 /srv/batch/f4", check=True).stdout == "0\n4\n"


@pytest.mark.reliability(
    "faults",
    "a task fails",
    "exit 1; its dependents skipped, other tasks finish; state records it; --resume runs only "
    "what is left",
)
def test_failure_skips_dependents_and_resume_runs_only_what_is_left(eight, playbook, tmp_path):
    eight.run("h1", "rm -f /tmp/go", check=True)
    path = playbook(
        HEADER
        + """
[tasks.first]
host = "h1"
file = { path = "/srv/first", content = "1\\n" }

[tasks.gate]
host = "h1"
run = "test -e /tmp/go || { echo 'no /tmp/go yet' >&2; exit 4; }"
requires = ["tasks.first"]

[tasks.after]
host = "h2"
file = { path = "/srv/after", content = "2\\n" }
requires = ["tasks.gate"]

[tasks.later]
host = "h2"
file = { path = "/srv/later", content = "3\\n" }
requires = ["tasks.after"]

[tasks.other]
host = "h3"
file = { path = "/srv/other", content = "4\\n" }
"""
    )
    first = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json")
    assert first.exit_code == 1
    finished = first.finished()
    assert finished["tasks.gate"]["status"] == "failed"
    assert "exited with status 4" in finished["tasks.gate"]["message"]
    assert "no /tmp/go yet" in finished["tasks.gate"]["output"]
    assert finished["tasks.after"]["status"] == "skipped"
    assert finished["tasks.after"]["message"] == "skipped: dependency tasks.gate failed"
    assert finished["tasks.later"]["status"] == "skipped"
    assert (
        finished["tasks.first"]["status"] == "changed"
        and finished["tasks.other"]["status"] == "changed"
    )
    assert eight.run("h2", "test -e /srv/after").exit_status != 0

    store = StateStore.open(default_state_path(path))
    try:
        record = store.last_run("exec")
        by_id = {t.task_id: t.status.value for t in record.tasks}
        assert by_id == {
            "tasks.first": "changed",
            "tasks.gate": "failed",
            "tasks.after": "skipped",
            "tasks.later": "skipped",
            "tasks.other": "changed",
            "nixops4.render": "skipped",
        }
        assert record.exit_status == 1
    finally:
        store.close()

    eight.run("h1", "touch /tmp/go", check=True)
    resumed = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json", "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert resumed.started() == ["tasks.gate", "tasks.after", "tasks.later", "nixops4.render"]
    assert eight.read_file("h2", "/srv/later") == b"3\n"
    nothing = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json", "--resume")
    assert nothing.exit_code == 0 and "nothing to resume" in nothing.stderr  # a CI retry stops


def test_fail_fast_starts_nothing_after_a_failure(eight, playbook):
    path = playbook(
        HEADER
        + '[tasks.bad]\nhost = "h1"\nrun = "exit 1"\n'
        + sleeper("slow", "h2", 1)
        + sleeper("next", "h2", 0, 'requires = ["tasks.slow"]')
    )
    result = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json", "--fail-fast")
    assert result.exit_code == 1
    finished = result.finished()
    assert finished["tasks.bad"]["status"] == "failed"
    assert finished["tasks.slow"]["status"] == "changed"  # was already running
    assert finished["tasks.next"]["status"] == "skipped"
    assert "--fail-fast" in finished["tasks.next"]["message"]


@pytest.mark.reliability(
    "faults",
    "a task runs past its timeout",
    "exit 1, task failed 'timed out after 0.5 s'; the other host's task finishes",
)
def test_task_timeout(eight, playbook):
    path = playbook(HEADER + sleeper("slow", "h1", 5, "timeout = 0.5") + sleeper("fine", "h2", 0))
    result = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json")
    assert result.exit_code == 1
    assert result.finished()["tasks.slow"]["status"] == "failed"
    assert "timed out after 0.5 s" in result.finished()["tasks.slow"]["message"]
    assert result.finished()["tasks.fine"]["status"] == "changed"


@pytest.mark.reliability(
    "faults",
    "a host stops answering before the run reaches it (sshd SIGSTOPped)",
    "exit 1, its tasks unreachable, other hosts finish; --resume completes with nothing done twice",
)
def test_host_that_stops_answering_is_unreachable_and_resume_completes(eight, playbook):
    """h8's sshd is stopped (SIGSTOP) before the run reaches it: the other hosts finish, h8 is
    unreachable; once sshd runs again (SIGCONT), --resume completes the run."""
    sshd = eight.hosts["h8"].process.pid
    path = playbook(
        HEADER
        + sleeper("wait", "h1", 0.3)
        + """
[tasks.late]
host = "h8"
file = { path = "/srv/late", content = "late\\n" }
requires = ["tasks.wait"]

[tasks.later]
host = "h8"
file = { path = "/srv/later", content = "later\\n" }
requires = ["tasks.late"]

[tasks.elsewhere]
host = "h2"
file = { path = "/srv/elsewhere", content = "x\\n" }
requires = ["tasks.wait"]
"""
    )
    os.kill(sshd, signal.SIGSTOP)
    try:
        result = fedi(
            "run",
            path,
            "-i",
            eight.inventory_path,
            "--no-apply",
            "--json",
            "--connect-timeout",
            "1",
            "--retries",
            "1",
        )
    finally:
        os.kill(sshd, signal.SIGCONT)
    assert result.exit_code == 1
    finished = result.finished()
    assert finished["tasks.late"]["status"] == "unreachable"
    assert "cannot connect to h8" in finished["tasks.late"]["message"]
    assert finished["tasks.later"]["status"] in ("unreachable", "skipped")
    assert finished["tasks.elsewhere"]["status"] == "changed"
    assert result.run_finished()["recap"]["h8"]["unreachable"] >= 1
    resumed = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json", "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert set(resumed.started()) == {"tasks.late", "tasks.later", "nixops4.render"}
    assert eight.read_file("h8", "/srv/later") == b"later\n"


def _cli(*args, env=None, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "fedi_run.engine.cli.main", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


@pytest.mark.reliability(
    "faults",
    "two runs started at once on one deployment",
    "the second exits 3 naming the holder's pid; the first finishes with exit 0",
)
def test_two_runs_at_once_the_second_exits_3(eight, playbook):
    path = playbook(HEADER + sleeper("hold", "h1", 2))
    first = _cli("run", path, "-i", eight.inventory_path, "--no-apply", "--json")
    try:
        deadline = time.time() + 10
        while time.time() < deadline and "task_started" not in (first.stdout.readline() or ""):
            pass
        second = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json")
        assert second.exit_code == 3
        assert "another run" in second.stderr.lower() or "lock" in second.stderr.lower()
        assert str(first.pid) in second.stderr
    finally:
        first.communicate(timeout=30)
    assert first.returncode == 0


@pytest.mark.reliability(
    "faults",
    "{signum} mid-run",
    "exit 130; the running task finishes in its grace period, the rest skipped 'interrupted'; "
    "the state records the interrupted run; --resume runs only what was skipped, nothing twice",
)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_finishes_running_tasks_records_and_exits_130(eight, playbook, signum):
    eight.run("h1", "rm -f /srv/interrupted", check=True)
    path = playbook(
        HEADER
        + """
[tasks.running]
host = "h1"
run = "sleep 1; echo running >> /srv/interrupted"

[tasks.waiting]
host = "h1"
run = "echo waiting >> /srv/interrupted"
requires = ["tasks.running"]
"""
    )
    process = _cli("run", path, "-i", eight.inventory_path, "--no-apply", "--json")
    line = ""
    while "task_started" not in line:
        line = process.stdout.readline()
        assert line, process.stderr.read()
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    events = [json.loads(x) for x in (line + out).splitlines() if x.startswith("{")]
    finished = {e["id"]: e for e in events if e["event"] == "task_finished"}
    assert finished["tasks.running"]["status"] == "changed", finished[
        "tasks.running"
    ]  # given its grace period
    assert finished["tasks.waiting"]["status"] == "skipped"
    assert finished["tasks.waiting"]["message"] == "skipped: interrupted"
    store = StateStore.open(default_state_path(path))
    try:
        record = store.last_run("exec")
        assert record.interrupted and record.exit_status == 130
    finally:
        store.close()
    resumed = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json", "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert set(resumed.started()) == {"tasks.waiting", "nixops4.render"}
    assert eight.read_file("h1", "/srv/interrupted") == b"running\nwaiting\n"


@pytest.mark.reliability(
    "faults",
    "a run stopped from another thread (the panel's Stop)",
    "exit 130 from the Python API; the running task finishes, the rest skipped 'interrupted'; "
    "--resume runs what was skipped",
)
def test_a_run_in_a_thread_stops_when_asked(eight, playbook):
    """``RunRequest.stop``: what the panel's Stop button sets — signals reach only the main
    thread."""
    import threading

    from fedi_run.engine.execute.scheduler import ExecutionOptions
    from fedi_run.engine.project import load_project
    from fedi_run.engine.report.events import TaskStarted
    from fedi_run.engine.run import RunRequest, run_project

    path = playbook(
        HEADER
        + sleeper("first", "h1", 0.5)
        + sleeper("second", "h1", 0, 'requires = ["tasks.first"]')
    )
    stop = threading.Event()

    class StopOnStart:
        def handle(self, event):
            if isinstance(event, TaskStarted):
                stop.set()

        def close(self):
            pass

    project = load_project(path, [eight.inventory_path], apply=False)
    outcome = {}
    worker = threading.Thread(
        target=lambda: outcome.update(
            result=run_project(
                project, RunRequest(options=ExecutionOptions(), stop=stop), [StopOnStart()]
            )
        )
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()
    result = outcome["result"]
    assert result.exit_status == 130
    assert (
        result.statuses["tasks.first"] == "changed" and result.statuses["tasks.second"] == "skipped"
    )
    resumed = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json", "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert set(resumed.started()) == {"tasks.second", "nixops4.render"}


def test_apply_runs_last_once_through_nixops4(eight, playbook, standin_nixops4):
    path = playbook(HEADER + sleeper("a", "h1", 0) + sleeper("b", "h2", 0))
    result = fedi("run", path, "-i", eight.inventory_path, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.started()[-1] == "nixops4.apply"
    [call] = [json.loads(line) for line in standin_nixops4.read_text().splitlines()]
    assert call["argv"] == ["apply", "exec", "--no-interactive", "--show-trace"]
    assert call["cwd"] == str(path.parent / ".fedi-run" / "exec")
    # the member path of the deployment, in a directory Nix can read (its own git repository,
    # HEAD holding the rendered files)
    assert (call["memberPath"], call["problems"]) == ("exec", [])
    assert call["git"]["toplevel"] == call["cwd"] and call["git"]["clean"] is True
    assert {"flake.nix", "data.nix"} <= set(call["git"]["tracked"])
    finished_at = {e["id"]: e["time"] for e in result.events() if e["event"] == "task_finished"}
    assert call["time"] > max(t for i, t in finished_at.items() if i != "nixops4.apply")


@pytest.mark.reliability(
    "faults", "nixops4 missing on the deployer", "exit 2 before any host is touched"
)
def test_missing_nixops4_stops_before_any_host(eight, playbook, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    eight.run("h1", "rm -f /srv/untouched", check=True)
    path = playbook(
        HEADER + '[tasks.a]\nhost = "h1"\nfile = { path = "/srv/untouched", content = "x" }\n'
    )
    result = fedi("run", path, "-i", eight.inventory_path, "--json")
    assert result.exit_code == 2
    assert "nixops4 is not on PATH" in result.stderr and "--no-apply" in result.stderr
    assert eight.run("h1", "test -e /srv/untouched").exit_status != 0


def test_fetch_brings_a_file_back_and_check_mode_leaves_it(eight, playbook, tmp_path):
    eight.run(
        "h4", "mkdir -p /srv/report && printf 'h4 says hi\\n' > /srv/report/status", check=True
    )
    path = playbook(
        HEADER
        + (
            '[tasks.back]\nhost = "h4"\n'
            'fetch = { remote = "/srv/report/status", local = "fetched/h4-status" }\n'
        )
    )
    local = tmp_path / "fetched" / "h4-status"
    check = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json", "--check")
    assert check.finished()["tasks.back"]["status"] == "changed" and not local.exists()
    first = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json")
    assert first.exit_code == 0 and first.finished()["tasks.back"]["status"] == "changed"
    assert local.read_text() == "h4 says hi\n"
    again = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json")
    assert again.finished()["tasks.back"]["status"] == "ok"
    eight.run("h4", "rm -f /srv/report/status", check=True)
    missing = fedi("run", path, "-i", eight.inventory_path, "--no-apply", "--json")
    assert missing.exit_code == 1
    assert "cannot fetch /srv/report/status from h4" in missing.finished()["tasks.back"]["message"]


@pytest.mark.reliability(
    "faults",
    "a task still running when the grace period after SIGINT ends",
    "exit 130; the task failed 'interrupted: still running when the grace period ended', "
    "not retried, its host not called unreachable; the rest skipped 'interrupted'",
)
def test_a_task_outliving_the_grace_period_is_aborted(eight, playbook):
    """Through the Python API, with a grace period of 0.5 s: the connection is closed under
    the running task, which is reported failed (interrupted), not retried on a new one."""
    import threading

    from fedi_run.engine.execute.scheduler import ExecutionOptions
    from fedi_run.engine.project import load_project
    from fedi_run.engine.report.events import Status
    from fedi_run.engine.run import RunRequest, run_project

    eight.run("h5", "rm -f /tmp/aborted.count", check=True)
    path = playbook(
        HEADER
        + '[tasks.long]\nhost = "h5"\nrun = "echo x >> /tmp/aborted.count; sleep 20"\n'
        + sleeper("next", "h5", 0, 'requires = ["tasks.long"]')
    )
    project = load_project(path, [eight.inventory_path], apply=False)
    request = RunRequest(options=ExecutionOptions(grace=0.5))
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        outcome = run_project(project, request, [])
    finally:
        timer.cancel()
    assert time.monotonic() - started < 10
    assert outcome.exit_status == 130
    assert outcome.statuses["tasks.long"] == Status.FAILED
    assert outcome.statuses["tasks.next"] == Status.SKIPPED
    store = StateStore.open(default_state_path(path))
    try:
        tasks = {t.task_id: t for t in store.last_run("exec").tasks}
    finally:
        store.close()
    assert tasks["tasks.long"].message.startswith(
        "interrupted: still running when the grace period ended"
    )
    assert (
        eight.read_file("h5", "/tmp/aborted.count") == b"x\n"
    )  # not run again on a new connection
