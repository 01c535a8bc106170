"""The lab's PostgreSQL and Redis (:mod:`fedi_run.engine.lab.servers`, the same the panel's
provider tests use), as the benchmark wants them: a database ``panel`` owned by the role
``panel``, and each server's URL. A missing Debian package is a ``LabError`` naming it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fedi_run.engine.lab.servers import end, free_port, postgres_server, redis_server

__all__ = ["end", "free_port", "postgres", "redis"]


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL of its own for the ``with`` block; its URL (no password: trusted)."""
    with postgres_server() as server:
        server.admin("CREATE ROLE panel LOGIN SUPERUSER")
        server.admin("CREATE DATABASE panel OWNER panel")
        yield server.url("panel", "panel")


@contextmanager
def redis() -> Iterator[str]:
    """A Redis of its own for the ``with`` block, nothing saved; its URL."""
    with redis_server() as server:
        yield server.url
