"""The run state database: one SQLite file per deployment recording every run and its tasks.

The default file is ``.fedi-run/state.db`` beside the playbook (:func:`default_state_path`).
:class:`StateStore` is an :class:`~fedi_run.engine.report.events.EventSink`: the executor calls
:meth:`StateStore.begin_run`, then feeds it the run's events. Every finished task and the end
of the run are committed at once, so a run that is killed leaves an accurate record: its tasks
without a status "never ran" (or "did not finish", when they had started) and are what
``--resume`` runs again (:meth:`StateStore.resume_tasks`).

What is stored, and nothing else: the arguments of :meth:`~StateStore.begin_run` (deployment,
kind, task ids and hosts, check flag, argv, selection); each task's status, duration, message,
changes and start/finish times; the last 4 KiB of a *failed* task's output; each run's exit
status, duration and whether it was interrupted; the *paths* of the secrets each deployment
placed on each host (:meth:`~StateStore.record_secrets`, never a value); and the domain of its
last successful ``nixops4 apply`` (:meth:`~StateStore.record_applied`). The executor masks
secrets before they reach the events or ``begin_run``, so no secret reaches this file. Output
of other tasks is not kept.

Privacy: directories this module creates are 0700, the database, its ``-wal``/``-shm`` files
and the lock file 0600. A deleted database is recreated empty. :meth:`StateStore.lock` takes a
non-blocking ``flock`` on ``<db>.lock``, released on exit or when the process dies.
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

from fedi_run.engine.errors import (
    STATE_ELSEWHERE,
    LockHeld,
    NoPreviousRun,
    RunNotFound,
    StateError,
)
from fedi_run.engine.private_files import make_private_dirs
from fedi_run.engine.report.events import (
    DONE,
    Event,
    OutputChunk,
    RunFinished,
    RunStarted,
    Status,
    TaskFinished,
    TaskStarted,
)
from fedi_run.engine.report.recap import log_note
from fedi_run.engine.report.state_records import (  # noqa: F401 - the records, re-exported
    DID_NOT_FINISH,
    NEVER_RAN,
    LastOutcome,
    RunRecord,
    TaskRecord,
)

SCHEMA_VERSION = 2
"""1: runs and tasks; 2: also the secrets placed (paths) and the domain last applied."""
OUTPUT_TAIL = 4096
SQLITE_MAX_INTEGER = 2**63 - 1
"""The largest id SQLite's INTEGER holds; a larger one names no run."""
_log = logging.getLogger(__name__)

_SCHEMA = f"""
BEGIN;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, deployment TEXT NOT NULL, kind TEXT NOT NULL,
    check_mode INTEGER NOT NULL, argv TEXT NOT NULL, selection TEXT NOT NULL,
    started_at REAL NOT NULL, finished_at REAL, duration REAL, exit_status INTEGER,
    interrupted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS runs_by_deployment ON runs (deployment, kind, id);
CREATE TABLE IF NOT EXISTS tasks (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task_id TEXT NOT NULL, host TEXT NOT NULL, position INTEGER NOT NULL,
    status TEXT, changed INTEGER NOT NULL DEFAULT 0, duration REAL,
    message TEXT NOT NULL DEFAULT '', changes TEXT NOT NULL DEFAULT '[]',
    output_tail TEXT NOT NULL DEFAULT '', started_at REAL, finished_at REAL,
    PRIMARY KEY (run_id, task_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS secrets (
    deployment TEXT NOT NULL, host TEXT NOT NULL, path TEXT NOT NULL,
    generated INTEGER NOT NULL DEFAULT 1, task_id TEXT NOT NULL, run_id INTEGER NOT NULL,
    placed_at REAL NOT NULL,
    PRIMARY KEY (deployment, host, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS applied (
    deployment TEXT PRIMARY KEY, domain TEXT NOT NULL, run_id INTEGER NOT NULL,
    applied_at REAL NOT NULL);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""
_RUN_COLUMNS = (
    "id, deployment, kind, check_mode, argv, selection, started_at, finished_at, "
    "duration, exit_status, interrupted"
)
_TASK_COLUMNS = (
    "run_id, task_id, host, position, status, duration, message, changes, "
    "started_at, finished_at, output_tail"
)
_OUTCOME = (
    f"CASE WHEN status IS NOT NULL THEN status WHEN started_at IS NOT NULL "
    f"THEN '{DID_NOT_FINISH}' ELSE '{NEVER_RAN}' END"
)
_FINISH_TASK = (
    "UPDATE tasks SET status = ?, changed = ?, duration = ?, message = ?, changes = ?,"
    " output_tail = ?, finished_at = ? WHERE run_id = ? AND task_id = ?"
)
_ADD_TASK = (
    "INSERT OR IGNORE INTO tasks (run_id, task_id, host, position) SELECT ?, ?, ?, "
    "COALESCE(MAX(position), -1) + 1 FROM tasks WHERE run_id = ?"
)


def default_state_path(playbook_path: Path) -> Path:
    """``<playbook dir>/.fedi-run/state.db``."""
    return Path(playbook_path).absolute().parent / ".fedi-run" / "state.db"


def read_history(path: Path, deployment: str) -> dict[str, tuple[str, int, str, bool]]:
    """Task id → ``(host, run id, kind, done)`` of the last run of ``deployment`` (not a
    ``--check``) that started the task — what may have placed something on that host — read
    only: nothing is created or written. A state file that does not exist, or cannot be read
    (its directory read-only, the file not a database), is an empty history: what is read
    from it only ever adds clean-up tasks, and a run that uses the file says what is wrong
    with it when it opens it (:meth:`StateStore.open`)."""
    path = Path(path).absolute()
    if not path.is_file():
        return {}
    done = tuple(status.value for status in DONE)
    # read only; where SQLite cannot even read so (a read-only directory without the
    # database's -shm file), as an unchanging file
    for mode in ("mode=ro", "immutable=1"):
        found: dict[str, tuple[str, int, str, bool]] = {}
        try:
            db = sqlite3.connect(f"{path.as_uri()}?{mode}", uri=True, timeout=10)
            try:
                if not db.execute("PRAGMA user_version").fetchone()[0]:
                    return {}  # an empty file: no schema yet
                rows = db.execute(
                    "SELECT t.task_id, t.host, r.id, r.kind, t.status FROM tasks t JOIN runs r "
                    "ON r.id = t.run_id WHERE r.deployment = ? AND r.check_mode = 0 AND "
                    "t.started_at IS NOT NULL ORDER BY r.id",
                    (deployment,),
                )
                for task_id, host, run_id, kind, status in rows:
                    found[task_id] = (host, int(run_id), kind, status in done)
            finally:
                db.close()
        except sqlite3.Error as error:
            _log.debug("cannot read the history in %s (%s): %s", path, mode, error)
            continue
        return found
    return {}


_TOUCHED = (
    "SELECT t.task_id, r.id, r.kind, t.status FROM tasks t JOIN runs r ON r.id = t.run_id "
    "WHERE r.deployment = ? AND r.check_mode = 0 AND (t.status IN ('ok', 'changed', 'failed') "
    "OR (t.status IS NULL AND t.started_at IS NOT NULL)) ORDER BY r.id"
)
"""Every task record of a deployment's runs (not ``--check``) that touched the task: it ended
ok, changed or failed, or started and did not finish (a skipped or unreachable one did not)."""


def _last_outcomes(
    db: sqlite3.Connection, deployment: str, task_ids: Iterable[str]
) -> dict[str, LastOutcome]:
    wanted = set(task_ids)
    found: dict[str, LastOutcome] = {}
    for task_id, run_id, kind, status in db.execute(_TOUCHED, (deployment,)):
        if task_id in wanted:
            found[task_id] = LastOutcome(
                task_id, int(run_id), kind, Status(status) if status is not None else None
            )
    return found


def read_last_outcomes(
    path: Path, deployment: str, task_ids: Iterable[str]
) -> dict[str, LastOutcome]:
    """:meth:`StateStore.last_outcomes`, read only (for ``plan``): nothing is created or
    written, and a state file that does not exist is an empty history. One that exists and
    cannot be read is a :class:`StateError` (a plan must not call a dependency "never run"
    when it cannot tell)."""
    path = Path(path).absolute()
    if not path.is_file():
        return {}
    ids = tuple(task_ids)
    error: sqlite3.Error | None = None
    for mode in ("mode=ro", "immutable=1"):  # as read_history: a read-only directory too
        try:
            db = sqlite3.connect(f"{path.as_uri()}?{mode}", uri=True, timeout=10)
            try:
                if not db.execute("PRAGMA user_version").fetchone()[0]:
                    return {}  # an empty file: no schema yet
                return _last_outcomes(db, deployment, ids)
            finally:
                db.close()
        except sqlite3.Error as caught:
            error = caught
    raise StateError.cannot("read the state database", path, error)


class StateStore:
    """The state database of one deployment (or several, with a shared ``--state FILE``).

    One connection, usable from the executor's worker threads (calls must be serialised, as
    the executor does for sinks). :meth:`handle` never raises: a write that fails is logged
    once and recorded in :attr:`write_error`, and the run goes on.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection):
        self.path = path
        self.write_error: str | None = None
        self._db: sqlite3.Connection | None = connection

    @property
    def lock_path(self) -> Path:
        """``<db>.lock``: the file :meth:`lock` flocks."""
        return self.path.with_name(self.path.name + ".lock")

    @classmethod
    def open(cls, path: Path) -> StateStore:
        """Open (creating the directory, file and schema as needed) the database at ``path``.

        Raises :class:`StateError` naming the path when it cannot be created or used.
        """
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

    @contextmanager
    def lock(self, deployment: str) -> Iterator[None]:
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

    def begin_run(
        self,
        deployment: str,
        kind: str,
        tasks: Sequence[str],
        hosts: Sequence[str],
        check: bool,
        argv: Sequence[str],
        selection: str = "",
    ) -> int:
        """Record a new run and its tasks (in execution order, none run yet); return its id."""
        if len(tasks) != len(hosts):
            raise ValueError(f"{len(tasks)} tasks but {len(hosts)} hosts")
        with self._guard("write the state database"), self._conn:
            cursor = self._conn.execute(
                "INSERT INTO runs (deployment, kind, check_mode, argv, selection, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (deployment, kind, bool(check), json.dumps(list(argv)), selection, time.time()),
            )
            run_id = int(cursor.lastrowid)
            self._conn.executemany(
                "INSERT INTO tasks (run_id, task_id, host, position) VALUES (?, ?, ?, ?)",
                ((run_id, task, host, i) for i, (task, host) in enumerate(zip(tasks, hosts))),
            )
        return run_id

    def handle(self, event: Event) -> None:
        """Record ``event`` (commits after each TaskFinished and RunFinished); never raises."""
        if type(event) is OutputChunk or self.write_error is not None or self._db is None:
            return
        try:
            self._record(event)
        except sqlite3.Error as error:
            self.write_error = f"cannot record the run in {self.path}: {error}"
            _log.warning("%s; the run goes on, but its record is incomplete", self.write_error)

    def _record(self, event: Event) -> None:
        db = self._conn
        if isinstance(event, TaskFinished):
            tail = ""
            if event.status is Status.FAILED and event.output:
                output = event.output
                if event.output_cut:  # the last 4 KiB of what the other sinks show
                    output = f"{log_note(event.output_cut)}\n{output}"
                tail = output.encode()[-OUTPUT_TAIL:].decode("utf-8", "ignore")
            row = (
                event.status.value,
                event.status is Status.CHANGED,
                event.duration,
                event.message,
                json.dumps(list(event.changes)),
                tail,
                event.at or time.time(),
                event.run_id,
                event.task_id,
            )
            if db.execute(_FINISH_TASK, row).rowcount == 0:  # a task begin_run did not list
                db.execute(_ADD_TASK, (event.run_id, event.task_id, event.host, event.run_id))
                db.execute(_FINISH_TASK, row)
            db.commit()
        elif isinstance(event, TaskStarted):
            db.execute(
                "UPDATE tasks SET started_at = ? WHERE run_id = ? AND task_id = ?",
                (event.at, event.run_id, event.task_id),
            )
        elif isinstance(event, RunFinished):
            db.execute(
                "UPDATE runs SET exit_status = ?, interrupted = ?, duration = ?, "
                "finished_at = ? WHERE id = ?",
                (event.exit_status, event.interrupted, event.duration, time.time(), event.run_id),
            )
            db.commit()
        elif isinstance(event, RunStarted):
            db.execute(
                "UPDATE runs SET started_at = ? WHERE id = ?", (event.started_at, event.run_id)
            )

    def last_run(
        self, deployment: str, kind: str = "run", *, check: bool | None = None
    ) -> RunRecord | None:
        """The newest run of ``deployment`` and ``kind`` (with tasks), or None.

        ``check`` None takes any run; True/False only runs with/without ``--check``.
        """
        where, params = "WHERE deployment = ? AND kind = ?", [deployment, kind]
        if check is not None:
            where, params = where + " AND check_mode = ?", params + [check]
        found = self._select(where, params, 1)
        return found[0] if found else None

    def runs(self, deployment: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Up to ``limit`` runs (all deployments when None), newest first, with their recaps
        but without their tasks (``get_run`` has those)."""
        limit = min(limit, SQLITE_MAX_INTEGER)  # more than SQLite can count is all of them
        if deployment is None:
            return self._select("", [], limit, tasks=False)
        return self._select("WHERE deployment = ?", [deployment], limit, tasks=False)

    def get_run(self, run_id: int) -> RunRecord:
        """The run ``run_id`` with its tasks, or raise :class:`RunNotFound` (an id SQLite
        cannot hold, or below 1, names no run either)."""
        in_range = 1 <= run_id <= SQLITE_MAX_INTEGER
        found = self._select("WHERE id = ?", [run_id], 1) if in_range else []
        if not found:
            raise RunNotFound(
                f"error: no run {run_id} in {self.path}; `fedi-run history PLAYBOOK` lists them"
            )
        return found[0]

    def resume_tasks(
        self, deployment: str, kind: str = "run", *, check: bool | None = None
    ) -> tuple[str, ...]:
        """The last run's tasks, in its order, that are not done (ok/changed).

        Empty when every task of the last run is done; :class:`NoPreviousRun` when there is
        no last run (``check`` as in :meth:`last_run`).
        """
        run = self.last_run(deployment, kind, check=check)
        if run is None:
            raise NoPreviousRun(
                f"error: nothing to resume: no previous {kind} of deployment '{deployment}' is "
                f"recorded in {self.path}; run without --resume"
            )
        return tuple(task.task_id for task in run.tasks if task.status not in DONE)

    def last_outcomes(self, deployment: str, task_ids: Iterable[str]) -> dict[str, LastOutcome]:
        """Task id → what the latest run or teardown of ``deployment`` that touched it did
        (:class:`LastOutcome`), for those of ``task_ids`` some run touched."""
        with self._guard("read the state database"):
            return _last_outcomes(self._conn, deployment, task_ids)

    # --- what a deployment placed: secret paths, the domain applied ------------------------

    def record_secrets(
        self,
        deployment: str,
        host: str,
        run_id: int,
        task_id: str,
        placed: Sequence[tuple[str, bool]] = (),
        removed: Sequence[str] = (),
    ) -> None:
        """Record what a task of ``deployment`` that succeeded did to secrets on ``host``: the
        paths it ``placed`` (each with whether the engine or a plugin *generated* it, so that a
        lost one cannot come back by itself), and the paths it ``removed`` — every recorded
        secret at or under one of them is forgotten. Paths only, never a value. Never raises
        (as :meth:`handle`)."""
        if self._db is None or self.write_error is not None or not (placed or removed):
            return
        try:
            db = self._conn
            for path in removed:
                below = path.rstrip("/") + "/"
                db.execute(
                    "DELETE FROM secrets WHERE deployment = ? AND host = ? AND (path = ? OR "
                    "substr(path, 1, ?) = ?)",
                    (deployment, host, path, len(below), below),
                )
            db.executemany(
                "INSERT OR REPLACE INTO secrets (deployment, host, path, generated, task_id, "
                "run_id, placed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (deployment, host, path, bool(generated), task_id, run_id, time.time())
                    for path, generated in placed
                ),
            )
            db.commit()
        except sqlite3.Error as error:
            self.write_error = f"cannot record the secrets placed in {self.path}: {error}"
            _log.warning("%s; the run goes on, but its record is incomplete", self.write_error)

    def placed_secrets(self, deployment: str) -> dict[str, dict[str, bool]]:
        """host → {path → generated} of every secret ``deployment`` placed in an earlier run
        and has not removed since (:meth:`record_secrets`)."""
        found: dict[str, dict[str, bool]] = {}
        with self._guard("read the state database"):
            for host, path, generated in self._conn.execute(
                "SELECT host, path, generated FROM secrets WHERE deployment = ? "
                "ORDER BY host, path",
                (deployment,),
            ):
                found.setdefault(host, {})[path] = bool(generated)
        return found

    def record_applied(self, deployment: str, domain: str, run_id: int) -> None:
        """``deployment`` was applied at ``domain`` by run ``run_id`` (its ``nixops4 apply``
        succeeded). Never raises (as :meth:`handle`)."""
        if self._db is None or self.write_error is not None:
            return
        try:
            with self._conn:
                self._conn.execute(
                    "INSERT OR REPLACE INTO applied (deployment, domain, run_id, applied_at) "
                    "VALUES (?, ?, ?, ?)",
                    (deployment, domain, run_id, time.time()),
                )
        except sqlite3.Error as error:
            self.write_error = f"cannot record the applied domain in {self.path}: {error}"
            _log.warning("%s; the run goes on, but its record is incomplete", self.write_error)

    def applied_domain(self, deployment: str) -> tuple[str, int] | None:
        """``(domain, run id)`` of the last run of ``deployment`` whose apply succeeded, or
        None when none did."""
        with self._guard("read the state database"):
            row = self._conn.execute(
                "SELECT domain, run_id FROM applied WHERE deployment = ?", (deployment,)
            ).fetchone()
        return (row[0], int(row[1])) if row else None

    def close(self) -> None:
        """Commit what is pending and close the database (idempotent)."""
        if self._db is not None:
            db, self._db = self._db, None
            try:
                db.commit()
            except sqlite3.Error as error:
                _log.warning("cannot record the run in %s: %s", self.path, error)
            finally:
                db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise ValueError(f"the state database {self.path} is closed")
        return self._db

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            raise StateError.cannot(what, self.path, error) from None

    def _select(self, where: str, params: list, limit: int, tasks: bool = True) -> list[RunRecord]:
        """Runs matching ``where``, newest first, with their recaps (counted by SQLite) and,
        unless ``tasks`` is False, their tasks."""
        chosen = f"IN (SELECT id FROM runs {where} ORDER BY id DESC LIMIT ?)"
        args = (*params, limit)
        recaps: dict[int, dict[str, dict[str, int]]] = {}
        found: dict[int, list[TaskRecord]] = {}
        with self._guard("read the state database"):
            rows = self._conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id {chosen} ORDER BY id DESC", args
            )
            rows = rows.fetchall()
            for run_id, host, outcome, count in self._conn.execute(
                f"SELECT run_id, host, {_OUTCOME}, COUNT(*) FROM tasks WHERE run_id {chosen} "
                "GROUP BY 1, 2, 3 ORDER BY 1, MIN(position)",
                args,
            ):
                recaps.setdefault(run_id, {}).setdefault(host, {})[outcome] = count
            if tasks:
                for row in self._conn.execute(
                    f"SELECT {_TASK_COLUMNS} FROM tasks WHERE run_id "
                    f"{chosen} ORDER BY run_id, position",
                    args,
                ):
                    found.setdefault(row[0], []).append(_task_record(row))
        return [
            RunRecord(
                r[0],
                r[1],
                r[2],
                bool(r[3]),
                tuple(json.loads(r[4])),
                *r[5:10],
                bool(r[10]),
                tuple(found.get(r[0], ())),
                recaps.get(r[0], {}),
            )
            for r in rows
        ]


def _task_record(row: tuple) -> TaskRecord:
    return TaskRecord(
        row[1],
        row[2],
        row[3],
        Status(row[4]) if row[4] is not None else None,
        row[5],
        row[6],
        tuple(json.loads(row[7])),
        row[8],
        row[9],
        row[10],
    )


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    """WAL, synchronous=NORMAL, the schema when absent; StateError for an unusable file."""
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
            db.executescript(_SCHEMA)
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
