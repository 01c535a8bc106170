"""A PostgreSQL 15 cluster and a Redis of their own, started as plain processes on loopback and
ended by their pid — the same few lines as tests/panel_workers/workers_helpers.py's fixtures,
as context managers for a script. A missing Debian package raises RuntimeError naming it."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS = Path("/usr/bin/redis-server")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, what: str, log: Path) -> None:
    """Until ``process`` listens on 127.0.0.1:``port`` (RuntimeError if it exits or 30 s pass)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} is not listening on 127.0.0.1:{port}:\n{log.read_text()}")


def end(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL: ``process`` (one this script started) ended by its pid."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster (trust on loopback only, fsync off), database ``panel``; yields
    its URL."""
    missing = [str(p) for p in (PG_BIN / "initdb", PG_BIN / "postgres") if not p.exists()]
    if missing:
        raise RuntimeError(f"missing {missing}: apt-get install postgresql")
    base = Path(tempfile.mkdtemp(prefix="fedi-run-bench-postgres-"))
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    for directory in (base, sockets):
        shutil.chown(directory, "postgres", "postgres")
    run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, str(PG_BIN / "initdb"), "-D", str(data), "-U", "panel", "--auth=trust"]
        + ["-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port, log = free_port(), base / "postgres.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*run_as, str(PG_BIN / "postgres"), "-D", str(data), "-k", str(sockets)]
            + ["-p", str(port), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(port, process, "postgres", log)
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    f"postgresql://panel@127.0.0.1:{port}/postgres", autocommit=True
                ) as db:
                    db.execute("CREATE DATABASE panel")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(log.read_text()) from None
                time.sleep(0.2)
        yield f"postgresql://panel@127.0.0.1:{port}/panel"
    finally:
        end(process)
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def redis() -> Iterator[str]:
    """A Redis on a free loopback port, nothing saved; yields its URL."""
    if not REDIS.exists():
        raise RuntimeError(f"missing {REDIS}: apt-get install redis-server")
    base = Path(tempfile.mkdtemp(prefix="fedi-run-bench-redis-"))
    port, log = free_port(), base / "redis.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(REDIS), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(base)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(port, process, "redis-server", log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        end(process)
        shutil.rmtree(base, ignore_errors=True)
