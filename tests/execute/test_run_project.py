"""``run_project`` end to end without root or the lab: a playbook's own tasks, the real state
database beside it, ``--resume`` selecting from it, and the exit statuses — with the run's
``ConnectionPool`` replaced by the fake one (tests/fakes), whose hosts are this machine."""

from __future__ import annotations

import threading

import pytest
from fakes.pool import FakePool, notify

from fedi_run.engine import run as run_module
from fedi_run.engine.errors import FediRunError
from fedi_run.engine.project import load_project
from fedi_run.engine.report.events import Status, TaskStarted
from fedi_run.engine.report.state import StateStore, default_state_path
from fedi_run.engine.run import RunRequest, run_project


class Events:
    """A sink keeping every event; ``started()`` the ids of the tasks that started."""

    def __init__(self):
        self.events = []
        self.closed = False

    def handle(self, event):
        self.events.append(event)

    def close(self):
        self.closed = True

    def started(self) -> list[str]:
        return [e.task_id for e in self.events if isinstance(e, TaskStarted)]


@pytest.fixture
def pool(monkeypatch):
    """The fake pool, used by every ``run_project`` of the test."""
    fake = FakePool()
    monkeypatch.setattr(run_module, "ConnectionPool", lambda *args, **kwargs: fake)
    return fake


def playbook(tmp_path, tasks: str):
    path = tmp_path / "playbook.toml"
    path.write_text(
        '[deployment]\nname = "fake"\ndomain = "fake.example.org"\n\n'
        '[hosts.h1]\naddress = "127.0.0.2"\n\n[hosts.h2]\naddress = "127.0.0.3"\n\n' + tasks
    )
    return load_project(path, apply=False)


def test_resume_runs_only_what_failed_or_was_skipped(tmp_path, pool):
    go, out = tmp_path / "go", tmp_path / "gate.out"
    project = playbook(
        tmp_path,
        f"""
[tasks.first]
host = "h1"
file = {{ path = "{tmp_path}/first.out", content = "1\\n" }}

[tasks.gate]
host = "h1"
run = "echo ran >> {out}; test -e {go} || {{ echo 'no go yet' >&2; exit 4; }}"
requires = ["tasks.first"]

[tasks.after]
host = "h2"
file = {{ path = "{tmp_path}/after.out", content = "2\\n" }}
requires = ["tasks.gate"]

[tasks.other]
host = "h2"
file = {{ path = "{tmp_path}/other.out", content = "3\\n" }}
""",
    )
    sink = Events()
    first = run_project(project, RunRequest(), [sink])
    assert first.exit_status == 1 and sink.closed
    assert first.statuses == {
        "tasks.first": Status.CHANGED,
        "tasks.gate": Status.FAILED,
        "tasks.after": Status.SKIPPED,
        "tasks.other": Status.CHANGED,
        "nixops4.render": Status.SKIPPED,
    }
    with StateStore.open(default_state_path(project.playbook.source)) as store:
        record = store.last_run("fake")
        assert record.exit_status == 1
        gate = {t.task_id: t for t in record.tasks}["tasks.gate"]
        assert "exited with status 4" in gate.message and "no go yet" in gate.output_tail

    go.touch()
    sink = Events()
    resumed = run_project(project, RunRequest(resume=True), [sink])
    assert resumed.exit_status == 0
    assert sink.started() == ["tasks.gate", "tasks.after", "nixops4.render"]
    assert out.read_text() == "ran\nran\n"
    for name in ("first", "after", "other"):  # nothing done twice
        assert len(pool.calls_with(f"{tmp_path}/{name}.out")) == 1
    with pytest.raises(FediRunError, match="left nothing to do"):
        run_project(project, RunRequest(resume=True), [])


def test_a_run_stopped_from_another_thread_exits_130_and_resumes(tmp_path, pool):
    """``RunRequest.stop`` (the panel's Stop) set while ``first`` runs: first finishes, second
    is skipped, exit 130, the state says interrupted; --resume runs second, and first not again."""
    log = tmp_path / "log"
    project = playbook(
        tmp_path,
        f"""
[tasks.first]
host = "h1"
run = "sleep 0.2; echo first >> {log}"

[tasks.second]
host = "h1"
run = "echo second >> {log}"
requires = ["tasks.first"]
""",
    )
    stop = threading.Event()
    pool.on(notify(stop.set), when="echo first")
    outcome = run_project(project, RunRequest(stop=stop), [])
    assert outcome.exit_status == 130
    assert outcome.statuses["tasks.first"] == Status.CHANGED
    assert outcome.statuses["tasks.second"] == Status.SKIPPED
    with StateStore.open(default_state_path(project.playbook.source)) as store:
        assert store.last_run("fake").interrupted
    sink = Events()
    resumed = run_project(project, RunRequest(resume=True), [sink])
    assert resumed.exit_status == 0
    assert sink.started() == ["tasks.second", "nixops4.render"]
    assert log.read_text() == "first\nsecond\n"
