"""Several deployments of one name in one PostgreSQL database, each in a schema of its own
(``?options=-csearch_path%3DNAME``): the schema a URL names, its identity, its lock, the
schema created on first use, and the errors of a schema that cannot be used — against the
real PostgreSQL of ``conftest.py``, and through the real command line.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from fedi_run.engine.errors import LockHeld, StateError
from fedi_run.engine.lab.pytest_plugin import LabFactory
from fedi_run.engine.report.events import RunFinished, RunStarted
from fedi_run.engine.report.state import StateStore
from fedi_run.engine.report.state_location import StateLocation, locate_state, redact_url
from fedi_run.engine.report.state_postgresql import lock_key
from fedi_run.engine.report.state_reads import read_history

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM9zTreudo/hHlEfkKcCexPLkyRA2oNFlPR8Mun/D1gD"
PLAYBOOK = (
    '[deployment]\nname = "social"\ndomain = "social.example.org"\n'
    '[hosts.target]\naddress = "127.0.0.1"\nport = 1\nuser = "root"\n'
    f'host_key = "{HOST_KEY}"\n[tasks.noop]\nhost = "target"\nrun = "true"\n'
)
"""A playbook ``plan`` and ``history`` read without contacting its host (port 1: none)."""


def in_schema(url: str, schema: str, form: str = "-csearch_path%3D{}") -> str:
    """``url`` with ``options`` setting the search_path to ``schema``."""
    return f"{url}{'&' if '?' in url else '?'}options={form.format(schema)}"


def fedi_run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fedi_run.engine.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def playbook(tmp_path: Path, directory: str, text: str = PLAYBOOK) -> Path:
    (tmp_path / directory).mkdir()
    path = tmp_path / directory / "playbook.toml"
    path.write_text(text)
    return path


def one_run(store: StateStore, deployment: str = "social") -> int:
    run_id = store.begin_run(deployment, "run", ["tasks.noop"], ["target"], False, ["fedi-run"])
    store.handle(RunStarted(run_id, deployment, "run", ("tasks.noop",), ("target",), False, 1.0))
    store.handle(RunFinished(run_id, 0, 1.0, False))
    return run_id


def tables(postgres, database: str) -> set[tuple[str, str]]:
    rows = postgres.admin(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
        database,
    )
    return set(rows)


def held(postgres, database: str, key: int) -> bool:
    """Whether a session holds the advisory lock ``key`` in ``database``."""
    return (
        postgres.admin(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND d.datname = %s "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s",
            params=(database, (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
        )[0][0]
        == 1
    )


# -- which schema a URL names ---------------------------------------------------------------


@pytest.mark.parametrize(
    "options, schema",
    [
        ("-csearch_path%3Dfedi_a", "fedi_a"),
        ("-c%20search_path%3Dfedi_a", "fedi_a"),
        ("-c%20%20search_path%3Dfedi_a%20", "fedi_a"),
        ("--search_path%3Dfedi_a", "fedi_a"),
        ("--search-path%3DFedi_A", "fedi_a"),  # '-' is '_', an unquoted name is lower-cased
        ("-c%20statement_timeout%3D5000%20-c%20search_path%3Dfedi_a,public", "fedi_a"),
        ("-csearch_path%3Dold%20-c%20search_path%3Dfedi_a", "fedi_a"),  # the last one counts
        ("-c%20statement_timeout%3D5000", None),
    ],
)
def test_the_schema_of_a_url_is_the_one_the_server_uses(postgres, pg_url, options, schema):
    """What StateLocation.schema reads is what libpq and the server make of it: the state's
    tables land in that schema (or, with no search_path, in public)."""
    url = f"{pg_url}?options={options}"
    location = locate_state(url, None)
    assert location.schema == schema
    with StateStore.open(url) as store:
        one_run(store)
    with psycopg.connect(url) as db:  # the server's own reading of the URL
        assert db.execute("SELECT current_schema()").fetchone()[0] == (schema or "public")
    database = pg_url.rsplit("/", 1)[1]
    assert ((schema or "public"), "runs") in tables(postgres, database)
    assert {s for s, _ in tables(postgres, database)} == {schema or "public"}


def test_identity_and_lock_key_follow_the_schema():
    base = "postgresql://alice:pw@db.example:5433/panel"
    a = locate_state(in_schema(base, "fedi_a"), None)
    same = locate_state(
        in_schema(
            "postgresql://bob@db.example:5433/panel?sslmode=require", "FEDI_A", "--search_path%3D{}"
        ),
        None,
    )
    b = locate_state(in_schema(base, "fedi_b"), None)
    plain = locate_state(base, None)
    assert a.identity == "postgresql://db.example:5433/panel?schema=fedi_a" == same.identity
    assert b.identity == "postgresql://db.example:5433/panel?schema=fedi_b"
    assert plain.identity == "postgresql://db.example:5433/panel" and plain.schema is None
    assert "pw" not in a.shown + a.identity + repr(a)
    # a password in the query goes; the options stay exactly as libpq reads them
    query = "?options=-c+x%3D1%20-csearch_path%3Dfedi_a&pass%77ord=pw&sslmode=require"
    assert redact_url(f"postgresql://h/db{query}") == (
        "postgresql://h/db?options=-c+x%3D1%20-csearch_path%3Dfedi_a&sslmode=require"
    )
    assert locate_state("/tmp/x/state.db", None).schema is None
    # without a schema the key is the name's alone, as before; with one, (schema, name)
    assert lock_key("social") == lock_key("social", None)
    keys = {lock_key("social"), lock_key("social", "fedi_a"), lock_key("social", "fedi_b")}
    assert len(keys) == 3 and lock_key("social", "fedi_a") != lock_key("fedi_a", "social")


@pytest.mark.parametrize(
    "value",
    [
        "%22Fedi%20A%22",  # quoted: split by the server at the space
        "%22quoted%22",
        "$user",
        "1abc",
        "fedi-a",
        "a" * 64,
        "",
        ",public",
        "fedi%5C%20a",  # an escaped space
    ],
)
def test_a_schema_that_is_not_a_plain_name_is_refused(value):
    url = in_schema("postgresql://deployer:s3cret-word@127.0.0.1:1/fedi", value)
    with pytest.raises(StateError) as caught:
        locate_state(url, None)
    message = str(caught.value)
    assert caught.value.exit_status == 2 and "\n" not in message
    assert message.startswith("error: --state postgresql://deployer@127.0.0.1:1/fedi?options=")
    assert "is not a plain name; expected options=-csearch_path%3DNAME" in message
    assert "s3cret-word" not in message
    with pytest.raises(StateError):
        StateLocation(url=url)


def test_a_long_plain_name_is_taken():
    assert locate_state(in_schema("postgresql://h/db", "a" * 63), None).schema == "a" * 63


# -- one name, two schemas, one database -----------------------------------------------------


def test_one_name_in_two_schemas_keeps_two_states(postgres, pg_url, pg_database):
    a_url, b_url = in_schema(pg_url, "fedi_a"), in_schema(pg_url, "fedi_b")
    with StateStore.open(a_url) as a, StateStore.open(b_url) as b:
        a_runs = [one_run(a), one_run(a)]
        b_runs = [one_run(b)]
        assert [r.id for r in a.runs("social")] == a_runs[::-1]
        assert [r.id for r in b.runs("social")] == b_runs
        a.record_applied("social", "a.example.org", a_runs[-1])
        assert a.applied_domain("social") == ("a.example.org", a_runs[-1])
        assert b.applied_domain("social") is None
        with a.lock("social", ["fedi-run", "run", "a"]), b.lock("social", ["fedi-run", "b"]):
            assert held(postgres, pg_database, lock_key("social", "fedi_a"))
            assert held(postgres, pg_database, lock_key("social", "fedi_b"))
            assert not held(postgres, pg_database, lock_key("social"))
            holders = {
                schema: postgres.admin(f"SELECT command FROM {schema}.lock_holders", pg_database)
                for schema in ("fedi_a", "fedi_b")
            }
            assert holders == {
                "fedi_a": [('["fedi-run", "run", "a"]',)],
                "fedi_b": [('["fedi-run", "b"]',)],
            }
    assert {s for s, _ in tables(postgres, pg_database)} == {"fedi_a", "fedi_b"}
    assert read_history(a_url, "social") == {} and read_history(b_url, "social") == {}


HOLDER = """
import sys, time
from fedi_run.engine.report.state import StateStore
store = StateStore.open(sys.argv[1])
with store.lock("social", ["fedi-run", "run", "holder.toml"]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_one_schema_twice_contends(pg_url):
    """Another process holds 'social' in schema fedi_a: fedi_a's lock is refused naming it
    (exit status 3), fedi_b's — and the database's own, without a schema — are free."""
    a_url = in_schema(pg_url, "fedi_a")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, a_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with StateStore.open(a_url) as again:
            with pytest.raises(LockHeld) as caught:
                with again.lock("social"):
                    pytest.fail("the lock of one schema was taken twice")
        error = caught.value
        assert error.exit_status == 3 and error.pid == holder.pid
        assert error.command == "fedi-run run holder.toml"
        assert f"advisory lock {lock_key('social', 'fedi_a')}" in str(error)
        assert "search_path%3Dfedi_a" in str(error)
        for other in (in_schema(pg_url, "fedi_b"), pg_url):
            with StateStore.open(other) as store, store.lock("social"):
                pass
    finally:
        holder.kill()
        holder.wait()


# -- the schema created on first use, or not ------------------------------------------------


def test_the_schema_is_created_on_first_use_and_read_only_reads_create_nothing(
    postgres, pg_url, pg_database
):
    url = in_schema(pg_url, "fedi_new")
    owned = "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'fedi_new'"
    assert read_history(url, "social") == {}  # read only: nothing made
    assert postgres.admin(owned, pg_database) == []
    # a state of fedi-run's in public must not be taken for the new schema's
    with StateStore.open(pg_url) as public:
        one_run(public)
    with StateStore.open(f"{url},public") as store:
        assert store.runs("social") == []
        one_run(store)
    assert postgres.admin(owned, pg_database) == [("deployer",)]
    assert ("fedi_new", "schema_version") in tables(postgres, pg_database)
    with StateStore.open(url) as store:  # opened again: found, not made again
        assert len(store.runs("social")) == 1


_numbers = itertools.count(1)


@pytest.fixture
def foreign_database(postgres) -> str:
    """A database the deployer may connect to, not create schemas in (the superuser's)."""
    name = f"foreign_{os.getpid()}_{next(_numbers)}"
    postgres.admin(f"CREATE DATABASE {name}")
    return name


def test_a_schema_the_user_may_not_create_is_one_clear_error(
    postgres, foreign_database, pg_password, tmp_path
):
    url = in_schema(postgres.url(foreign_database), "fedi_denied")
    with pytest.raises(StateError) as caught:
        StateStore.open(url)
    message = str(caught.value)
    assert caught.value.exit_status == 2 and "\n" not in message
    assert message.startswith(
        f"error: cannot create the schema fedi_denied of the PostgreSQL "
        f"state {url}: permission denied for database {foreign_database}."
    )
    assert "CREATE SCHEMA fedi_denied AUTHORIZATION deployer" in message

    with_password = url.replace("deployer@", f"deployer:{pg_password}@")
    done = fedi_run("history", playbook(tmp_path, "d"), "--state", with_password)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: cannot create the schema fedi_denied")
    assert pg_password not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

    # created for the deployer by someone who may: used as it is (no right to create needed)
    postgres.admin("CREATE SCHEMA fedi_denied AUTHORIZATION deployer", foreign_database)
    with StateStore.open(url) as store:
        one_run(store)
    assert ("fedi_denied", "runs") in tables(postgres, foreign_database)


# -- through the command line --------------------------------------------------------------


@pytest.mark.parametrize("command", ["history", "plan"])
def test_a_bad_schema_is_refused_by_the_command_line(pg_url, pg_password, tmp_path, command):
    with_password = pg_url.replace("deployer@", f"deployer:{pg_password}@")
    url = in_schema(with_password, "%22My%20Schema%22")
    done = fedi_run(command, playbook(tmp_path, "d"), "--state", url)
    assert done.returncode == 2, (done.stdout, done.stderr)
    message = done.stderr.strip()
    assert message.startswith(f"error: --state {pg_url}?options=-csearch_path%3D%22My%20")
    assert "is not a plain name" in message and len(message.splitlines()) == 1
    assert pg_password not in done.stdout + done.stderr and "Traceback" not in message


def test_history_in_two_schemas_through_the_command_line(
    postgres, pg_url, pg_database, pg_password, tmp_path
):
    """The password and the options in one URL: history works, shows the URL without the
    password, and each schema's history is its own."""
    with_password = pg_url.replace("deployer@", f"deployer:{pg_password}@")
    a_url, b_url = in_schema(with_password, "fedi_a"), in_schema(with_password, "fedi_b")
    with StateStore.open(a_url) as store:
        run_id = one_run(store)
    path = playbook(tmp_path, "d")
    shown = fedi_run("history", path, "--state", a_url, "--json")
    assert shown.returncode == 0, shown.stderr
    assert [r["id"] for r in json.loads(shown.stdout)] == [run_id]
    text = fedi_run("history", path, "--state", b_url)
    assert text.returncode == 0, text.stderr
    assert text.stdout.strip() == (
        f"no runs of deployment 'social' recorded in {in_schema(pg_url, 'fedi_b')}"
    )
    planned = fedi_run("plan", path, "--state", a_url)
    assert planned.returncode == 0, planned.stderr
    for done in (shown, text, planned):
        assert pg_password not in done.stdout + done.stderr


# -- two runs of one name at once, in two schemas (the lab) ---------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    factory = LabFactory(lambda: tmp_path_factory.mktemp("fedi-lab"))
    try:
        yield factory(["s1"])
    finally:
        factory.close()


def _started(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fedi_run.engine.cli.main", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _wait_for_task(process: subprocess.Popen, task: str) -> None:
    for line in process.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "task_started" and event.get("id") == task:
            return
    raise AssertionError(f"the run ended before {task} started: {process.stderr.read()}")


@pytest.mark.lab
def test_two_runs_of_one_name_in_two_schemas_run_at_once(lab, pg_url, tmp_path):
    """Two operators' deployments both named 'social', on one host and one database: they
    run at the same time, each in its schema; a second run in the same schema exits 3."""
    host = lab.hosts["s1"]
    text = (
        '[deployment]\nname = "social"\ndomain = "social.example.org"\n'
        f'[hosts.s1]\naddress = "{host.address}"\nport = {host.port}\nuser = "root"\n'
        f'host_key = "{host.host_key}"\nidentity = "{lab.identity}"\n'
        '[tasks.hold]\nhost = "s1"\nrun = "sleep 4"\n'
    )
    a_url, b_url = in_schema(pg_url, "fedi_a"), in_schema(pg_url, "fedi_b")
    one, two, three = (playbook(tmp_path, name, text) for name in ("one", "two", "three"))
    first = _started("run", one, "--no-apply", "--json", "--state", a_url)
    second = None
    try:
        _wait_for_task(first, "tasks.hold")
        second = _started("run", two, "--no-apply", "--json", "--state", b_url)
        _wait_for_task(second, "tasks.hold")  # while the first still runs its task
        assert first.poll() is None
        third = fedi_run("run", three, "--no-apply", "--json", "--state", a_url)
        assert third.returncode == 3, third.stderr
        assert "another run of deployment 'social' is in progress" in third.stderr
        assert f"pid {first.pid}" in third.stderr and "Traceback" not in third.stderr
        assert f"advisory lock {lock_key('social', 'fedi_a')}" in third.stderr
    finally:
        first.communicate(timeout=60)
        if second is not None:
            second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0
    for url in (a_url, b_url):
        with StateStore.open(url) as store:
            assert [r.exit_status for r in store.runs("social")] == [0]
