"""A real PostgreSQL for the PostgreSQL state's tests: Debian's ``postgresql`` server, started
once per session as a plain process on loopback — as the lab starts sshd — and ended by its pid.

The cluster is made by ``initdb`` in a temporary directory owned by the ``postgres`` system user
(initdb refuses root): local (Unix socket) connections are trusted, for the fixture's own
administration; TCP connections on 127.0.0.1 need a password (scram-sha-256). The role the
tests deploy as, ``deployer``, has one, found by libpq in the file ``PGPASSFILE`` names — set
for the session, so that no URL carries a password. Each test that asks for ``pg_url`` gets a
database of its own. The binaries missing, or the server not starting, fail the tests loudly
(never a skip).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
ROLE = "deployer"
PASSWORD = "pg-state-test-password-7b1e"


@dataclass
class Postgres:
    """The running server: its port on 127.0.0.1, socket directory and postmaster process."""

    port: int
    socket_dir: Path
    process: subprocess.Popen
    data_dir: Path

    def url(self, database: str, user: str = ROLE) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str, database: str = "postgres", params: tuple = ()) -> list[tuple]:
        """Run ``sql`` as the superuser over the Unix socket; its rows (if any)."""
        import psycopg

        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user="postgres",
            dbname=database,
            autocommit=True,
        ) as db:
            cursor = db.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start ``argv`` as the postgres system user (the process itself: its pid is ours)."""
    return subprocess.Popen(argv, user="postgres", group="postgres", extra_groups=[], **kwargs)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if not PG_BINARIES:
        pytest.fail(
            "the PostgreSQL state's tests need Debian's postgresql package "
            "(/usr/lib/postgresql/*/bin/postgres): apt-get install postgresql",
            pytrace=False,
        )
    binaries = PG_BINARIES[-1].parent
    base = Path(tempfile.mkdtemp(prefix="fedi-run-pg."))
    shutil.chown(base, "postgres", "postgres")
    data, sockets = base / "data", base / "sockets"
    initdb = _as_postgres(
        [
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = initdb.communicate(timeout=120)[0]
    if initdb.returncode != 0:
        pytest.fail(f"initdb failed: {output.decode(errors='replace')}", pytrace=False)
    sockets.mkdir(mode=0o700)
    shutil.chown(sockets, "postgres", "postgres")
    port = _free_port()
    log = open(base / "postgres.log", "wb")  # noqa: SIM115 - open for the server's lifetime
    server = _as_postgres(
        [
            str(binaries / "postgres"),
            "-D",
            str(data),
            "-k",
            str(sockets),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=60",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    instance = Postgres(port, sockets, server, data)
    try:
        _wait_ready(instance, base / "postgres.log")
        instance.admin(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        passfile = base / "pgpass"
        passfile.write_text(f"127.0.0.1:{port}:*:{ROLE}:{PASSWORD}\n")
        passfile.chmod(0o600)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PGPASSFILE", str(passfile))
            patch.delenv("PGPASSWORD", raising=False)
            yield instance
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown: ends the clients' sessions
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.send_signal(signal.SIGQUIT)
            server.wait(timeout=30)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _wait_ready(instance: Postgres, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        if instance.process.poll() is not None:
            pytest.fail(f"postgres exited: {log.read_text(errors='replace')}", pytrace=False)
        try:
            instance.admin("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                pytest.fail(f"postgres did not start: {log.read_text()}", pytrace=False)
            time.sleep(0.1)


_numbers = itertools.count(1)


@pytest.fixture
def pg_database(postgres) -> str:
    """A new, empty database owned by the deployer role; its name."""
    name = f"state_{os.getpid()}_{next(_numbers)}"
    postgres.admin(f"CREATE DATABASE {name} OWNER {ROLE}")
    return name


@pytest.fixture
def pg_url(postgres, pg_database) -> str:
    """``postgresql://deployer@127.0.0.1:PORT/<a new database>`` (its password in PGPASSFILE)."""
    return postgres.url(pg_database)


@pytest.fixture
def pg_password() -> str:
    """The deployer role's password (tests that put it in a URL check it is never shown)."""
    return PASSWORD
