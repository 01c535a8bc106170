"""The StateStore contract on both backends — an SQLite file and a real PostgreSQL database —
and what only PostgreSQL has: its advisory lock across processes, the holder's record, a
killed holder, a connection lost under the lock, the errors of a state that cannot be used.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from fedi_run.engine.errors import LockHeld, NoPreviousRun, RunNotFound, StateError
from fedi_run.engine.report.events import (
    OutputChunk,
    RunFinished,
    RunStarted,
    Status,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.state import OUTPUT_TAIL, StateStore
from fedi_run.engine.report.state_location import (
    StateLocation,
    locate_state,
    redact_url,
    without_passwords,
)
from fedi_run.engine.report.state_postgresql import lock_key
from fedi_run.engine.report.state_reads import read_history
from fedi_run.engine.report.state_schema import MIGRATIONS, SCHEMA_VERSION

TASKS = ("garage.secrets@garage", "acme.reach@web", "web.secrets", "tasks.motd@web")
HOSTS = ("garage", "web", "web", "web")


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    """The state's place: an SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / ".fedi-run" / "state.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(where):
    with StateStore.open(where) as opened:
        yield opened


def record(store, outcomes, *, deployment="site", kind="run", check=False, finish=True):
    run_id = store.begin_run(deployment, kind, TASKS, HOSTS, check, ["fedi-run", "pb.toml"], "-x")
    store.handle(RunStarted(run_id, deployment, kind, TASKS, HOSTS, check, 1000.0))
    for task, host, status in zip(TASKS, HOSTS, outcomes):
        store.handle(TaskStarted(run_id, task, host, 1001.0))
        store.handle(OutputChunk(run_id, task, host, "stdout", "hello\n"))
        store.handle(
            TaskFinished(
                run_id, task, host, status, 0.25, f"{task} {status.value}", ("a change",),
                output="x" * (OUTPUT_TAIL + 10) if status is Status.FAILED else "",
                at=1002.0,
            )
        )  # fmt: skip
    if finish:
        store.handle(RunFinished(run_id, 1 if Status.FAILED in outcomes else 0, 3.5, False))
    return run_id


# -- the contract, on both ------------------------------------------------------------------


def test_round_trip(store):
    run_id = record(store, [Status.OK, Status.CHANGED, Status.FAILED])
    run = store.get_run(run_id)
    assert (run.deployment, run.kind, run.check, run.argv, run.selection) == (
        "site",
        "run",
        False,
        ("fedi-run", "pb.toml"),
        "-x",
    )
    assert (run.started_at, run.duration, run.exit_status, run.interrupted) == (
        1000.0,
        3.5,
        1,
        False,
    )
    assert [t.outcome for t in run.tasks] == ["ok", "changed", "failed", "never ran"]
    assert [t.position for t in run.tasks] == [0, 1, 2, 3]
    first = run.tasks[0]
    assert (first.duration, first.message, first.changes, first.started_at, first.finished_at) == (
        0.25,
        "garage.secrets@garage ok",
        ("a change",),
        1001.0,
        1002.0,
    )
    assert len(run.tasks[2].output_tail.encode()) == OUTPUT_TAIL and run.tasks[0].output_tail == ""
    assert run.recap == {"garage": {"ok": 1}, "web": {"changed": 1, "failed": 1, "never ran": 1}}
    assert store.write_error is None


def test_runs_newest_first_and_limited(store):
    ids = [record(store, [Status.OK]) for _ in range(3)]
    other = record(store, [Status.OK], deployment="other")
    assert [r.id for r in store.runs("site")] == ids[::-1]
    assert [r.id for r in store.runs(limit=2)] == [other, ids[-1]]
    assert store.runs("site")[0].tasks == () and store.runs(limit=2**70)


def test_a_task_the_run_did_not_list_is_appended(store):
    run_id = store.begin_run("site", "run", ["a.b"], ["local"], False, [])
    store.handle(TaskFinished(run_id, "late.task", "web", Status.OK, 0.1))
    assert [(t.task_id, t.position) for t in store.get_run(run_id).tasks] == [
        ("a.b", 0),
        ("late.task", 1),
    ]


def test_a_failed_write_is_remembered_and_the_run_goes_on(store):
    store.handle(TaskFinished(999, "a.b", "local", Status.OK, 0.1))  # no run 999
    assert store.write_error and "cannot record the run in" in store.write_error
    assert store.lock_lost is None  # a refused write, not a lost connection
    store.handle(RunFinished(999, 0, 1.0, False))  # ignored from now on


def test_unknown_runs_and_resume(store):
    with pytest.raises(RunNotFound, match=f"no run 42 in {store.location}"):
        store.get_run(42)
    with pytest.raises(RunNotFound):
        store.get_run(2**64)
    with pytest.raises(NoPreviousRun, match="without --resume"):
        store.resume_tasks("site")
    record(store, [Status.OK, Status.FAILED, Status.SKIPPED])
    record(store, [Status.OK], check=True)
    record(store, [Status.FAILED], kind="teardown")
    assert store.resume_tasks("site", check=False) == TASKS[1:]
    assert store.resume_tasks("site", "teardown") == TASKS
    assert store.last_run("site", check=True).check is True


def test_a_killed_run_did_not_finish(store):
    run_id = record(store, [Status.OK], finish=False)
    store.handle(TaskStarted(run_id, TASKS[1], HOSTS[1], 1003.0))
    store.close()
    with StateStore.open(store.location) as reopened:
        run = reopened.get_run(run_id)
        assert not run.finished and [t.outcome for t in run.tasks] == [
            "ok",
            "did not finish",
            "never ran",
            "never ran",
        ]
        assert reopened.resume_tasks("site") == TASKS[1:]


def test_secrets_and_the_domain_applied(store):
    run_id = record(store, [Status.OK])
    placed = [("/a/one", True), ("/a/b/two", False)]
    store.record_secrets("site", "web", run_id, "web.secrets", placed)
    store.record_secrets("site", "web", run_id, "web.secrets", [("/a/one", False)])
    store.record_secrets("site", "db", run_id, "db.secrets", [("/x", True)])
    assert store.placed_secrets("site") == {
        "db": {"/x": True},
        "web": {"/a/b/two": False, "/a/one": False},
    }
    store.record_secrets("site", "web", run_id, "web.secrets", removed=["/a/b"])
    assert store.placed_secrets("site")["web"] == {"/a/one": False}
    assert store.applied_domain("site") is None
    store.record_applied("site", "one.example", run_id)
    store.record_applied("site", "two.example", run_id)
    assert store.applied_domain("site") == ("two.example", run_id)
    assert store.write_error is None


def test_history_is_read_without_writing(where, tmp_path):
    assert read_history(where, "site") == {}
    with StateStore.open(where) as store:
        first = record(store, [Status.OK, Status.FAILED])
        record(store, [Status.OK], check=True)
    assert read_history(where, "site") == {
        TASKS[0]: ("garage", first, "run", True),
        TASKS[1]: ("web", first, "run", False),
    }  # the tasks a run (not a --check) started


def test_one_schema_and_its_migrations(where, postgres):
    """An old database (schema 1: runs and tasks) is migrated to the current one, its runs kept."""
    location = locate_state(where, None)
    if location.postgresql:
        import psycopg

        from fedi_run.engine.report.state_schema import migration_statements

        with psycopg.connect(location.url, autocommit=True) as db:
            for statement in migration_statements("postgresql", 0)[: len(MIGRATIONS[0])]:
                db.execute(statement)
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            db.execute("INSERT INTO schema_version VALUES (1)")
            db.execute(
                "INSERT INTO runs (deployment, kind, check_mode, argv, selection, started_at) "
                "VALUES ('site', 'run', 0, '[]', '', 5.0)"
            )
    else:
        import sqlite3

        from fedi_run.engine.report.state_schema import migration_statements

        location.path.parent.mkdir(mode=0o700)
        db = sqlite3.connect(location.path)
        for statement in migration_statements("sqlite", 0)[: len(MIGRATIONS[0])]:
            db.execute(statement)
        db.execute(
            "INSERT INTO runs (deployment, kind, check_mode, argv, selection, started_at) "
            "VALUES ('site', 'run', 0, '[]', '', 5.0)"
        )
        db.execute("PRAGMA user_version = 1")
        db.commit()
        db.close()
    with StateStore.open(where) as store:
        assert [r.started_at for r in store.runs("site")] == [5.0]
        run_id = record(store, [Status.OK])
        store.record_applied("site", "x.example", run_id)
        assert store.applied_domain("site") == ("x.example", run_id)
    assert _version(location) == SCHEMA_VERSION == len(MIGRATIONS)


def _version(location: StateLocation) -> int:
    if location.postgresql:
        import psycopg

        with psycopg.connect(location.url) as db:
            return db.execute("SELECT version FROM schema_version").fetchone()[0]
    import sqlite3

    db = sqlite3.connect(location.path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def test_a_newer_schema_is_refused(where):
    with StateStore.open(where):
        pass
    location = locate_state(where, None)
    if location.postgresql:
        import psycopg

        with psycopg.connect(location.url, autocommit=True) as db:
            db.execute("UPDATE schema_version SET version = 99")
    else:
        import sqlite3

        db = sqlite3.connect(location.path)
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()
    with pytest.raises(StateError, match="newer fedi-run \\(schema 99"):
        StateStore.open(where)


# -- the lock, across processes --------------------------------------------------------------

HOLDER = """
import sys, time
from fedi_run.engine.report.state import StateStore
store = StateStore.open(sys.argv[1])
with store.lock("site", ["fedi-run", "run", "holder.toml"]):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder(where):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(where)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "locked\n"
    yield process
    process.kill()
    process.wait()


def test_the_lock_names_its_holder_and_goes_with_it(where, holder):
    with StateStore.open(where) as store:
        with pytest.raises(LockHeld) as caught:
            with store.lock("site"):
                pytest.fail("the lock was taken twice")
        assert caught.value.exit_status == 3 and caught.value.pid == holder.pid
        assert f"pid {holder.pid}" in str(caught.value)
        if store.location.postgresql:
            assert caught.value.command == "fedi-run run holder.toml"
            assert f"advisory lock {lock_key('site')}" in str(caught.value)
            with store.lock("other"):  # another deployment's lock is another lock
                pass  # (SQLite's state file has one lock: engine.report.locks has one each)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + 10
        while True:  # the server ends the dead session at once; allow it a moment
            try:
                with store.lock("site"):
                    break
            except LockHeld:
                assert time.monotonic() < deadline, "the killed holder's lock stayed"
                time.sleep(0.05)


def test_two_stores_in_one_process_conflict_and_release(where):
    with StateStore.open(where) as first, StateStore.open(where) as second:
        with first.lock("site"):
            with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
                with second.lock("site"):
                    pass
        with pytest.raises(RuntimeError):
            with second.lock("site"):
                raise RuntimeError("boom")
        with first.lock("site"):
            pass


# -- PostgreSQL only ----------------------------------------------------------------------------


def test_a_stale_holder_row_names_nobody(pg_url, postgres):
    """A holder killed with its row left: the next run takes the lock and overwrites the row;
    a contender then names the new holder, not the dead one."""
    with StateStore.open(pg_url) as store:
        with store.lock("site", ["first"]):
            pass
        store._db.execute(  # the row a crashed holder leaves behind
            "INSERT INTO lock_holders VALUES ('site', 1, 1, 'gone', 'nobody', 1.0, '[\"dead\"]')"
        )
        with StateStore.open(pg_url) as other, other.lock("site", ["second", "run"]):
            with pytest.raises(LockHeld) as caught:
                with store.lock("site"):
                    pass
            assert caught.value.command == "second run" and "dead" not in str(caught.value)


def test_a_lost_lock_connection_is_noticed_at_the_next_write(pg_url, postgres):
    stopped = []
    with StateStore.open(pg_url) as store, store.lock("site"):
        store.on_lock_lost = lambda: stopped.append(True)
        run_id = store.begin_run("site", "run", TASKS, HOSTS, False, [])
        session = store._db.execute(
            "SELECT session FROM lock_holders WHERE deployment = 'site'"
        ).fetchone()[0]
        postgres.admin("SELECT pg_terminate_backend(%s)", params=(session,))
        store.handle(TaskStarted(run_id, TASKS[0], HOSTS[0], 1.0))
        store.handle(TaskFinished(run_id, TASKS[0], HOSTS[0], Status.OK, 0.1))
        assert stopped == [True] and store.lock_lost and store.write_error
        assert "terminat" in store.lock_lost
        store.handle(TaskFinished(run_id, TASKS[1], HOSTS[1], Status.OK, 0.1))  # not written
    with StateStore.open(pg_url) as again:
        assert [t.outcome for t in again.get_run(run_id).tasks][:2] == ["ok", "never ran"]
        with again.lock("site"):  # the server released it with its session
            pass


@pytest.mark.parametrize(
    "url, reason",
    [
        ("postgresql://deployer@127.0.0.1:{closed}/x", "Connection refused"),
        ("postgresql://deployer:s3cret-word@127.0.0.1:{port}/nosuchdb", "nosuchdb"),
        ("postgresql://intruder:s3cret-word@127.0.0.1:{port}/postgres", "authentication failed"),
        ("postgres://deployer@127.0.0.1:{port}/x?nosuchoption=1", "nosuchoption"),
    ],
)
def test_a_state_that_cannot_be_used_is_one_clear_error(postgres, url, reason):
    url = url.format(port=postgres.port, closed=_closed_port())
    with pytest.raises(StateError) as caught:
        StateStore.open(url)
    message = str(caught.value)
    assert caught.value.exit_status == 2 and "\n" not in message
    assert reason in message and redact_url(url) in message
    assert "s3cret-word" not in message
    with pytest.raises(StateError):
        read_history(url, "site")


def _closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_missing_driver_says_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from fedi_run.engine.report.state import StateStore\n"
        "StateStore.open('postgresql://u@127.0.0.1:1/db')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "needs the psycopg package" in done.stderr
    assert "fedi-run[postgresql]" in done.stderr


def test_passwords_never_shown():
    assert redact_url("postgresql://me:pw@db.example:5433/fedi?sslmode=require") == (
        "postgresql://me@db.example:5433/fedi?sslmode=require"
    )
    assert redact_url("postgres://db/fedi?password=pw&user=me") == "postgres://db/fedi?user=me"
    argv = ["run", "--state=postgresql://me:pw@h/db", "--state", "postgres://:pw@h/db", "x.toml"]
    assert without_passwords(argv) == (
        "run",
        "--state=postgresql://me@h/db",
        "--state",
        "postgres://h/db",
        "x.toml",
    )
    located = locate_state("postgresql://me:pw@h:1/db", None)
    assert located.identity == "postgresql://h:1/db" and "pw" not in repr(located)
