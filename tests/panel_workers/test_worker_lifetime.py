"""A worker's lifetime is its parent's when it has a lifeline (:mod:`fedi_run.panel.lifeline`):
``panel serve`` SIGKILLed takes its embedded worker with it; a worker spawned with a lifeline
ends when the process that spawned it is SIGKILLed, one spawned without outlives it (the
control); and a worker whose lifeline closes during a run stops it as SIGTERM does — the run
recorded interrupted (exit 130), not broken off, the held nixops4 stand-in ended.

Everything runs on the embedded default (SQLite and the data directory's own broker); the
tests read the panel's SQLite file directly."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workers_helpers import OPERATOR, OPERATOR_PASSWORD, Cluster

CLOSED = "its lifeline closed): stopping"
"""What a process whose lifeline closed says (fedi_run.panel.lifeline)."""


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie, ended but not yet reaped by whoever inherited it, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def gone_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def end_by_pid(pid: int) -> None:
    """A leftover of a failed test: SIGTERM, then SIGKILL (it is not this process's child)."""
    for signum, wait in ((signal.SIGTERM, 40), (signal.SIGKILL, 10)):
        if not alive(pid):
            return
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        gone_within(pid, wait)


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path, None, None)
    leftovers: list[int] = []
    made.leftovers = leftovers
    try:
        yield made
    finally:
        made.close()
        for pid in leftovers:
            end_by_pid(pid)


def embedded_worker_pid(log: Path) -> int:
    found = re.search(r"runs by its own worker \(pid (\d+)\)", log.read_text())
    assert found, log.read_text()
    return int(found[1])


def test_a_killed_serve_takes_its_embedded_worker_with_it(cluster):
    web = cluster.serve()
    pid = embedded_worker_pid(cluster.logs[-1])
    cluster.leftovers.append(pid)
    assert alive(pid)
    web.kill()
    web.wait()
    assert gone_within(pid, 15), f"worker {pid} outlived its serve:\n{cluster.logs[-1].read_text()}"
    assert CLOSED in cluster.logs[-1].read_text()  # its lifeline ended it, not something else


SPAWN_AND_DIE = """
import os, signal, sys, time
from pathlib import Path
from fedi_run.panel import embedded
log = Path(sys.argv[1])
with open(log, "w") as out:
    worker = embedded.spawn(
        Path(sys.argv[2]), stdout=out, stderr=out, lifeline=sys.argv[3] == "with")
deadline = time.monotonic() + 60
while "taking runs from" not in log.read_text():
    assert worker.alive() and time.monotonic() < deadline, log.read_text()
    time.sleep(0.05)
time.sleep(1.0)  # its Celery worker started
print(worker.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("lifeline", ["with", "without"])
def test_a_spawned_worker_outlives_its_parent_only_without_a_lifeline(cluster, lifeline):
    log = cluster.base / "worker.log"
    parent = subprocess.run(
        [sys.executable, "-c", SPAWN_AND_DIE, str(log), str(cluster.data), lifeline],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr + log.read_text()
    pid = int(parent.stdout.split()[-1])
    cluster.leftovers.append(pid)
    if lifeline == "with":
        assert gone_within(pid, 15), f"worker {pid} outlived its parent:\n{log.read_text()}"
        assert CLOSED in log.read_text()
    else:
        assert not gone_within(pid, 8), f"worker {pid} ended with its parent:\n{log.read_text()}"
        assert CLOSED not in log.read_text()
        os.kill(pid, signal.SIGTERM)  # a worker of its own: stopped by its pid
        assert gone_within(pid, 40), log.read_text()


START_RUN = """
import sys
from fedi_run.panel import site
site.configure(sys.argv[1])
from fedi_run.panel import runs
from fedi_run.panel.models import Deployment
print(runs.start(Deployment.objects.get(pk=int(sys.argv[2])), "run").pk)
"""


def run_row(cluster: Cluster, run_pk: int) -> dict:
    names = ("state", "worker_pid", "exit_status", "error", "tasks")
    with sqlite3.connect(cluster.data / "panel.sqlite3", timeout=30) as db:
        values = db.execute(
            f"SELECT {', '.join(names)} FROM fedi_panel_run WHERE id = ?", (run_pk,)
        ).fetchone()
    row = dict(zip(names, values))
    row["tasks"] = json.loads(row["tasks"] or "[]")
    return row


def applying(cluster: Cluster, run_pk: int) -> bool:
    row = run_row(cluster, run_pk)
    return row["state"] == "running" and any(
        t["id"] == "nixops4.apply" and t["status"] == "running" for t in row["tasks"]
    )


def test_a_worker_whose_lifeline_closes_mid_run_records_it_interrupted(cluster, tmp_path):
    created = cluster.panel(
        "createuser", OPERATOR, input=f"{OPERATOR_PASSWORD}\n{OPERATOR_PASSWORD}\n"
    )
    assert created.returncode == 0, created.stderr
    web = cluster.serve()
    worker_pid = embedded_worker_pid(cluster.logs[-1])
    cluster.leftovers.append(worker_pid)
    hostless = tmp_path / "hostless.toml"
    hostless.write_text('[hosts.web]\naddress = "127.0.0.2"\n')
    deployment = cluster.make_deployment("solo", hostless, [])
    cluster.hold.touch()  # its nixops4 apply waits while the file exists
    started = subprocess.run(
        [sys.executable, "-c", START_RUN, str(cluster.data), str(deployment["pk"])],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    run_pk = int(started.stdout.split()[-1])
    deadline = time.monotonic() + 120
    while not applying(cluster, run_pk):
        assert time.monotonic() < deadline, (run_row(cluster, run_pk), cluster.tracebacks())
        time.sleep(0.1)
    assert run_row(cluster, run_pk)["worker_pid"] == worker_pid
    [standin] = cluster.orphans()
    assert alive(standin)

    web.kill()
    web.wait()
    assert gone_within(worker_pid, 45), cluster.logs[-1].read_text()
    row = run_row(cluster, run_pk)
    assert (row["state"], row["exit_status"], row["error"]) == ("finished", 130, ""), row
    assert not alive(standin)  # the run's stop ended its apply
    assert CLOSED in cluster.logs[-1].read_text()
    assert not cluster.tracebacks(), cluster.tracebacks()


def test_serve_whose_lifeline_closes_stops_as_on_sigterm(cluster):
    """What a supervisor's death does to ``serve`` given ``FEDI_RUN_PANEL_LIFELINE``: the
    write end is this process's only (Cluster.serve), so closing it is that death."""
    web = cluster.serve()
    worker_pid = embedded_worker_pid(cluster.logs[-1])
    cluster.leftovers.append(worker_pid)
    os.close(web.lifeline)
    web.lifeline = None
    assert web.wait(60) == 0, cluster.logs[-1].read_text()
    shown = cluster.logs[-1].read_text()
    assert CLOSED in shown and "fedi-run panel: stopped (its worker stopped" in shown, shown
    assert not alive(worker_pid)


def test_a_lifeline_that_is_no_pipe_is_refused(cluster):
    env = {**cluster.env, "FEDI_RUN_PANEL_LIFELINE": "987"}
    done = subprocess.run(
        [sys.executable, "-m", "fedi_run.engine.cli.main", "panel", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "FEDI_RUN_PANEL_LIFELINE='987' names no open file descriptor" in done.stderr
