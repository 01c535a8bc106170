"""The SQLite backend of the state (``engine.report.state``): one file, the embedded default.

Contract: :meth:`SqliteState.open` creates the directory (0700), the file (0600) and the
schema (``engine.report.state_schema``, its version in ``PRAGMA user_version``) as needed —
WAL, ``synchronous=NORMAL``, foreign keys on — and raises :class:`StateError` naming the path
when it cannot. Writes are committed when the store says so (:meth:`SqliteState.commit`, or
the end of a :meth:`SqliteState.transaction`). :meth:`SqliteState.lock` takes a non-blocking
``flock`` on ``<db>.lock`` (0600) holding the holder's pid, host and start time, released on
exit or when the process dies. :func:`read_sqlite_history` reads without creating or writing.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fedi_run.engine.errors import STATE_ELSEWHERE, LockHeld, StateError
from fedi_run.engine.private_files import make_private_dirs
from fedi_run.engine.report.state_schema import SCHEMA_VERSION, migration_statements

_log = logging.getLogger(__name__)


class SqliteState:
    """One SQLite connection, usable from several threads (the store serialises calls)."""

    dialect = "sqlite"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, path: Path, connection: sqlite3.Connection):
        self.path = path
        self._db = connection

    @property
    def lock_path(self) -> Path:
        """``<db>.lock``: the file :meth:`lock` flocks."""
        return self.path.with_name(self.path.name + ".lock")

    @classmethod
    def open(cls, path: Path) -> SqliteState:
        """Open (creating the directory, file and schema as needed) the database at ``path``."""
        path = Path(path).absolute()
        _make_private_dirs(path.parent)
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise StateError.cannot(
                "write the state directory",
                path.parent,
                PermissionError(13, "Permission denied"),
                f"make it writable, or {STATE_ELSEWHERE}",
            )
        if not path.exists():
            for suffix in ("-wal", "-shm", "-journal"):  # orphans of a deleted database
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            os.close(_open_private(path, os.O_WRONLY, "create the state database"))
        try:
            db = sqlite3.connect(path, check_same_thread=False, timeout=10)
        except sqlite3.Error as error:
            raise StateError.cannot("open the state database", path, error) from None
        try:
            _prepare(db, path)
        except BaseException:
            db.close()
            raise
        return cls(path, db)

    # --- what the store asks ---------------------------------------------------------------

    def execute(self, sql: str, params: Sequence = ()):
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence]) -> None:
        self._db.executemany(sql, rows)

    def insert_id(self, sql: str, params: Sequence) -> int:
        """Run the INSERT ``sql``; the id of the row it made."""
        return int(self._db.execute(sql, params).lastrowid)

    def transaction(self):
        """A ``with`` block committed at its end (with what was pending), rolled back on an
        error."""
        return self._db

    def commit(self) -> None:
        self._db.commit()

    def check_lock(self) -> None:
        """Nothing to check: the kernel keeps a live process's ``flock``."""

    def lost(self) -> bool:
        """Never: a file does not go away under its connection."""
        return False

    def close(self) -> None:
        try:
            self._db.commit()
        finally:
            self._db.close()

    @contextmanager
    def lock(self, deployment: str, command: Sequence[str] = ()) -> Iterator[None]:
        """Hold the deployment's lock for the ``with`` block, or raise :class:`LockHeld`."""
        fd = _open_private(self.lock_path, os.O_RDWR, "create the lock file")
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(deployment, self.lock_path, _read_holder(fd)) from None
            holder = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started_at": time.time(),
                "deployment": deployment,
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def read_sqlite_history(path: Path, query: str, params: Sequence) -> list[tuple] | None:
    """The rows of ``query`` on the database at ``path``, read only; None when the file does
    not exist or cannot be read (see ``engine.report.state_reads.read_history``), [] without a
    schema yet."""
    path = Path(path).absolute()
    if not path.is_file():
        return None
    # read only; where SQLite cannot even read so (a read-only directory without the
    # database's -shm file), as an unchanging file
    for mode in ("mode=ro", "immutable=1"):
        try:
            db = sqlite3.connect(f"{path.as_uri()}?{mode}", uri=True, timeout=10)
            try:
                if not db.execute("PRAGMA user_version").fetchone()[0]:
                    return []  # an empty file: no schema yet
                return db.execute(query, params).fetchall()
            finally:
                db.close()
        except sqlite3.Error as error:
            _log.debug("cannot read the history in %s (%s): %s", path, mode, error)
            continue
    return None


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    """WAL, synchronous=NORMAL, the schema's migrations; StateError for an unusable file."""
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"error: the state database {path} was written by a newer fedi-run "
                f"(schema {version}, this one knows {SCHEMA_VERSION}); use that "
                f"version, or {STATE_ELSEWHERE}"
            )
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        if version < SCHEMA_VERSION:
            steps = "".join(f"{s};\n" for s in migration_statements("sqlite", version))
            db.executescript(f"BEGIN;\n{steps}PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;")
    except sqlite3.Error as error:
        hint = f"move {path} away (its history is lost), or {STATE_ELSEWHERE}"
        if _unwritable(error):
            hint = ""
        raise StateError.cannot("use the state database", path, error, hint) from None
    for suffix in ("", "-wal", "-shm"):  # SQLite gives them the database's mode; make sure
        companion = path.with_name(path.name + suffix)
        try:
            if companion.exists() and companion.stat().st_mode & 0o077:
                companion.chmod(0o600)
        except OSError:
            pass  # not ours to change (another user's file)


_UNWRITABLE = (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN)


def _unwritable(error: sqlite3.Error) -> bool:
    """Whether SQLite could not open or write the file (its place is the problem, not its
    content): the primary result code of ``error`` — its low byte, as ``sqlite_errorcode``
    is the extended code (``SQLITE_READONLY_DBMOVED``, ...) — is READONLY or CANTOPEN."""
    code = getattr(error, "sqlite_errorcode", None)  # None: raised by the module, not SQLite
    return code is not None and (code & 0xFF) in _UNWRITABLE


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents with mode 0700; StateError if it can't."""
    try:
        make_private_dirs(directory)
    except OSError as error:
        raise StateError.cannot(
            "create the state directory", Path(error.filename or directory), error
        ) from None
    if not directory.is_dir():
        raise StateError(
            f"error: cannot use {directory} as the state directory: it is not a "
            f"directory; {STATE_ELSEWHERE}"
        )


def _open_private(path: Path, flags: int, what: str) -> int:
    """``os.open`` creating ``path`` with mode 0600; StateError naming it if that fails."""
    try:
        descriptor = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise StateError.cannot(what, path, error) from None
    try:
        if os.fstat(descriptor).st_mode & 0o077:  # an existing file keeps its mode: narrow it
            os.fchmod(descriptor, 0o600)
    except OSError:
        pass  # not ours to change; the file is still usable
    return descriptor


def _read_holder(fd: int) -> dict:
    """What the lock's holder wrote (pid, host, started_at), waiting briefly if not yet."""
    for _ in range(20):
        data = os.pread(fd, 4096, 0)
        if data.endswith(b"\n"):
            return json.loads(data)
        time.sleep(0.005)
    return {}
