"""What a deployment keeps, without root or the lab: its secrets (recorded by path, guarded,
restored, generated anew only on purpose), its domain once applied, its one lock, the
confirmation of a teardown and what a teardown says it did, and the masking of the initial
user's password in every form — ``run_project`` and the CLI on the fake pool (tests/fakes),
whose hosts are this machine, the keeper plugin (tests/support/keeper_service.py) placing its
secrets under a ``tmp_path``."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes.pool import FakePool

from fedi_run.engine import run as run_module
from fedi_run.engine.cli.main import cli
from fedi_run.engine.errors import (
    DomainChanged,
    LockHeld,
    NotConfirmed,
    SecretUnknown,
)
from fedi_run.engine.execute.scheduler import ExecutionOptions
from fedi_run.engine.execute.secret_book import secret_names
from fedi_run.engine.project import load_project
from fedi_run.engine.report import locks
from fedi_run.engine.report.events import Status, TaskFinished
from fedi_run.engine.report.state import StateStore, default_state_path
from fedi_run.engine.run import RunRequest, run_project

STANDIN = Path(__file__).resolve().parent.parent / "standin"


class Events:
    """A sink keeping every event."""

    def __init__(self):
        self.events = []

    def handle(self, event):
        self.events.append(event)

    def close(self):
        pass

    def finished(self) -> dict[str, TaskFinished]:
        return {e.task_id: e for e in self.events if isinstance(e, TaskFinished)}

    def text(self) -> str:
        return repr(self.events)


@pytest.fixture
def pool(monkeypatch):
    """The fake pool, used by every ``run_project`` (and CLI run) of the test."""
    fake = FakePool()
    monkeypatch.setattr(run_module, "ConnectionPool", lambda *args, **kwargs: fake)
    return fake


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    """A lock directory of the test's own."""
    directory = tmp_path / "locks"
    monkeypatch.setenv("FEDI_RUN_LOCK_DIR", str(directory))
    return directory


class Keeper:
    """A deployment ``fake`` whose keeper service (on h1) keeps its secrets in ``secrets/``
    of ``tmp_path``; h2 has a file task of the operator's."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path
        self.secrets = tmp_path / "h1"
        self.path = tmp_path / "deploy" / "playbook.toml"
        self.path.parent.mkdir(exist_ok=True)

    def project(self, enable: bool = True, extra: str = "", domain="fake.example.org", **kw):
        self.path.write_text(
            f'[deployment]\nname = "fake"\ndomain = "{domain}"\n\n'
            '[hosts.h1]\naddress = "127.0.0.2"\n\n[hosts.h2]\naddress = "127.0.0.3"\n\n'
            f'[services.keeper]\nenable = {str(enable).lower()}\nhost = "h1"\n'
            f'directory = "{self.secrets}"\n\n'
            f'[tasks.other]\nhost = "h2"\nfile = {{ path = "{self.root}/other.out", '
            'content = "other\\n" }\n' + extra
        )
        return load_project(self.path, plugin_modules=["keeper_service"], apply=False, **kw)

    def read(self, name: str) -> bytes:
        return (self.secrets / name).read_bytes()

    def values(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.secrets.iterdir())}

    def store(self) -> StateStore:
        return StateStore.open(default_state_path(self.path))


@pytest.fixture
def keeper(tmp_path, pool, lock_dir):
    return Keeper(tmp_path)


def _run(project, sink=None, **request) -> int:
    sink = sink or Events()
    status = run_project(project, RunRequest(**request), [sink]).exit_status
    for event in sink.finished().values():  # shown when the test fails
        if event.status not in (Status.OK, Status.CHANGED):
            print(f"{event.task_id}: {event.status}: {event.message}")
    return status


# --- a secret is generated once and never silently replaced -----------------------------


@pytest.mark.reliability(
    "faults",
    "the state records the secrets a run placed",
    "paths only, per host, each marked generated (Secret, a Call's generates) or derived; no "
    "value in any state file; a teardown forgets what it removed",
)
def test_a_first_run_generates_every_secret_and_records_their_paths_only(keeper):
    assert _run(keeper.project()) == 0
    values = keeper.values()
    assert set(values) == {"token", "key", "pair-private", "pair-public", "copy"}
    with keeper.store() as store:
        placed = store.placed_secrets("fake")
    assert placed == {
        "h1": {
            f"{keeper.secrets}/token": True,
            f"{keeper.secrets}/key": True,
            f"{keeper.secrets}/pair-private": True,
            f"{keeper.secrets}/pair-public": False,
            f"{keeper.secrets}/copy": False,
        }
    }
    blobs = [p.read_bytes() for p in keeper.path.parent.joinpath(".fedi-run").rglob("*.db*")]
    assert blobs and not any(v in blob for v in values.values() for blob in blobs)


@pytest.mark.parametrize("how", ["missing", "empty"])
@pytest.mark.reliability(
    "faults",
    "a secret this deployment placed is {how} on its host",
    "exit 1 before that host's tasks: none of them runs, the failure names the secret, its "
    "path, the host, --restore-secret NAME=FILE and --rotate-secrets NAME (with what that "
    "breaks); nothing regenerated; the other hosts' tasks run; --check says the same",
)
def test_a_lost_secret_stops_its_hosts_tasks(keeper, pool, how):
    project = keeper.project()
    assert _run(project) == 0
    before = keeper.values()
    token = keeper.secrets / "token"
    token.chmod(0o600)
    if how == "missing":
        token.unlink()
    else:
        token.write_bytes(b"")
    for check in (True, False):
        sink = Events()
        calls = len(pool.calls)
        status = _run(project, sink, options=ExecutionOptions(check=check))
        assert status == 1
        finished = sink.finished()
        failure = finished["keeper.secrets"]
        assert failure.status == Status.FAILED
        message = failure.message
        assert f"the secret h1/token ({token}) is {how} on h1" in message
        assert "--restore-secret h1/token=FILE" in message
        assert "--rotate-secrets h1/token" in message
        assert "every keeper client must log in again" in message  # what rotating breaks
        assert "None of h1's tasks was run" in message
        assert {finished[t].status for t in ("keeper.copy", "keeper.show")} == {Status.SKIPPED}
        assert finished["tasks.other"].status in (Status.OK, Status.CHANGED)
        h1_scripts = [c for c in pool.calls[calls:] if c.host == "h1"]
        assert len(h1_scripts) == 1  # the check of the kept secrets, and nothing else
    assert not token.exists() if how == "missing" else token.read_bytes() == b""
    after = keeper.values()
    assert {k: v for k, v in after.items() if k != "token"} == {
        k: v for k, v in before.items() if k != "token"
    }


@pytest.mark.reliability(
    "faults",
    "--restore-secret NAME=FILE after a secret was lost",
    "the backup's exact bytes put back (a Secret, and a Call's generated key, its derived "
    "half derived again); the value masked in every event; warned before the run; the other "
    "secrets unchanged",
)
def test_restore_secret_puts_the_backup_back_exactly_and_masked(keeper, tmp_path):
    project = keeper.project()
    assert _run(project) == 0
    before = keeper.values()
    backup, pair_backup = tmp_path / "token.backup", tmp_path / "pair.backup"
    backup.write_bytes(before["token"])
    pair_backup.write_bytes(before["pair-private"])
    for name in ("token", "pair-private", "pair-public", "copy"):
        (keeper.secrets / name).chmod(0o600)
        (keeper.secrets / name).unlink()
    warnings, sink = [], Events()
    status = _run(
        project,
        sink,
        restore_secrets=(("h1/token", backup), ("pair-private", pair_backup)),
        warn=warnings.append,
    )
    assert status == 0, sink.text()
    assert keeper.values() == before
    assert [w.split(":")[0] for w in warnings] == ["warning"] * 2
    assert all("--restore-secret" in w for w in warnings)
    changes = sink.finished()["keeper.secrets"].changes
    assert f"secret {keeper.secrets}/token restored from its backup (mode 400)" in changes
    assert any("restored from its backup" in c and "pair-private" in c for c in changes)
    assert "token=********" in sink.finished()["keeper.show"].output
    for value in before.values():
        assert value.decode() not in sink.text()


@pytest.mark.reliability(
    "faults",
    "--rotate-secrets NAME (a path's end, a task id, all)",
    "exactly the named secrets generated anew (a Call's generated key too, its derived half "
    "with it), the others byte for byte the same; a warning of what each breaks before the "
    "run; a lost secret named so runs on",
)
def test_rotate_secrets_generates_only_what_it_names(keeper):
    project = keeper.project()
    assert _run(project) == 0
    first = keeper.values()
    warnings: list[str] = []
    assert _run(project, rotate_secrets=("h1/token",), warn=warnings.append) == 0
    second = keeper.values()
    assert second["token"] != first["token"] and second["copy"] == second["token"]
    assert {k: second[k] for k in ("key", "pair-private", "pair-public")} == {
        k: first[k] for k in ("key", "pair-private", "pair-public")
    }
    assert warnings == [
        f"warning: --rotate-secrets: the secret h1/token ({keeper.secrets}/token) is generated "
        "anew: every keeper client must log in again"
    ]
    assert _run(project, rotate_secrets=("pair-private",)) == 0
    third = keeper.values()
    assert third["pair-private"] != second["pair-private"]
    assert third["pair-public"] != second["pair-public"]
    assert {k: third[k] for k in ("token", "key")} == {k: second[k] for k in ("token", "key")}
    assert _run(project, rotate_secrets=("keeper.secrets",)) == 0  # a task id: all it makes
    fourth = keeper.values()
    assert all(fourth[k] != third[k] for k in ("token", "key", "pair-private"))
    (keeper.secrets / "key").chmod(0o600)
    (keeper.secrets / "key").unlink()
    assert _run(project) == 1  # lost, and guarded
    assert _run(project, rotate_secrets=("key",)) == 0  # on purpose
    assert keeper.read("key") and keeper.read("token") == fourth["token"]
    assert _run(project, rotate_secrets=("all",)) == 0
    assert all(keeper.read(k) != fourth[k] for k in ("token", "pair-private"))


@pytest.mark.parametrize(
    "request_",
    [
        {"rotate_secrets": ("nothing-of-that-name",)},
        {"rotate_secrets": ("h1",)},  # not a whole name's end
        {"restore_secrets": (("h1/token", Path("/nonexistent/backup")),)},
        {"restore_secrets": (("keeper.secrets", Path("/dev/null")),)},  # several
    ],
    ids=["unknown", "partial", "unreadable backup", "several"],
)
def test_a_name_that_names_no_single_secret_is_refused_before_any_host(keeper, pool, request_):
    project = keeper.project()
    with pytest.raises(SecretUnknown) as caught:
        run_project(project, RunRequest(**request_), [Events()])
    assert caught.value.exit_status == 2
    assert "h1/token" in str(caught.value) or "backup" in str(caught.value)
    assert pool.calls == []


def test_secret_names_are_the_shortest_distinct_ends():
    names = secret_names(
        [
            "/var/lib/fedi-run/d/secrets/app/secret",
            "/var/lib/fedi-run/d/secrets/garage/keys/app/secret",
            "/var/lib/fedi-run/d/secrets/app/s3/secret",
            "/var/lib/fedi-run/d/secrets/app/token",
        ]
    )
    assert names == {
        "/var/lib/fedi-run/d/secrets/app/secret": "secrets/app/secret",
        "/var/lib/fedi-run/d/secrets/garage/keys/app/secret": "keys/app/secret",
        "/var/lib/fedi-run/d/secrets/app/s3/secret": "s3/secret",
        "/var/lib/fedi-run/d/secrets/app/token": "app/token",
    }


def test_the_cli_takes_secret_names_repeated_or_comma_separated(keeper, tmp_path):
    project = keeper.project()  # writes the playbook
    assert _run(project) == 0
    first = keeper.values()
    backup = tmp_path / "key.backup"
    backup.write_bytes(b"restored-key-value-0123456789")
    runner = CliRunner()
    base = ["run", str(keeper.path), "--plugin", "keeper_service", "--no-apply", "--json"]
    result = runner.invoke(
        cli,
        [*base, "--rotate-secrets", "h1/token,pair-private", "--restore-secret", f"key={backup}"],
    )
    assert result.exit_code == 0, result.output
    second = keeper.values()
    assert second["token"] != first["token"] and second["pair-private"] != first["pair-private"]
    assert second["key"] == b"restored-key-value-0123456789"
    assert "warning: --rotate-secrets: the secret h1/token" in result.stderr
    assert "restored-key-value" not in result.stdout + result.stderr
    bare = runner.invoke(cli, [*base, "--rotate-secrets", "--json"])  # no name: not "all"
    assert bare.exit_code == 2 and keeper.values() == second
    odd = runner.invoke(cli, [*base, "--restore-secret", "key"])
    assert odd.exit_code == 2 and "expected NAME=FILE" in odd.stderr


@pytest.mark.reliability(
    "faults",
    "a teardown, then a run",
    "the teardown forgets the secrets it removed: the next run generates them anew as a "
    "first run does, without stopping",
)
def test_a_teardown_forgets_what_it_removed(keeper):
    project = keeper.project()
    assert _run(project) == 0
    assert _run(project, options=ExecutionOptions(kind="teardown"), yes=True) == 0
    assert not keeper.secrets.exists()
    with keeper.store() as store:
        assert store.placed_secrets("fake") == {}
    assert _run(project) == 0
    assert set(keeper.values()) == {"token", "key", "pair-private", "pair-public", "copy"}


# --- masking: the secrets of a service switched off, the password in all its forms ---------


@pytest.mark.reliability(
    "security",
    "--check --diff over the secret of a service switched off since",
    "the diff shows ******** where the old value was: the masker learns the secrets the state "
    "says this deployment placed, also of services no task places any more",
)
def test_a_diff_over_a_switched_off_secret_is_masked(keeper):
    assert _run(keeper.project()) == 0
    token = keeper.read("token").decode()
    over = (
        f'[tasks.over]\nhost = "h1"\nfile = {{ path = "{keeper.secrets}/token", '
        'content = "replaced\\n" }\n'
    )
    sink = Events()
    project = keeper.project(enable=False, extra=over)
    assert _run(project, sink, options=ExecutionOptions(check=True, diff=True)) == 0
    diff = sink.finished()["tasks.over"].diff
    assert "-********" in diff and "+replaced" in diff, diff
    assert token not in sink.text()


PASSWORD = 'Pa"ss\\wörd 42/+&?='


@pytest.mark.reliability(
    "security",
    "the initial user's password printed JSON-escaped, base64 and URL-encoded by an "
    "operator's task, in a partial run (--only) that does not place it",
    "******** in the events, JSON lines, JUnit and the output log: preflight reads the "
    "password once and masks it in every form",
)
def test_the_password_is_masked_in_every_form_in_a_partial_run(keeper, tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    p = str(password_file)
    read = f"open({p!r}).read().strip()"
    leak = (
        "[initial_user]\n"
        'username = "admin"\ndisplay_name = "Admin"\nemail = "admin@example.org"\n'
        f'password_file = "{p}"\n\n'
        '[tasks.leak]\nhost = "h2"\nrun = """\n'
        f'python3 -c "import json; print(json.dumps({read}))"\n'
        f"python3 -c \"import json; print(json.dumps({{'password': {read}}}))\"\n"
        'python3 -c "import base64; '
        f"print(base64.b64encode(b'admin:' + {read}.encode()).decode())\"\n"
        f'python3 -c "import urllib.parse as u; print(u.quote({read}), u.quote_plus({read}))"\n'
        "exit 3\n"
        '"""\n'
    )
    keeper.project(enable=False, extra=leak)
    junit = tmp_path / "report.xml"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(keeper.path),
            "--plugin",
            "keeper_service",
            "--no-apply",
            "--only",
            "tasks.leak",
            "--json",
            "--junit",
            str(junit),
        ],
    )
    assert result.exit_code == 1, result.output
    output = json.loads(
        next(line for line in result.stdout.splitlines() if '"task_finished"' in line)
    )["output"]
    assert output.count("********") >= 5, output
    logs = [p.read_text() for p in (keeper.path.parent / ".fedi-run" / "logs").rglob("*.log")]
    assert logs and "********" in logs[0]
    forms = {
        PASSWORD,
        json.dumps(PASSWORD)[1:-1],
        json.dumps(PASSWORD, ensure_ascii=False)[1:-1],
        urllib.parse.quote(PASSWORD),
        urllib.parse.quote_plus(PASSWORD),
        base64.b64encode(b"admin:" + PASSWORD.encode()).decode()[8:-4],
    }
    for text in [result.stdout, result.stderr, junit.read_text(), *logs]:
        for form in forms:
            assert form not in text, (form, text)


# --- the domain once applied ----------------------------------------------------------------


@pytest.fixture
def nixops4(monkeypatch, tmp_path):
    """The recording nixops4 stand-in on PATH."""
    monkeypatch.setenv("PATH", f"{STANDIN}:{os.environ['PATH']}")
    monkeypatch.setenv("NIXOPS4_STANDIN_LOG", str(tmp_path / "nixops4.log"))


@pytest.mark.reliability(
    "faults",
    "the domain changed after the deployment was applied",
    "exit 2 before any host, naming both domains and --change-domain (also with --no-apply "
    "and --check); 'applied' is the last run whose nixops4 apply succeeded, so before any "
    "apply there is no guard; --change-domain runs, and its apply records the new domain",
)
def test_a_domain_changed_after_an_apply_needs_change_domain(keeper, pool, nixops4):
    keeper.project(domain="first.example.org")
    assert _run(load_project(keeper.path, plugin_modules=["keeper_service"])) == 0
    with keeper.store() as store:
        assert store.applied_domain("fake")[0] == "first.example.org"
    moved = keeper.project(domain="second.example.org")
    calls = len(pool.calls)
    for options in (ExecutionOptions(), ExecutionOptions(check=True)):
        with pytest.raises(DomainChanged) as caught:
            run_project(moved, RunRequest(options=options), [Events()])
        assert caught.value.exit_status == 2
        text = str(caught.value)
        assert "first.example.org" in text and "second.example.org" in text
        assert "--change-domain" in text and "Nothing was changed" in text
    assert len(pool.calls) == calls
    assert _run(moved, change_domain=True) == 0  # --no-apply: nothing applied
    with keeper.store() as store:
        assert store.applied_domain("fake")[0] == "first.example.org"
    applied = load_project(keeper.path, plugin_modules=["keeper_service"])
    assert _run(applied, change_domain=True) == 0
    with keeper.store() as store:
        assert store.applied_domain("fake")[0] == "second.example.org"
    assert _run(applied) == 0


def test_without_an_apply_a_domain_may_change(keeper):
    assert _run(keeper.project(domain="first.example.org")) == 0  # --no-apply
    assert _run(keeper.project(domain="second.example.org")) == 0


# --- one lock per deployment ------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from fedi_run.engine.report.locks import deployment_lock
with deployment_lock("fake", Path(sys.argv[1]), ["fedi-run", "run", "elsewhere.toml"]):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.reliability(
    "faults",
    "the same deployment run with two --state files at once (in one process's view)",
    "exit 3 naming the deployment, the holder's pid and its command line; another deployment "
    "beside it runs; the lock lives in the machine's lock directory, not beside the state",
)
def test_one_lock_per_deployment_whatever_its_state_file(keeper, lock_dir, tmp_path):
    project = keeper.project()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(keeper.path.parent)],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(LockHeld) as caught:
            run_project(project, RunRequest(state_path=tmp_path / "other" / "state.db"), [])
        error = caught.value
        assert error.exit_status == 3 and error.pid == holder.pid
        assert "deployment 'fake'" in str(error) and f"pid {holder.pid}" in str(error)
        assert "command line: fedi-run run elsewhere.toml" in str(error)
        assert error.lock_path.parent == lock_dir
    finally:
        holder.kill()
        holder.wait()
    assert _run(project, state_path=tmp_path / "other" / "state.db") == 0


def test_the_lock_directory_falls_back_to_one_it_can_use(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    chosen = locks.lock_directory([blocked / "locks", tmp_path / "runtime" / "locks"])
    assert chosen == tmp_path / "runtime" / "locks" and oct(chosen.stat().st_mode)[-3:] == "700"
    assert locks.lock_file_name("site", tmp_path) != locks.lock_file_name("site", blocked)


# --- a teardown is confirmed, and says what it did ------------------------------------------


@pytest.mark.reliability(
    "bad input",
    "a teardown without a terminal and without --yes",
    "exit 2 saying to pass --yes; nothing changed on any host; --check needs no confirmation",
)
def test_a_teardown_needs_yes_without_a_terminal(keeper, pool):
    project = keeper.project()
    assert _run(project) == 0
    before = keeper.values()
    calls = len(pool.calls)
    with pytest.raises(NotConfirmed) as caught:
        run_project(project, RunRequest(options=ExecutionOptions(kind="teardown")), [])
    assert caught.value.exit_status == 2 and "--yes" in str(caught.value)
    result = CliRunner().invoke(
        cli, ["teardown", str(keeper.path), "--plugin", "keeper_service", "--no-apply"]
    )
    assert result.exit_code == 2 and "pass --yes" in result.stderr
    assert "Nothing was changed" in result.stderr
    assert len(pool.calls) == calls and keeper.values() == before
    check = CliRunner().invoke(
        cli, ["teardown", str(keeper.path), "--plugin", "keeper_service", "--no-apply", "--check"]
    )
    assert check.exit_code == 0, check.output
    assert keeper.values() == before


@pytest.mark.reliability(
    "faults",
    "a teardown's recap",
    "a task without an undo is not run and is listed 'left in place'; 'restored' is said only "
    "of a file put back, a file fedi-run created is 'removed (there was no original …)'",
)
def test_a_teardown_says_what_it_left_restored_and_removed(keeper, tmp_path):
    existing = tmp_path / "existing.conf"
    existing.write_text("the operator's\n")
    extra = (
        f'[tasks.over]\nhost = "h1"\nfile = {{ path = "{existing}", content = "ours\\n" }}\n\n'
        f'[tasks.fresh]\nhost = "h1"\nfile = {{ path = "{tmp_path}/fresh.conf", '
        'content = "new\\n" }\n\n'
        '[tasks.hello]\nhost = "h2"\nrun = "echo hello"\n'
    )
    keeper.project(enable=False, extra=extra)
    base = ["teardown", str(keeper.path), "--plugin", "keeper_service", "--no-apply", "--yes"]
    assert CliRunner().invoke(cli, [*base[:-1], "--json"]).exit_code == 2  # (not confirmed)
    assert _run(load_project(keeper.path, plugin_modules=["keeper_service"], apply=False)) == 0
    result = CliRunner().invoke(cli, [*base, "--json"])
    assert result.exit_code == 0, result.output
    finished = {
        e["id"]: e
        for e in map(json.loads, result.stdout.splitlines())
        if e.get("id") and e["event"] == "task_finished"
    }
    assert finished["tasks.over"]["changes"] == [f"restored {existing}"]
    assert finished["tasks.fresh"]["changes"] == [
        f"removed {tmp_path}/fresh.conf (there was no original to put back)"
    ]
    assert finished["tasks.hello"]["status"] == "ok"
    assert finished["tasks.hello"]["message"] == "left in place: this task has no undo"
    assert "tasks.hello" not in [
        e.get("id")
        for e in map(json.loads, result.stdout.splitlines())
        if e["event"] == "task_started"
    ]
    assert existing.read_text() == "the operator's\n" and not (tmp_path / "fresh.conf").exists()
    assert _run(load_project(keeper.path, plugin_modules=["keeper_service"], apply=False)) == 0
    shown = CliRunner().invoke(cli, base)
    assert shown.exit_code == 0
    assert "left in place (1, no undo): tasks.hello @h2" in shown.stderr
