"""Several deployers sharing one state: each run records the deployer it ran on (its machine
and local directory), and a task on ``local`` done on another deployer is not done here — its
files (the rendered NixOps4 deployment, ACME account keys) are on that deployer. So
``--resume`` on another deployer runs it again, and a selection that needs it refuses to run
without it; on the deployer that ran it, and for runs recorded before deployers were, it is
done. On both backends; the panel's test with two workers in two data directories is the
whole story (tests/panel_workers)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fedi_run.engine.report.events import RunFinished, RunStarted, Status, TaskFinished
from fedi_run.engine.report.readiness import state_of
from fedi_run.engine.report.state import StateStore, deployer_identity

TASKS = ("render", "garage.secrets@garage", "nixops4.apply")
HOSTS = ("local", "garage", "local")
HERE, THERE = "worker-a:/srv/a/.fedi-run", "worker-b:/srv/b/.fedi-run"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    where = (
        tmp_path / ".fedi-run" / "state.db"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    with StateStore.open(where) as opened:
        yield opened


def killed_before_the_apply(store, deployer: str) -> int:
    """A run on ``deployer`` that rendered and did the host's task, and was killed in the
    apply (it never finished)."""
    run_id = store.begin_run("site", "run", TASKS, HOSTS, False, ["fedi-run"], "", deployer)
    store.handle(RunStarted(run_id, "site", "run", TASKS, HOSTS, False, 1000.0))
    for task, host in zip(TASKS[:2], HOSTS[:2]):
        store.handle(TaskFinished(run_id, task, host, Status.CHANGED, 0.1, at=1001.0))
    return run_id


def test_resume_on_another_deployer_runs_its_local_tasks_again(store):
    run_id = killed_before_the_apply(store, THERE)
    assert store.get_run(run_id).deployer == THERE
    assert store.resume_tasks("site", deployer=HERE) == ("render", "nixops4.apply")
    # On the deployer that ran it (and when no deployer is said): only what is left.
    assert store.resume_tasks("site", deployer=THERE) == ("nixops4.apply",)
    assert store.resume_tasks("site") == ("nixops4.apply",)


def test_a_run_recorded_before_deployers_were_counts_as_this_ones(store):
    killed_before_the_apply(store, "")
    assert store.resume_tasks("site", deployer=HERE) == ("nixops4.apply",)


def test_a_needed_local_task_done_elsewhere_is_not_done_here(store):
    run_id = killed_before_the_apply(store, THERE)
    store.handle(RunFinished(run_id, 1, 2.0, False))
    outcomes = store.last_outcomes("site", TASKS)
    there = state_of(outcomes["render"], "run", HERE)
    assert there == (f"done in run {run_id} on another deployer ({THERE})", False)
    assert state_of(outcomes["render"], "run", THERE) == (f"done in run {run_id}", True)
    # A task on a host is done whichever deployer did it: it is on the host.
    assert state_of(outcomes["garage.secrets@garage"], "run", HERE) == (
        f"done in run {run_id}",
        True,
    )


def test_the_deployer_is_this_machine_and_the_local_directory(tmp_path):
    identity = deployer_identity(tmp_path / ".fedi-run")
    assert identity == f"{socket.gethostname()}:{Path(tmp_path).absolute() / '.fedi-run'}"
