"""A real PostgreSQL for the PostgreSQL state's tests: Debian's ``postgresql`` server, started
once per session as a plain process on loopback — as the lab starts sshd — and ended by its pid.

The cluster is the lab's (:func:`fedi_run.engine.lab.servers.postgres_server`): Unix-socket
connections trusted, for the fixture's own administration; TCP connections on 127.0.0.1 need a
password (scram-sha-256). The role the
tests deploy as, ``deployer``, has one, found by libpq in the file ``PGPASSFILE`` names — set
for the session, so that no URL carries a password. Each test that asks for ``pg_url`` gets a
database of its own. The binaries missing, or the server not starting, fail the tests loudly
(never a skip).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from fedi_run.engine.errors import LabError
from fedi_run.engine.lab.servers import PostgresServer, postgres_server

ROLE = "deployer"
PASSWORD = "pg-state-test-password-7b1e"


class Postgres:
    """The running server (:class:`PostgresServer`), its URLs naming the deployer role."""

    def __init__(self, server: PostgresServer):
        self.server = server
        self.port = server.port

    def url(self, database: str, user: str = ROLE) -> str:
        return self.server.url(database, user)

    def admin(self, sql: str, database: str = "postgres", params: tuple = ()) -> list[tuple]:
        """Run ``sql`` as the superuser over the Unix socket; its rows (if any)."""
        return self.server.admin(sql, database, params)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Iterator[Postgres]:
    with ExitStack() as stack:
        try:
            server = stack.enter_context(postgres_server(password_auth=True))
        except LabError as error:
            pytest.fail(f"the PostgreSQL state's tests need a PostgreSQL: {error}", pytrace=False)
        server.admin(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        passfile = tmp_path_factory.mktemp("pgpass") / "pgpass"
        passfile.write_text(f"127.0.0.1:{server.port}:*:{ROLE}:{PASSWORD}\n")
        passfile.chmod(0o600)
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("PGPASSFILE", str(passfile))
        patch.delenv("PGPASSWORD", raising=False)
        yield Postgres(server)


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
