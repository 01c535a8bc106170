"""Faults on the deployer's side: its state directory not writable, its state database
deleted between runs."""

from __future__ import annotations

import sqlite3

import pytest
from fault_helpers import HEADER, Cli, fedi, recorded

pytestmark = pytest.mark.lab

TASKS = (
    HEADER
    + """
[tasks.config]
host = "f1"
file = { path = "/srv/config", content = "config\\n" }

[tasks.count]
host = "f2"
run = "echo ran >> /srv/count"
"""
)


def read_only(directory) -> tuple[str, ...]:
    """A prefix that runs a command with ``directory`` read-only (a read-only bind mount in a
    mount namespace of its own: refused even to root, and nothing changes on the machine)."""
    return (
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"',
        str(directory),
    )


def _untouched(lab) -> None:
    assert lab.run("f1", "test -e /srv/config").exit_status == 1
    assert lab.run("f2", "test -e /srv/count").exit_status == 1


@pytest.mark.reliability(
    "faults",
    "the deployer's state directory cannot be created (read-only file system)",
    "exit 2, one paragraph naming the directory and what to do (make it writable or --state "
    "FILE), no traceback; nothing changed on any host",
)
def test_state_directory_cannot_be_created(four, playbook):
    path = playbook(TASKS)
    result = Cli(
        "run", path, "-i", four.inventory_path, "--no-apply", prefix=read_only(path.parent)
    ).finish()
    assert result.exit_code == 2, result.stdout + result.stderr
    state_dir = path.parent / ".fedi-run"
    assert result.stderr == (
        f"error: cannot create the state directory {state_dir}: Read-only file system; make "
        f"{path.parent} a writable directory, or pass --state FILE to keep the run state "
        "elsewhere\n"
    )
    _untouched(four)


@pytest.mark.reliability(
    "faults",
    "the deployer's state directory not writable (read-only, with an earlier run's state)",
    "exit 2 naming the directory, no traceback, nothing changed on any host, the earlier "
    "state intact; run and --resume alike; once writable, --resume completes",
)
def test_state_directory_not_writable(four, playbook):
    path = playbook(TASKS)
    four.run(
        "f2", "mount --bind /srv /srv && mount -o remount,bind,ro /srv", check=True
    )  # count fails
    first = fedi("run", path, "-i", four.inventory_path, "--no-apply", "--json")
    assert first.exit_code == 1
    four.run("f1", "rm /srv/config", check=True)
    four.run("f2", "umount /srv", check=True)
    state_dir = path.parent / ".fedi-run"
    before = recorded(path)

    for extra in ((), ("--resume",)):
        result = Cli(
            "run",
            path,
            "-i",
            four.inventory_path,
            "--no-apply",
            *extra,
            prefix=read_only(state_dir),
        ).finish()
        assert result.exit_code == 2, result.stdout + result.stderr
        assert result.stderr.startswith(f"error: cannot write the state directory {state_dir}: ")
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
        _untouched(four)
    assert recorded(path) == before

    resumed = fedi("run", path, "-i", four.inventory_path, "--no-apply", "--json", "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert set(resumed.started()) == {"tasks.count", "nixops4.render"}
    assert four.run("f2", "cat /srv/count").stdout == "ran\n"


@pytest.mark.reliability(
    "faults",
    "the state database deleted between runs",
    "the next run starts afresh, exit 0: unchanged files ok, guarded commands skipped, secrets "
    "on the hosts kept, not regenerated; --resume without a state says 'nothing to resume' "
    "(exit 2, no traceback); history says no runs",
)
def test_state_database_deleted_between_runs(four, playbook):
    path = playbook(
        HEADER
        + """
[services.vault]
enable = true
host = "f1"

[tasks.config]
host = "f2"
file = { path = "/srv/config", content = "config\\n" }

[tasks.once]
host = "f3"
run = "echo ran >> /srv/count; touch /srv/once.done"
creates = "/srv/once.done"
"""
    )
    base = (
        "run",
        path,
        "-i",
        four.inventory_path,
        "--no-apply",
        "--json",
        "--plugin",
        "vault_service",
    )
    first = fedi(*base)
    assert first.exit_code == 0, first.stdout + first.stderr
    token = four.read_file("f1", "/var/lib/fedi-run/faults/secrets/vault/token")
    state_dir = path.parent / ".fedi-run"
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (state_dir / name).unlink(missing_ok=True)

    history = fedi("history", path)
    assert history.exit_code == 0 and "no runs of deployment 'faults'" in history.stdout
    resume = fedi(*base, "--resume")
    assert resume.exit_code == 2
    assert resume.stderr.startswith(
        "error: nothing to resume: no previous run of deployment 'faults' is recorded in "
    )
    assert "Traceback" not in resume.stderr

    again = fedi(*base)
    assert again.exit_code == 0, again.stdout + again.stderr
    statuses = again.statuses()
    assert statuses["tasks.config"] == "ok" and statuses["tasks.once"] == "ok"
    assert statuses["vault.secrets"] == "ok"  # the secrets on f1 are kept
    assert four.read_file("f1", "/var/lib/fedi-run/faults/secrets/vault/token") == token
    assert four.run("f3", "cat /srv/count").stdout == "ran\n"
    runs = sqlite3.connect(state_dir / "state.db").execute("SELECT id FROM runs").fetchall()
    assert runs == [(1,)]  # a new database, this run its first
