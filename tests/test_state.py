"""The run state database (engine/report/state.py) and `history` / `show-run`
(engine/cli/history.py).

Everything runs against real SQLite files under tmp_path; the lock tests use real second
processes, one of them killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading

import pytest
from click.testing import CliRunner

from fedi_run.engine.cli.history import history, show_run
from fedi_run.engine.cli.main import FediRunGroup
from fedi_run.engine.errors import (
    FediRunError,
    LockHeld,
    NoPreviousRun,
    RunNotFound,
    StateError,
)
from fedi_run.engine.report.events import (
    OutputChunk,
    RunFinished,
    RunStarted,
    Status,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.state import (
    OUTPUT_TAIL,
    StateStore,
    default_state_path,
)

TASKS = (
    "garage.secrets@garage",
    "acme.reach@web",
    "web.secrets",
    "tasks.motd@web",
    "nixops4.apply",
)
HOSTS = ("garage", "web", "web", "web", "local")


@pytest.fixture
def db(tmp_path):
    return tmp_path / ".fedi-run" / "state.db"


@pytest.fixture
def store(db):
    with StateStore.open(db) as opened:
        yield opened


def record(store, outcomes, *, deployment="site", kind="run", check=False, finish=True):
    """Record a run of TASKS whose first len(outcomes) tasks end as given; return its id."""
    run_id = store.begin_run(
        deployment, kind, TASKS, HOSTS, check, ["fedi-run", "pb.toml"], "--only web.*"
    )
    store.handle(RunStarted(run_id, deployment, kind, TASKS, HOSTS, check, 1000.0))
    for task, host, status in zip(TASKS, HOSTS, outcomes):
        if status not in (Status.SKIPPED, Status.UNREACHABLE):
            store.handle(TaskStarted(run_id, task, host, 1001.0))
            store.handle(OutputChunk(run_id, task, host, "stdout", "hello\n"))
        store.handle(
            TaskFinished(
                run_id,
                task,
                host,
                status,
                0.25,
                message=f"{status} message",
                changes=("wrote /etc/motd",) if status is Status.CHANGED else (),
                output="out\n" * 10 if status is Status.FAILED else "ok output",
                at=1002.0,
            )
        )
    if finish:
        store.handle(RunFinished(run_id, 1, 5.5, False))
    return run_id


# -- recording and reading back ------------------------------------------------------------


def test_round_trip(store):
    run_id = record(
        store, [Status.OK, Status.CHANGED, Status.FAILED, Status.SKIPPED, Status.UNREACHABLE]
    )
    run = store.get_run(run_id)
    assert (run.id, run.deployment, run.kind, run.check) == (run_id, "site", "run", False)
    assert run.argv == ("fedi-run", "pb.toml") and run.selection == "--only web.*"
    assert (run.exit_status, run.duration, run.interrupted, run.finished) == (1, 5.5, False, True)
    assert run.started_at == 1000.0 and run.finished_at is not None
    assert [t.task_id for t in run.tasks] == list(TASKS)
    assert [t.position for t in run.tasks] == [0, 1, 2, 3, 4]
    ok, changed, failed, skipped, unreachable = run.tasks
    assert ok.status is Status.OK and ok.message == "ok message" and ok.duration == 0.25
    assert ok.started_at == 1001.0 and ok.finished_at == 1002.0 and ok.output_tail == ""
    assert changed.changes == ("wrote /etc/motd",)
    assert failed.output_tail == "out\n" * 10
    assert skipped.started_at is None and unreachable.status is Status.UNREACHABLE
    assert run.recap == {
        "garage": {"ok": 1},
        "web": {"changed": 1, "failed": 1, "skipped": 1},
        "local": {"unreachable": 1},
    }
    assert run.totals == {"ok": 1, "changed": 1, "failed": 1, "skipped": 1, "unreachable": 1}


def test_failed_output_is_cut_to_its_last_4_kib(store):
    run_id = store.begin_run("site", "run", ["a.b"], ["local"], False, [])
    store.handle(
        TaskFinished(
            run_id, "a.b", "local", Status.FAILED, 1.0, output="head " + "x" * 10_000 + " the end"
        )
    )
    tail = store.get_run(run_id).tasks[0].output_tail
    assert len(tail.encode()) <= OUTPUT_TAIL and tail.endswith("x the end")


def test_runs_newest_first_with_recaps_and_no_tasks(store):
    first = record(store, [Status.OK] * 5)
    other = record(store, [Status.FAILED], deployment="other")
    last = record(store, [Status.CHANGED], kind="teardown", finish=False)
    runs = store.runs("site")
    assert [r.id for r in runs] == [last, first]
    assert runs[0].tasks == () and runs[0].recap == {
        "garage": {"changed": 1},
        "web": {"never ran": 3},
        "local": {"never ran": 1},
    }
    assert runs[1].recap == store.get_run(first).recap
    assert [r.id for r in store.runs()] == [last, other, first]
    assert [r.id for r in store.runs(limit=2)] == [last, other]


def test_a_task_the_run_did_not_list_is_appended(store):
    run_id = store.begin_run("site", "run", ["a.b"], ["local"], False, [])
    store.handle(TaskFinished(run_id, "late.task", "web", Status.OK, 0.1))
    assert [(t.task_id, t.position) for t in store.get_run(run_id).tasks] == [
        ("a.b", 0),
        ("late.task", 1),
    ]


def test_handle_never_raises_and_remembers_the_failure(store, caplog):
    store.handle(TaskFinished(999, "a.b", "local", Status.OK, 0.1))  # no run 999
    assert store.write_error and "cannot record the run" in store.write_error
    store.handle(RunFinished(999, 0, 1.0, False))  # ignored from now on


def test_events_may_come_from_another_thread(store):
    run_id = store.begin_run("site", "run", ["a.b"], ["local"], False, [])
    worker = threading.Thread(
        target=store.handle, args=(TaskFinished(run_id, "a.b", "local", Status.OK, 0.1),)
    )
    worker.start()
    worker.join()
    assert store.write_error is None and store.get_run(run_id).tasks[0].status is Status.OK


def test_get_run_of_an_unknown_id(store):
    with pytest.raises(RunNotFound) as caught:
        store.get_run(42)
    assert caught.value.exit_status == 2
    assert str(caught.value) == (
        f"error: no run 42 in {store.path}; `fedi-run history PLAYBOOK` lists them"
    )


def test_default_state_path(tmp_path):
    assert default_state_path(tmp_path / "pb.toml") == tmp_path / ".fedi-run" / "state.db"


# -- resume --------------------------------------------------------------------------------


def test_resume_takes_what_is_not_done_in_order(store):
    record(store, [Status.OK] * 5)
    record(store, [Status.FAILED, Status.OK, Status.SKIPPED, Status.CHANGED])
    assert store.resume_tasks("site") == ("garage.secrets@garage", "web.secrets", "nixops4.apply")
    record(store, [Status.OK, Status.UNREACHABLE, Status.OK, Status.OK, Status.OK])
    assert store.resume_tasks("site") == ("acme.reach@web",)
    record(store, [Status.OK, Status.CHANGED, Status.OK, Status.OK, Status.CHANGED])
    assert store.resume_tasks("site") == ()


def test_resume_keeps_kinds_deployments_and_check_runs_apart(store):
    record(store, [Status.FAILED])
    record(store, [Status.OK] * 5, check=True)
    record(store, [Status.OK] * 5, deployment="other")
    record(store, [Status.OK, Status.FAILED], kind="teardown")
    assert store.resume_tasks("site") == ()
    assert store.resume_tasks("site", check=False) == TASKS
    assert store.resume_tasks("site", kind="teardown") == TASKS[1:]
    assert store.last_run("site", check=True).check is True


def test_resume_without_a_previous_run(store):
    record(store, [Status.FAILED], deployment="other")
    with pytest.raises(NoPreviousRun) as caught:
        store.resume_tasks("site")
    assert caught.value.exit_status == 2
    assert "no previous run of deployment 'site'" in str(caught.value)
    assert str(store.path) in str(caught.value) and "without --resume" in str(caught.value)
    assert store.last_run("site") is None


KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from fedi_run.engine.report.events import *
from fedi_run.engine.report.state import StateStore
store = StateStore.open(Path(sys.argv[1]))
tasks, hosts = ("a.one", "a.two", "a.three", "a.four"), ("h", "h", "h", "h")
with store.lock("site"):
    run_id = store.begin_run("site", "run", tasks, hosts, False, ["fedi-run"])
    store.handle(RunStarted(run_id, "site", "run", tasks, hosts, False, 1.0))
    for task, status in zip(tasks[:2], (Status.OK, Status.FAILED)):
        store.handle(TaskStarted(run_id, task, "h", 2.0))
        store.handle(TaskFinished(run_id, task, "h", status, 0.5))
    store.handle(TaskStarted(run_id, "a.three", "h", 3.0))
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_run_did_not_finish_and_its_rest_is_resumable(db):
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(db)])
    assert killed.returncode == -signal.SIGKILL
    with StateStore.open(db) as store:
        run = store.last_run("site")
        assert run is not None and not run.finished and run.exit_status is None
        assert [t.outcome for t in run.tasks] == ["ok", "failed", "never ran", "never ran"]
        assert store.resume_tasks("site") == ("a.two", "a.three", "a.four")
        with store.lock("site"):  # the dead run's lock went with it
            pass


def test_a_started_task_of_a_dead_run_did_not_finish(store):
    run_id = store.begin_run("site", "run", ["a.b", "a.c"], ["h", "h"], False, [])
    store.handle(TaskStarted(run_id, "a.b", "h", 2.0))
    store.close()  # the executor's abort path: close() without RunFinished
    with StateStore.open(store.path) as reopened:
        assert [t.outcome for t in reopened.get_run(run_id).tasks] == [
            "did not finish",
            "never ran",
        ]
        assert reopened.runs()[0].recap == {"h": {"did not finish": 1, "never ran": 1}}


# -- the lock ------------------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from fedi_run.engine.report.state import StateStore
store = StateStore.open(Path(sys.argv[1]))
with store.lock("site"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder(db):
    """A second process holding the lock of deployment 'site'."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "locked\n"
    yield process
    process.kill()
    process.wait()


def test_lock_held_by_another_process(db, holder):
    with StateStore.open(db) as store:
        with pytest.raises(LockHeld) as caught:
            with store.lock("site"):
                pytest.fail("the lock was taken twice")
    error = caught.value
    assert isinstance(error, FediRunError) and error.exit_status == 3
    assert error.pid == holder.pid
    assert f"pid {holder.pid}" in str(error) and "deployment 'site'" in str(error)
    assert f"{db}.lock" in str(error) and ", started 2" in str(error)


def test_lock_is_released_when_its_holder_is_killed(db, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with StateStore.open(db) as store, store.lock("site"):
        assert json.loads((db.parent / "state.db.lock").read_text())["pid"] == os.getpid()


def test_two_stores_in_one_process_conflict_and_release(db):
    with StateStore.open(db) as first, StateStore.open(db) as second:
        with first.lock("site"):
            with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
                with second.lock("site"):
                    pass
        with pytest.raises(RuntimeError):
            with second.lock("site"):
                raise RuntimeError("boom")  # released on an exception too
        with first.lock("site"):
            pass


# -- files, permissions and faults ---------------------------------------------------------


def test_state_files_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "new" / "dirs" / "state.db"
        with StateStore.open(path) as store, store.lock("site"):
            record(store, [Status.OK])
            names = ["state.db", "state.db-wal", "state.db-shm", "state.db.lock"]
            modes = {n: stat.S_IMODE((path.parent / n).stat().st_mode) for n in names}
    finally:
        os.umask(old)
    assert modes == dict.fromkeys(names, 0o600)
    for directory in (tmp_path / "new", tmp_path / "new" / "dirs"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


@pytest.mark.parametrize("below", [("state.db",), (".fedi-run", "state.db")])
def test_a_state_directory_under_a_file(tmp_path, below):
    (tmp_path / "afile").write_text("not a directory")
    path = tmp_path.joinpath("afile", *below)
    with pytest.raises(StateError) as caught:
        StateStore.open(path)
    assert caught.value.exit_status == 2
    message = str(caught.value)
    assert message.startswith("error: cannot ") and str(path.parent) in message
    assert "not a directory" in message.lower() and "--state FILE" in message


def test_an_immutable_state_directory(tmp_path):
    directory = tmp_path / ".fedi-run"
    directory.mkdir()
    assert shutil.which("chattr"), "chattr is missing: apt-get install e2fsprogs"
    refused = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, text=True)
    assert refused.returncode == 0, (
        f"chattr +i {directory}: {refused.stderr} (run the tests as root on ext4/tmpfs)"
    )
    try:
        with pytest.raises(StateError) as caught:
            StateStore.open(directory / "state.db")
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)
    assert str(caught.value) == (
        f"error: cannot write the state directory {directory}: Permission denied; make it "
        "writable, or pass --state FILE to keep the run state elsewhere"
    )


def test_a_file_that_is_not_a_database(db):
    db.parent.mkdir()
    db.write_text("this is not SQLite\n" * 100)
    with pytest.raises(StateError) as caught:
        StateStore.open(db)
    assert str(db) in str(caught.value) and f"move {db} away" in str(caught.value)


def test_a_deleted_database_is_recreated(db):
    subprocess.run([sys.executable, "-c", KILLED_RUN, str(db)])  # leaves -wal and -shm behind
    assert (db.parent / "state.db-wal").exists()
    db.unlink()
    with StateStore.open(db) as store:
        assert store.runs() == [] and store.last_run("site") is None
        with pytest.raises(NoPreviousRun):
            store.resume_tasks("site")
        assert store.get_run(record(store, [Status.OK])).id == 1


# -- the commands --------------------------------------------------------------------------

PLAYBOOK = """
[deployment]
name = "site"
domain = "x.org"
"""


@pytest.fixture
def cli():
    group = FediRunGroup("fedi-run")
    group.add_command(history)
    group.add_command(show_run)
    return lambda *args: CliRunner().invoke(group, [str(arg) for arg in args])


@pytest.fixture
def playbook(tmp_path):
    path = tmp_path / "pb.toml"
    path.write_text(PLAYBOOK)
    return path


@pytest.fixture
def recorded(playbook):
    with StateStore.open(default_state_path(playbook)) as store:
        done = record(store, [Status.OK, Status.CHANGED, Status.FAILED, Status.SKIPPED])
        killed = record(store, [Status.OK], check=True, finish=False)
        record(store, [Status.OK], deployment="other")
    return done, killed


def test_history_text(cli, playbook, recorded):
    result = cli("history", playbook)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"runs of deployment 'site' in {default_state_path(playbook)}, newest first:"
    assert lines[1].split() == [
        "ID",
        "KIND",
        "STARTED",
        "DURATION",
        "RESULT",
        "OK",
        "CHANGED",
        "FAILED",
        "SKIPPED",
        "UNREACHABLE",
        "NOT",
        "RUN",
    ]
    killed, done = lines[2].split(), lines[3].split()
    assert killed[:3] == [str(recorded[1]), "run", "(check)"]
    assert killed[-9:] == ["did", "not", "finish", "1", "0", "0", "0", "0", "4"]
    assert done[0] == str(recorded[0]) and done[-9:] == [
        "5.50s",
        "exit",
        "1",
        "1",
        "1",
        "1",
        "1",
        "0",
        "1",
    ]
    assert len(lines) == 4  # the other deployment's run is not listed


def test_history_json_and_limit(cli, playbook, recorded):
    result = cli("history", playbook, "--json", "--limit", "1")
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)
    assert run["id"] == recorded[1] and run["check"] is True and run["finished"] is False
    assert run["exit_status"] is None and run["totals"] == {"ok": 1, "never ran": 4}
    assert run["started_at"].startswith("1970-01-01")


def test_history_without_a_database_creates_nothing(cli, playbook, tmp_path):
    result = cli("history", playbook)
    assert result.exit_code == 0
    path = default_state_path(playbook)
    assert result.output == f"no runs of deployment 'site' recorded in {path}\n"
    assert not (tmp_path / ".fedi-run").exists()
    assert json.loads(cli("history", playbook, "--json").output) == []


def test_history_with_state_option(cli, playbook, tmp_path):
    other = tmp_path / "elsewhere" / "runs.db"
    with StateStore.open(other) as store:
        record(store, [Status.OK] * 5)
    assert json.loads(cli("history", playbook, "--state", other, "--json").output)[0]["id"] == 1


def test_show_run_text(cli, playbook, recorded):
    result = cli("show-run", playbook, recorded[0])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(f"run {recorded[0]} of deployment 'site': run, started ")
    assert "took 5.50s, exit 1\ncommand: fedi-run pb.toml\nselection: --only web.*\n" in out
    assert "web.secrets" in out and "~ wrote /etc/motd" in out and "output (end):" in out
    assert [line.split()[:4] for line in out.splitlines() if line.split()[0:1] == ["5"]] == [
        ["5", "nixops4.apply", "local", "never"]
    ]
    recap = out.split("recap:\n")[1].splitlines()
    assert recap[1].split() == [
        "web",
        "ok=0",
        "changed=1",
        "failed=1",
        "skipped=1",
        "unreachable=0",
    ]
    assert recap[2].split() == [
        "local",
        "ok=0",
        "changed=0",
        "failed=0",
        "skipped=0",
        "unreachable=0",
        "never",
        "ran=1",
    ]


def test_show_run_json(cli, playbook, recorded):
    result = cli("show-run", playbook, recorded[1], "--json")
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)
    assert [t["outcome"] for t in run["tasks"]] == ["ok"] + ["never ran"] * 4
    assert run["tasks"][1]["status"] is None and run["recap"]["garage"] == {"ok": 1}


def test_show_run_errors(cli, playbook, recorded):
    missing = cli("show-run", playbook, 99)
    assert missing.exit_code == 2
    assert f"error: no run 99 in {default_state_path(playbook)}" in missing.output
    foreign = cli("show-run", playbook, recorded[1] + 1)
    assert foreign.exit_code == 2 and "is of deployment 'other', not 'site'" in foreign.output


def test_commands_name_an_unreadable_playbook(cli, tmp_path):
    missing = cli("history", tmp_path / "nope.toml")
    assert missing.exit_code == 2
    assert f"{tmp_path / 'nope.toml'}: cannot read it: No such file" in missing.output
    nameless = tmp_path / "nameless.toml"
    nameless.write_text(textwrap.dedent("[deployment]\ndomain = 'x.org'\n"))
    result = cli("show-run", nameless, 1)
    assert result.exit_code == 2 and f"{nameless}: deployment.name: missing" in result.output
    broken = tmp_path / "broken.toml"
    broken.write_text("[deployment\n")
    assert "not valid TOML" in cli("history", broken).output
