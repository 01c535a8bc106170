"""``fedi-run`` with ``--state postgresql://…`` against real lab hosts and a real PostgreSQL:
run, ``history``, ``show-run`` and ``--resume``; two deployers (two playbook directories, as two
machines) contending for one deployment; a deployer killed with SIGKILL while holding the lock;
a state that cannot be reached, refused before any host is contacted.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedi_run.engine.lab.pytest_plugin import LabFactory
from fedi_run.engine.report.state_postgresql import lock_key

pytestmark = pytest.mark.lab

HEADER = '[deployment]\nname = "pgrun"\ndomain = "pgrun.example.org"\n'


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    factory = LabFactory(lambda: tmp_path_factory.mktemp("fedi-lab"))
    try:
        yield factory(["p1", "p2"])
    finally:
        factory.close()


def fedi_run(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command line, in a child process (as a user, or a second machine, runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "fedi_run.engine.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def started(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fedi_run.engine.cli.main", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def wait_for_task(process: subprocess.Popen, task: str) -> None:
    """Read the --json lines of ``process`` until ``task`` has started."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"the run ended before {task} started: {process.stderr.read()}")
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "task_started" and event.get("id") == task:
            return
    raise AssertionError(f"{task} did not start within 60 s")


def machine(tmp_path: Path, name: str, text: str) -> Path:
    """The playbook ``text`` in a directory of its own (one deployer machine's copy)."""
    directory = tmp_path / name
    directory.mkdir()
    path = directory / "playbook.toml"
    path.write_text(HEADER + text)
    return path


def test_run_history_show_run_and_resume_in_postgresql(
    pair, postgres, pg_url, pg_password, tmp_path
):
    pair.run("p1", "rm -f /tmp/pg-go /srv/pg-first /srv/pg-after", check=True)
    path = machine(
        tmp_path,
        "deployer",
        """
[tasks.first]
host = "p1"
file = { path = "/srv/pg-first", content = "1\\n" }

[tasks.gate]
host = "p1"
run = "test -e /tmp/pg-go || { echo 'no /tmp/pg-go yet' >&2; exit 4; }"
requires = ["tasks.first"]

[tasks.after]
host = "p2"
file = { path = "/srv/pg-after", content = "2\\n" }
requires = ["tasks.gate"]
""",
    )
    with_password = pg_url.replace("deployer@", f"deployer:{pg_password}@")
    first = fedi_run(
        "run", path, "-i", pair.inventory_path, "--no-apply", "--json", "--state", with_password
    )
    assert first.returncode == 1, first.stderr
    assert pg_password not in first.stdout + first.stderr
    assert not (path.parent / ".fedi-run" / "state.db").exists()  # the state is in PostgreSQL
    logs = path.parent / ".fedi-run" / "logs"  # the run's local files stay beside the playbook
    assert logs.is_dir() and (logs.stat().st_mode & 0o777) == 0o700

    history = fedi_run("history", path, "--state", pg_url, "--json")
    assert history.returncode == 0, history.stderr
    (run,) = json.loads(history.stdout)
    assert run["exit_status"] == 1 and pg_password not in history.stdout
    assert f"--state={pg_url}" in " ".join(run["argv"]) or pg_url in run["argv"]
    text = fedi_run("history", path, "--state", pg_url)
    assert f"runs of deployment 'pgrun' in {pg_url}" in text.stdout

    shown = fedi_run("show-run", path, str(run["id"]), "--state", pg_url)
    assert shown.returncode == 0, shown.stderr
    assert "no /tmp/pg-go yet" in shown.stdout  # the failed task's output tail
    assert f"output log: {logs / str(run['id'])}/" in shown.stdout
    as_json = json.loads(fedi_run("show-run", path, run["id"], "--state", pg_url, "--json").stdout)
    outcomes = {t["task_id"]: t["outcome"] for t in as_json["tasks"]}
    assert outcomes == {
        "tasks.first": "changed",
        "tasks.gate": "failed",
        "tasks.after": "skipped",
        "nixops4.render": "skipped",
    }
    gate = next(t for t in as_json["tasks"] if t["task_id"] == "tasks.gate")
    assert gate["output_log"] and Path(gate["output_log"]).parent == logs / str(run["id"])

    pair.run("p1", "touch /tmp/pg-go", check=True)
    resumed = fedi_run(
        "run", path, "-i", pair.inventory_path, "--no-apply", "--json", "--resume",
        "--state", pg_url,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines() if line.startswith("{")]
    ran = [e["id"] for e in events if e["event"] == "task_started"]
    assert ran == ["tasks.gate", "tasks.after", "nixops4.render"]
    assert pair.read_file("p2", "/srv/pg-after") == b"2\n"
    rows = postgres.admin(
        "SELECT id, exit_status, argv FROM runs ORDER BY id", database=pg_url.rsplit("/", 1)[1]
    )
    assert [r[1] for r in rows] == [1, 0]
    assert all(pg_password not in r[2] for r in rows)


def test_two_deployers_contend_for_one_deployment(pair, pg_url, tmp_path):
    """Two playbook directories (two machines' copies) share the PostgreSQL state: while one
    runs, the other exits 3 naming it; the first ends as if alone."""
    text = '[tasks.hold]\nhost = "p1"\nrun = "sleep 3"\n'
    one, two = machine(tmp_path, "one", text), machine(tmp_path, "two", text)
    first = started(
        "run", one, "-i", pair.inventory_path, "--no-apply", "--json", "--state", pg_url
    )
    try:
        wait_for_task(first, "tasks.hold")
        second = fedi_run(
            "run", two, "-i", pair.inventory_path, "--no-apply", "--json", "--state", pg_url
        )
        assert second.returncode == 3, second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "another run of deployment 'pgrun' is in progress" in second.stderr
        assert f"advisory lock {lock_key('pgrun')}" in second.stderr
        assert f"command line: fedi-run run {one}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    after = fedi_run("run", two, "-i", pair.inventory_path, "--no-apply", "--state", pg_url)
    assert after.returncode == 0, after.stderr  # the lock is free once the first ended


def test_a_killed_deployer_leaves_the_lock_free(pair, postgres, pg_url, pg_database, tmp_path):
    pair.run("p1", "rm -f /tmp/pg-killed-once", check=True)
    path = machine(
        tmp_path,
        "deployer",
        '[tasks.long]\nhost = "p1"\n'
        'run = "test -e /tmp/pg-killed-once || { touch /tmp/pg-killed-once; sleep 60; }"\n',
    )
    run = ("run", path, "-i", pair.inventory_path, "--no-apply", "--json", "--state", pg_url)
    victim = started(*run)
    try:
        wait_for_task(victim, "tasks.long")
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    held = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
        "classid::bigint = %s AND objid::bigint = %s"
    )
    key = lock_key("pgrun")
    deadline = time.monotonic() + 10
    while postgres.admin(held, pg_database, ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF))[0][0]:
        assert time.monotonic() < deadline, "the killed deployer's lock was not released"
        time.sleep(0.05)
    # its holder row is still there (stale): it must not stop the next run
    assert postgres.admin("SELECT pid FROM lock_holders", pg_database) == [(victim.pid,)]
    resumed = fedi_run(*run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    history = json.loads(fedi_run("history", path, "--state", pg_url, "--json").stdout)
    assert [r["exit_status"] for r in history] == [
        0,
        None,
    ]  # newest first: the killed one unfinished


def test_an_unreachable_state_is_refused_before_any_host(pair, tmp_path):
    """The state's server does not answer: exit 2, one paragraph naming the URL, and the
    host — a listening socket standing in for it — never contacted."""
    with socket.socket() as host, socket.socket() as nothing:
        host.bind(("127.0.0.1", 0))
        host.listen()
        host.setblocking(False)
        nothing.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        key = pair.hosts["p1"].host_key
        path = machine(
            tmp_path,
            "deployer",
            f'[hosts.target]\naddress = "127.0.0.1"\nport = {host.getsockname()[1]}\n'
            f'user = "root"\nhost_key = "{key}"\nidentity = "{pair.identity}"\n'
            '[tasks.touch]\nhost = "target"\nrun = "true"\n',
        )
        url = f"postgresql://deployer:hidden-pw@127.0.0.1:{nothing.getsockname()[1]}/fedi"
        for command in (
            ("run", path, "--no-apply", "--state", url),
            ("plan", path, "--state", url),
            ("history", path, "--state", url),
        ):
            done = fedi_run(*command)
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            message = done.stderr.strip()
            assert message.startswith("error: cannot connect to the PostgreSQL state")
            assert url.replace(":hidden-pw", "") in message and "Connection refused" in message
            assert "hidden-pw" not in done.stdout + done.stderr and "Traceback" not in message
        with pytest.raises(BlockingIOError):
            host.accept()  # nobody came
    assert not (path.parent / ".fedi-run" / "logs").exists()


def test_a_bad_state_value_is_a_usage_error(tmp_path):
    path = machine(tmp_path, "deployer", "")
    done = fedi_run("history", path, "--state", "mysql://u@h/db")
    assert done.returncode == 2 and "mysql:// is not a state" in done.stderr


def test_a_lost_state_connection_stops_the_run(pair, postgres, pg_url, pg_database, tmp_path):
    """The server ends the session holding the lock mid-run (as a restart would): the next
    write notices, nothing new starts, and the run exits 1 saying why — never going on
    unlocked. The state keeps the run as not finished, for --resume."""
    pair.run("p2", "rm -f /srv/pg-never", check=True)
    path = machine(
        tmp_path,
        "deployer",
        '[tasks.slow]\nhost = "p1"\nrun = "sleep 2"\n'
        '[tasks.next]\nhost = "p2"\nfile = { path = "/srv/pg-never", content = "x" }\n'
        'requires = ["tasks.slow"]\n',
    )
    run = started("run", path, "-i", pair.inventory_path, "--no-apply", "--json", "--state", pg_url)
    try:
        wait_for_task(run, "tasks.slow")
        (session,) = postgres.admin("SELECT session FROM lock_holders", pg_database)[0]
        postgres.admin("SELECT pg_terminate_backend(%s)", pg_database, (session,))
    finally:
        out, err = run.communicate(timeout=60)
    assert run.returncode == 1, err
    assert "stopped" in err and "another deployer may have taken it" in err
    assert "Traceback" not in err
    assert b"" == pair.run("p2", "cat /srv/pg-never 2>/dev/null || true").stdout.encode()
    (record,) = json.loads(fedi_run("history", path, "--state", pg_url, "--json").stdout)
    assert record["exit_status"] is None  # the end of the run could not be recorded
