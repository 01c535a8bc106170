"""A PostgreSQL and a Redis of the lab's own, for what needs them besides the target hosts: the
engine's PostgreSQL state, the panel's database and broker — in tests and benchmarks.

Each is Debian's server (``postgresql``, ``redis-server``) started as a plain process on
127.0.0.1, in a new directory of its own, and ended by its pid when the ``with`` block ends, as
the lab starts and ends sshd. A package that is missing, or a server that does not start, is a
:class:`~fedi_run.engine.errors.LabError` naming it (the tests' fixtures fail on it, never
skip). Nothing here is used by a deployment.

PostgreSQL: the cluster is made by ``initdb`` as the ``postgres`` system user (initdb refuses
root) in a directory under /tmp that user owns; Unix-socket connections are trusted, for
:meth:`PostgresServer.admin`; TCP connections on 127.0.0.1 are trusted too, or, with
``password_auth``, need a password (scram-sha-256).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fedi_run.engine.errors import LabError

REDIS = Path("/usr/bin/redis-server")
START_TIMEOUT = 60.0
"""Seconds a server may take to answer after it started."""


def postgres_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``postgres``, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return found[-1].parent if found else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def end(process: subprocess.Popen, signum: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Send ``process`` (one started here) ``signum``, then SIGKILL if it has not ended within
    ``timeout`` seconds; wait for it."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL: its port on 127.0.0.1, its socket directory, its directory."""

    port: int
    socket_dir: Path
    base: Path
    process: subprocess.Popen

    def url(self, database: str, user: str = "postgres") -> str:
        """``postgresql://USER@127.0.0.1:PORT/DATABASE`` (no password in it)."""
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


def _as_postgres(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start ``argv`` as the postgres system user (the process itself: its pid is ours)."""
    return subprocess.Popen(argv, user="postgres", group="postgres", extra_groups=[], **kwargs)


@contextmanager
def postgres_server(password_auth: bool = False) -> Iterator[PostgresServer]:
    """A new PostgreSQL cluster, running for the ``with`` block (see the module docstring)."""
    binaries = postgres_binaries()
    if binaries is None:
        raise LabError(
            "error: no PostgreSQL server here (/usr/lib/postgresql/*/bin/postgres): "
            "apt-get install postgresql"
        )
    base = Path(tempfile.mkdtemp(prefix="fedi-run-postgres."))
    try:
        shutil.chown(base, "postgres", "postgres")
        data, sockets = base / "data", base / "sockets"
        initdb = _as_postgres(
            [
                str(binaries / "initdb"),
                *("-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-sync"),
                "--auth-local=trust",
                f"--auth-host={'scram-sha-256' if password_auth else 'trust'}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output = initdb.communicate(timeout=120)[0]
        if initdb.returncode != 0:
            raise LabError(f"error: initdb failed: {output.decode(errors='replace')}")
        sockets.mkdir(mode=0o700)
        shutil.chown(sockets, "postgres", "postgres")
        port, log_path = free_port(), base / "postgres.log"
        with open(log_path, "wb") as log:
            process = _as_postgres(
                [
                    str(binaries / "postgres"),
                    *("-D", str(data), "-k", str(sockets), "-p", str(port)),
                    *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
                    *("-c", "max_connections=100"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = PostgresServer(port, sockets, base, process)
        try:
            _wait_ready(server, log_path)
            yield server
        finally:
            end(process, signal.SIGINT)  # a fast shutdown: ends the clients' sessions
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _wait_ready(server: PostgresServer, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise LabError(f"error: postgres exited: {log.read_text(errors='replace')}")
        try:
            server.admin("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise LabError(
                    f"error: postgres did not start: {log.read_text(errors='replace')}"
                ) from None
            time.sleep(0.1)


@dataclass(frozen=True)
class RedisServer:
    """A running Redis on 127.0.0.1, nothing saved."""

    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A new Redis, running for the ``with`` block (see the module docstring)."""
    if not REDIS.exists():
        raise LabError(f"error: no Redis server here ({REDIS}): apt-get install redis-server")
    base = Path(tempfile.mkdtemp(prefix="fedi-run-redis."))
    try:
        port, log_path = free_port(), base / "redis.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    str(REDIS),
                    *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(base)),
                    *("--save", "", "--appendonly", "no"),  # nothing kept on disk
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=base,
            )
        try:
            _wait_listening(port, process, log_path)
            yield RedisServer(port, process)
        finally:
            end(process)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LabError(f"error: redis-server exited: {log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise LabError(f"error: redis-server is not listening on 127.0.0.1:{port}")
