"""The PostgreSQL backend of the state (``engine.report.state``): ``--state postgresql://…``.

Contract:

* :meth:`PostgresState.open` connects (psycopg 3, the ``postgresql`` extra; without it a
  :class:`StateError` says how to install it) and brings the schema to
  ``engine.report.state_schema``'s version — the same migrations as SQLite's, applied in one
  transaction under a transaction-level advisory lock, so that two deployers opening a new
  database at once do not both create it; the version is the row of ``schema_version``. A URL
  naming a schema (``StateLocation.schema``) keeps the tables in that schema, created (under
  the same lock) when it is not there yet; one the user may not create is a StateError. A URL
  that cannot be used — malformed, server unreachable, authentication refused, a schema newer
  than this fedi-run's — is a :class:`StateError` (exit status 2) naming the URL without its
  password (``StateLocation.shown``) and the reason, before any host is contacted. The
  password comes from libpq's usual places (``PGPASSWORD``, ``PGPASSFILE`` / ``~/.pgpass``);
  one in the URL works but is never shown.
* The data connection is in autocommit mode: a single write is committed at once (a task's
  start, seen by ``history`` on another machine), several in a :meth:`transaction` together.
* :meth:`lock` holds the deployment's lock: ``pg_try_advisory_lock`` of :func:`lock_key` (of
  the deployment's name, and the state's schema when the URL names one) on a second
  connection of its own, kept for the ``with`` block. The holder (this session, pid,
  host, user, start time, command line) is written to ``lock_holders`` while holding it; a
  deployer that does not get the lock reads the row *of the session that holds it*
  (``pg_locks``) and raises :class:`LockHeld` (exit status 3) naming it — a row left by a
  crashed holder names a session that holds nothing, and is overwritten by the next holder.
  A crashed deployer's connection ends and the server releases its lock.
* :meth:`check_lock`, called by the store after each write it commits, fails when the lock's
  connection is gone (the server restarted, the network broke): the lock may be someone
  else's now, and the store stops the run (:attr:`StateStore.lock_lost`). Between two writes
  — during a long task — a lost lock is not noticed.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache

from fedi_run.engine.errors import LockHeld, StateError
from fedi_run.engine.report.state_location import StateLocation, scrubbed
from fedi_run.engine.report.state_schema import SCHEMA_VERSION, migration_statements

INSTALL = "pip install 'fedi-run[postgresql]' (or: pip install 'psycopg[binary]>=3.1')"
OTHER_STATE = "or pass --state FILE to keep the state in an SQLite file"
CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "application_name": "fedi-run",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}
"""libpq parameters fedi-run sets unless the URL sets them: a server that does not answer is an
error within 10 s, and a connection that broke is noticed within about a minute."""
_HOLDER_WAIT = 2.0
"""Seconds a deployer that did not get the lock waits for its holder's record to appear."""


def lock_key(name: str, schema: str | None = None) -> int:
    """The advisory lock key (a signed 64-bit integer) of deployment ``name`` — in ``schema``
    when the state names one (deployments of one name in two schemas of a database do not
    contend; without a schema, the key of the name alone): the first 8 bytes of a SHA-256 in
    fedi-run's own namespace, the same on every machine."""
    if schema is None:
        text = b"fedi-run deployment lock\0" + name.encode()
    else:
        text = b"fedi-run deployment lock in schema\0" + schema.encode() + b"\0" + name.encode()
    digest = hashlib.sha256(text).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


MIGRATION_KEY = lock_key("\0schema migration")
"""The transaction-level advisory lock the schema's migrations are applied under."""


def _psycopg(location: StateLocation):
    try:
        import psycopg
    except ImportError:
        raise StateError(
            f"error: --state {location.shown}: keeping the state in PostgreSQL needs the "
            f"psycopg package, which is not installed: {INSTALL}; {OTHER_STATE}"
        ) from None
    return psycopg


def _reason(error: BaseException, location: StateLocation) -> str:
    """``error`` as one line, any password of the URL taken out."""
    text = " ".join(str(error).split()) or type(error).__name__
    return scrubbed(text, location.url or "")  # libpq may quote the URL


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else f"{text}."


def connect(location: StateLocation, what: str = "connect to"):
    """A new autocommit connection to ``location``'s database; StateError if it cannot."""
    psycopg = _psycopg(location)
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(location.url)
        extra = {k: v for k, v in CONNECT_DEFAULTS.items() if k not in given}
        return psycopg.connect(location.url, autocommit=True, **extra)
    except psycopg.Error as error:
        raise StateError(
            f"error: cannot {what} the PostgreSQL state {location.shown}: "
            f"{_sentence(_reason(error, location))} Check the URL, that the server is up and "
            "that it lets this user in (a password comes from PGPASSWORD or ~/.pgpass, not "
            f"the URL), {OTHER_STATE}"
        ) from None


@lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """The store's SQL with psycopg's ``%s`` placeholders instead of ``?``."""
    return sql.replace("%", "%%").replace("?", "%s")


def _values(params: Sequence) -> tuple:
    """Booleans as 0/1: the schema's flags are INTEGER columns in both backends."""
    return tuple(int(p) if isinstance(p, bool) else p for p in params)


class PostgresState:
    """One data connection, and while :meth:`lock` holds the lock, the lock's connection."""

    dialect = "postgresql"

    def __init__(self, location: StateLocation, connection, psycopg):
        self.location = location
        self.errors: tuple[type[Exception], ...] = (psycopg.Error,)
        self._db = connection
        self._lock_db = None

    @classmethod
    def open(cls, location: StateLocation) -> PostgresState:
        psycopg = _psycopg(location)
        db = connect(location)
        try:
            _migrate(db, location, psycopg)
        except BaseException:
            db.close()
            raise
        return cls(location, db, psycopg)

    # --- what the store asks ---------------------------------------------------------------

    def execute(self, sql: str, params: Sequence = ()):
        return self._db.execute(_placeholders(sql), _values(params))

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> None:
        with self._db.cursor() as cursor:
            cursor.executemany(_placeholders(sql), [_values(row) for row in rows])

    def insert_id(self, sql: str, params: Sequence) -> int:
        return int(self.execute(f"{sql} RETURNING id", params).fetchone()[0])

    def transaction(self):
        return self._db.transaction()

    def commit(self) -> None:
        """Nothing pending: every write outside a transaction is committed at once."""

    def check_lock(self) -> None:
        """Raise (a psycopg error) when the lock this store holds went with its connection."""
        if self._lock_db is not None:
            self._lock_db.execute("SELECT 1")

    def lost(self) -> bool:
        """Whether the data connection, or the connection holding the lock, broke."""
        return bool(self._db.broken or (self._lock_db is not None and self._lock_db.closed))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def lock(self, deployment: str, command: Sequence[str] = ()) -> Iterator[None]:
        """Hold ``deployment``'s advisory lock for the ``with`` block, or raise LockHeld."""
        key = lock_key(deployment, self.location.schema)
        where = f"{self.location.shown} (advisory lock {key})"
        session = connect(self.location, "connect (for the deployment's lock) to")
        try:
            holder = None
            deadline = time.monotonic() + _HOLDER_WAIT
            while True:
                try:
                    if session.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                        break
                    holder = _holder(self._db, deployment, key)
                except self.errors[0] as error:
                    raise StateError(
                        f"error: cannot take the lock of deployment '{deployment}' in the "
                        f"PostgreSQL state {self.location.shown}: {_reason(error, self.location)}"
                    ) from None
                if holder or time.monotonic() > deadline:
                    raise LockHeld(deployment, where, holder or {})
                time.sleep(0.05)  # no holder (it just ended), or its record not written yet
            self._record_holder(session, deployment, command)
            self._lock_db = session
            try:
                yield
            finally:
                self._lock_db = None
                try:
                    session.execute(
                        "DELETE FROM lock_holders WHERE deployment = %s AND "
                        "session = pg_backend_pid()",
                        (deployment,),
                    )
                    session.execute("SELECT pg_advisory_unlock(%s)", (key,))
                except self.errors[0]:
                    pass  # the connection is gone, and the lock with it
        finally:
            session.close()

    def _record_holder(self, session, deployment: str, command: Sequence[str]) -> None:
        try:
            session.execute(
                "INSERT INTO lock_holders (deployment, session, pid, host, user_name, "
                "started_at, command) VALUES (%s, pg_backend_pid(), %s, %s, %s, %s, %s) "
                "ON CONFLICT (deployment) DO UPDATE SET session = excluded.session, "
                "pid = excluded.pid, host = excluded.host, user_name = excluded.user_name, "
                "started_at = excluded.started_at, command = excluded.command",
                (
                    deployment,
                    os.getpid(),
                    socket.gethostname(),
                    _user(),
                    time.time(),
                    json.dumps(list(command)),
                ),
            )
        except self.errors[0] as error:
            session.close()
            raise StateError(
                f"error: cannot record the holder of deployment '{deployment}''s lock in the "
                f"PostgreSQL state {self.location.shown}: {_reason(error, self.location)}"
            ) from None


def _holder(db, deployment: str, key: int) -> dict | None:
    """Who holds the advisory lock ``key``: the holder's record (pid, host, user, started_at,
    command) when the session holding the lock wrote it, {} when it has not (yet); None when
    nobody holds the lock."""
    row = db.execute(
        "SELECT l.pid, h.pid, h.host, h.user_name, h.started_at, h.command FROM pg_locks l "
        "LEFT JOIN lock_holders h ON h.deployment = %s AND h.session = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s",
        (deployment, (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    ).fetchone()
    if row is None:
        return None
    session, pid, host, user, started_at, command = row
    if pid is None:
        return {}
    try:
        argv = json.loads(command)
    except ValueError:
        argv = None
    return {
        "pid": pid,
        "host": host,
        "user": user,
        "started_at": started_at,
        "command": argv,
        "session": session,
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _migrate(db, location: StateLocation, psycopg) -> None:
    """Bring the schema to SCHEMA_VERSION (StateError when it is newer, or cannot be made),
    creating the URL's schema first when it names one that is not there."""
    schema = location.schema
    try:
        version = _version(db, schema)
        if version < SCHEMA_VERSION:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_KEY,))
                if schema is not None:
                    _create_schema(db, location, psycopg)
                db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                version = _version(db, schema)  # another deployer may have migrated meanwhile
                if version < SCHEMA_VERSION:
                    for statement in migration_statements("postgresql", version):
                        db.execute(statement)
                    db.execute("DELETE FROM schema_version")
                    db.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))
    except psycopg.Error as error:
        raise StateError(
            f"error: cannot use the PostgreSQL state {location.shown}: "
            f"{_reason(error, location)}; give fedi-run a database where its user may create "
            f"tables, {OTHER_STATE}"
        ) from None
    if version > SCHEMA_VERSION:
        raise StateError(
            f"error: the PostgreSQL state {location.shown} was written by a newer fedi-run "
            f"(schema {version}, this one knows {SCHEMA_VERSION}); use that version, "
            f"{OTHER_STATE}"
        )


def _create_schema(db, location: StateLocation, psycopg) -> None:
    """``CREATE SCHEMA`` the URL's schema unless it is there (``IF NOT EXISTS`` alone would
    need the right to create schemas even then); StateError when the user may not."""
    schema = location.schema
    if db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
        return
    try:
        db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')  # a plain name (StateLocation)
    except psycopg.errors.InsufficientPrivilege as error:
        raise StateError(
            f"error: cannot create the schema {schema} of the PostgreSQL state "
            f"{location.shown}: {_sentence(_reason(error, location))} Create it once for "
            f"fedi-run's user (CREATE SCHEMA {schema} AUTHORIZATION {db.info.user}), or name "
            f"a schema it may use in the URL's options, {OTHER_STATE}"
        ) from None


def _version(db, schema: str | None = None) -> int:
    """The recorded version of the state's tables (those in ``schema`` when given, else
    where the search_path finds them); 0 when there are none."""
    table = f'"{schema}".schema_version' if schema else "schema_version"
    if db.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return 0
    return int(db.execute(f"SELECT COALESCE(MAX(version), 0) FROM {table}").fetchone()[0])


def read_postgresql_history(location: StateLocation, query: str, params: Sequence) -> list[tuple]:
    """The rows of ``query``, read only ([] when the database has no schema yet); StateError
    when the database cannot be reached."""
    psycopg = _psycopg(location)
    db = connect(location)
    try:
        if _version(db, location.schema) == 0:
            return []
        return db.execute(_placeholders(query), _values(params)).fetchall()
    except psycopg.Error as error:
        raise StateError(
            f"error: cannot read the PostgreSQL state {location.shown}: {_reason(error, location)}"
        ) from None
    finally:
        db.close()
