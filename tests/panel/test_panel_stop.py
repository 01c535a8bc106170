"""Stopping ``fedi-run panel serve`` (SIGTERM or SIGINT) while a run of its own worker (the
embedded default: no broker configured) is live: the server stops accepting, stops its worker,
which stops the run as its Stop button does within the grace period, and both records — the
panel's history and the engine's state database — say the same: interrupted, exit 130. No
lab: the deployment has no service on any host (it only renders), and its ``nixops4 apply`` is
a stand-in that sleeps, so the live task is a local command, which the stop must end too.

Driven over HTTP with ``requests`` against a real ``panel serve`` subprocess on a free
loopback port, its own data directory."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

OPERATOR, PASSWORD = "stopper", "the operator's own long password"
SLEEPING_NIXOPS4 = """#!/bin/sh
echo $$ >> "$NIXOPS4_PIDS"
echo "applying (stand-in: sleeping)"
exec sleep 120
"""


@pytest.fixture
def served(tmp_path):
    """``panel serve`` on a free port with the sleeping nixops4 on its PATH; yields
    ``(process, url, env)``; killed (by pid) at the end if it is still there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nixops4").write_text(SLEEPING_NIXOPS4)
    (bin_dir / "nixops4").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FEDI_RUN_PANEL_DIR": str(tmp_path / "panel-data"),
        "NIXOPS4_PIDS": str(tmp_path / "nixops4.pids"),
    }
    base = [sys.executable, "-m", "fedi_run.engine.cli.main", "panel"]
    created = subprocess.run(
        [*base, "createuser", OPERATOR, "--staff"],  # staff: defines its environment too
        input=f"{PASSWORD}\n{PASSWORD}\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    log = tmp_path / "panel.log"
    with open(log, "w") as errors:
        server = subprocess.Popen(
            [*base, "serve", "--port", "0"], env=env, stdout=subprocess.DEVNULL, stderr=errors
        )
    try:
        deadline, url = time.monotonic() + 30, None
        while url is None and time.monotonic() < deadline and server.poll() is None:
            found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", log.read_text())
            url = found[1] if found else time.sleep(0.05)
        assert url, f"the panel did not start:\n{log.read_text()}"
        yield server, url, env, log
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
        for pid in pids(tmp_path / "nixops4.pids"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def pids(path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def post(session: requests.Session, url: str, data: dict) -> requests.Response:
    data = {"csrfmiddlewaretoken": session.cookies["fedi_run_panel_csrf"], **data}
    return session.post(url, data=data, allow_redirects=False, timeout=30)


def define_environment(session: requests.Session, url: str, inventory) -> str:
    """As staff: an environment whose hosts are imported from ``inventory``; its pk."""
    session.get(url + "environments/new/", timeout=30)
    data = {"csrfmiddlewaretoken": session.cookies["fedi_run_panel_csrf"], "name": "stop-test"}
    data |= {"hosts-TOTAL_FORMS": "0", "hosts-INITIAL_FORMS": "0"}
    response = session.post(
        url + "environments/new/",
        data=data,
        files={"import-file": ("inventory.toml", Path(inventory).read_bytes())},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 302, response.text[:3000]
    return re.search(r"/environments/(\d+)/", response.headers["Location"])[1]


def start_a_run(url: str, inventory) -> tuple[requests.Session, str]:
    """Log in, describe a deployment with no service (and the apply on), deploy it; the
    session and the run page's path."""
    session = requests.Session()
    session.get(url + "login/", timeout=30)
    response = post(session, url + "login/", {"username": OPERATOR, "password": PASSWORD})
    assert response.status_code == 302, response.text[:2000]
    environment = define_environment(session, url, inventory)
    session.get(url + "deployments/new/", timeout=30)
    form = {
        "name": "stopped",
        "domain": "fedi-test.org",
        "environment": environment,
        "acme_email": "ops@fedi-test.org",
        "acme_accept_terms": "on",
        "initial_username": "admin",
        "initial_display_name": "Admin",
        "initial_email": "admin@fedi-test.org",
        "password": "an initial password 7f3a9c",
        "apply": "on",
    }
    response = post(session, url + "deployments/new/", form)
    assert response.status_code == 302, response.text[:3000]
    deployment = re.search(r"/deployments/(\d+)/", response.headers["Location"])[1]
    response = post(session, url + f"deployments/{deployment}/deploy/confirm/", {})
    assert response.status_code == 302, response.text[:2000]
    return session, response.headers["Location"]


def wait_for_apply(session, url: str, run_page: str, pid_file) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        data = session.get(url + run_page.lstrip("/") + "progress", timeout=30).json()
        tasks = {t["id"]: t["status"] for t in data["tasks"]}
        if tasks.get("nixops4.apply") == "running" and pids(pid_file):
            return
        assert not data["finished"], data
        time.sleep(0.1)
    raise AssertionError("the apply never started")


@pytest.mark.reliability(
    "faults",
    "`panel serve` stopped ({signum}) while a run is live",
    "the server stops accepting, stops the run as its Stop button does (the live nixops4 "
    "apply ended after the grace period), exits 0; the panel's history and the engine's state "
    "agree: interrupted, exit 130, the apply failed 'interrupted'; a new serve leaves it so",
)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_panel_stops_its_live_runs_and_records_them(served, tmp_path, signum):
    server, url, env, log = served
    inventory = tmp_path / "hostless.toml"
    inventory.write_text('[hosts.web]\naddress = "127.0.0.2"\n')
    session, run_page = start_a_run(url, inventory)
    wait_for_apply(session, url, run_page, tmp_path / "nixops4.pids")
    [apply_pid] = pids(tmp_path / "nixops4.pids")

    stopped_at = time.monotonic()
    server.send_signal(signum)
    time.sleep(0.5)
    with pytest.raises(requests.ConnectionError):  # it no longer accepts
        requests.get(url + "login/", timeout=5)
    assert server.wait(40) == 0, log.read_text()
    assert time.monotonic() - stopped_at < 25  # the grace period (10 s), then the apply ended
    assert not running(apply_pid), "nixops4 apply outlived the panel"
    assert "fedi-run panel: stopped" in log.read_text()

    data = tmp_path / "panel-data"
    panel = sqlite3.connect(data / "panel.sqlite3")
    [(state, exit_status, engine_run_id, key)] = panel.execute(
        "SELECT r.state, r.exit_status, r.engine_run_id, d.key FROM fedi_panel_run r "
        "JOIN fedi_panel_deployment d ON d.id = r.deployment_id"
    ).fetchall()
    assert (state, exit_status) == ("finished", 130)
    from fedi_run.engine.report.state import StateStore

    with StateStore.open(data / "deployments" / key / ".fedi-run" / "state.db") as store:
        record = store.last_run("stopped")
    assert (record.id, record.exit_status, record.interrupted) == (engine_run_id, 130, True)
    apply = {t.task_id: t for t in record.tasks}["nixops4.apply"]
    assert apply.outcome == "failed", apply
    assert apply.message.startswith("interrupted: still running when the grace period ended")

    # a new panel on the same data leaves the record as it is (nothing left to recover)
    again = subprocess.Popen(
        [sys.executable, "-m", "fedi_run.engine.cli.main", "panel", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "serving" not in (again.stderr.readline() or ""):
            pass
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(30)
    assert panel.execute("SELECT state, exit_status FROM fedi_panel_run").fetchall() == [
        ("finished", 130)
    ]
