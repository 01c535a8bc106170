"""The run state database: every run of a deployment and its tasks, in an SQLite file (the
default, ``.fedi-run/state.db`` beside the playbook: :func:`default_state_path`) or a PostgreSQL
database (``--state postgresql://user@host/db``: ``engine.report.state_location``).

:class:`StateStore` is an :class:`~fedi_run.engine.report.events.EventSink`: the executor calls
:meth:`StateStore.begin_run`, then feeds it the run's events. Every finished task and the end
of the run are committed at once, so a run that is killed leaves an accurate record: its tasks
without a status "never ran" (or "did not finish", when they had started) and are what
``--resume`` runs again (:meth:`StateStore.resume_tasks`). Both backends have the same schema
and migrations (``engine.report.state_schema``) and answer every query the same;
``engine.report.state_sqlite`` and ``engine.report.state_postgresql`` say what differs — the
files and their privacy, and :meth:`StateStore.lock`: a ``flock`` on ``<db>.lock``, or a
PostgreSQL advisory lock held by a connection of its own, released when the run ends or its
process dies.

What is stored, and nothing else: the arguments of :meth:`~StateStore.begin_run` (deployment,
kind, task ids and hosts, check flag, argv, selection); each task's status, duration, message,
changes and start/finish times; the last 4 KiB of a *failed* task's output; each run's exit
status, duration and whether it was interrupted; the *paths* of the secrets each deployment
placed on each host (:meth:`~StateStore.record_secrets`, never a value); the domain of its
last successful ``nixops4 apply`` (:meth:`~StateStore.record_applied`); and, in PostgreSQL,
who holds each deployment's lock. The executor masks secrets before they reach the events or
``begin_run``, so no secret reaches the state.

A write that fails does not stop the run (:attr:`StateStore.write_error`) — except when the
PostgreSQL state's connection broke: the lock went with it, and the store tells the run to
stop (:attr:`StateStore.lock_lost`, :attr:`StateStore.on_lock_lost`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fedi_run.engine.errors import (
    NoPreviousRun,
    RunNotFound,
    StateError,
)
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
from fedi_run.engine.report.state_location import (
    DEFAULT_STATE,
    StateLocation,
    locate_state,
)
from fedi_run.engine.report.state_reads import TOUCHED, last_outcomes_of
from fedi_run.engine.report.state_records import (  # noqa: F401 - the records, re-exported
    DID_NOT_FINISH,
    NEVER_RAN,
    LastOutcome,
    RunRecord,
    TaskRecord,
    deployer_identity,
    done_elsewhere,
)
from fedi_run.engine.report.state_schema import SCHEMA_VERSION  # noqa: F401 - re-exported

OUTPUT_TAIL = 4096
SQLITE_MAX_INTEGER = 2**63 - 1
"""The largest id SQLite's INTEGER (and PostgreSQL's BIGINT) holds; a larger one names no run."""
_log = logging.getLogger(__name__)

_RUN_COLUMNS = (
    "id, deployment, kind, check_mode, argv, selection, started_at, finished_at, "
    "duration, exit_status, interrupted, deployer"
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
    "INSERT INTO tasks (run_id, task_id, host, position) SELECT ?, ?, ?, "
    "COALESCE(MAX(position), -1) + 1 FROM tasks WHERE run_id = ? ON CONFLICT DO NOTHING"
)


def default_state_path(playbook_path: Path) -> Path:
    """``<playbook dir>/.fedi-run/state.db``."""
    return Path(playbook_path).absolute().parent / DEFAULT_STATE


class StateStore:
    """The state of one deployment (or several, with a shared ``--state``), in SQLite or
    PostgreSQL.

    One connection, usable from the executor's worker threads (calls must be serialised, as
    the executor does for sinks). :meth:`handle` never raises: a write that fails is logged
    once and recorded in :attr:`write_error`, and the run goes on — unless the PostgreSQL
    state's connection broke (:attr:`lock_lost`).
    """

    def __init__(self, location: StateLocation, backend):
        self.location = location
        self.path: Path | None = location.path
        """The SQLite file (None for a PostgreSQL state)."""
        self.write_error: str | None = None
        self.lock_lost: str | None = None
        """Why the PostgreSQL state's lock was lost during the run (None: it was not)."""
        self.on_lock_lost: Callable[[], None] | None = None
        """Called (once, from the thread that noticed) when the lock is lost: the run sets it
        to stop itself."""
        self._backend = backend
        self._db = backend
        self._errors = backend.errors

    @property
    def lock_path(self) -> Path:
        """``<db>.lock``: the file :meth:`lock` flocks (an SQLite state's)."""
        return self._backend.lock_path

    @classmethod
    def open(cls, where: StateLocation | Path | str) -> StateStore:
        """Open (creating the SQLite directory and file, and the schema, as needed) the state
        ``where`` names: a path, or a ``postgresql://`` URL (``engine.report.state_location``).

        Raises :class:`StateError` naming the path, or the URL without its password, when it
        cannot be created, reached or used.
        """
        location = locate_state(where, None)
        if location.postgresql:
            from fedi_run.engine.report.state_postgresql import PostgresState

            return cls(location, PostgresState.open(location))
        from fedi_run.engine.report.state_sqlite import SqliteState

        return cls(location, SqliteState.open(location.path))

    @contextmanager
    def lock(self, deployment: str, command: Sequence[str] = ()) -> Iterator[None]:
        """Hold the deployment's lock for the ``with`` block, or raise :class:`LockHeld`
        naming its holder (``command``: this run's command line, as a holder's record shows
        it in PostgreSQL)."""
        with self._backend.lock(deployment, command):
            yield

    def begin_run(
        self,
        deployment: str,
        kind: str,
        tasks: Sequence[str],
        hosts: Sequence[str],
        check: bool,
        argv: Sequence[str],
        selection: str = "",
        deployer: str = "",
    ) -> int:
        """Record a new run and its tasks (in execution order, none run yet) and the deployer
        it runs on (:func:`deployer_identity`); return its id."""
        if len(tasks) != len(hosts):
            raise ValueError(f"{len(tasks)} tasks but {len(hosts)} hosts")
        with self._guard("write the state database"), self._conn.transaction():
            run_id = self._conn.insert_id(
                "INSERT INTO runs (deployment, kind, check_mode, argv, selection, started_at, "
                "deployer) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    deployment,
                    kind,
                    bool(check),
                    json.dumps(list(argv)),
                    selection,
                    time.time(),
                    deployer,
                ),
            )
            self._conn.executemany(
                "INSERT INTO tasks (run_id, task_id, host, position) VALUES (?, ?, ?, ?)",
                ((run_id, task, host, i) for i, (task, host) in enumerate(zip(tasks, hosts))),
            )
        with self._guard("write the state database"):
            self._conn.check_lock()
        return run_id

    def handle(self, event: Event) -> None:
        """Record ``event`` (commits after each TaskFinished and RunFinished); never raises."""
        if type(event) is OutputChunk or self.write_error is not None or self._db is None:
            return
        try:
            self._record(event)
        except self._errors as error:
            self._failed("cannot record the run in", error)

    def _failed(self, what: str, error: BaseException) -> None:
        """A write failed: remembered in :attr:`write_error` (nothing more is written); when
        a PostgreSQL connection broke, the lock is lost too (:attr:`on_lock_lost`)."""
        reason = " ".join(str(error).split())
        self.write_error = f"{what} {self.location}: {reason}"
        if not self._backend.lost():
            _log.warning("%s; the run goes on, but its record is incomplete", self.write_error)
            return
        self.lock_lost = self.write_error
        _log.error("%s; the deployment's lock went with the connection: the run stops", reason)
        if self.on_lock_lost is not None:
            self.on_lock_lost()

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
            with db.transaction():
                if db.execute(_FINISH_TASK, row).rowcount == 0:  # a task begin_run did not list
                    db.execute(_ADD_TASK, (event.run_id, event.task_id, event.host, event.run_id))
                    db.execute(_FINISH_TASK, row)
            db.check_lock()
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
            db.check_lock()
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
        """The run ``run_id`` with its tasks, or raise :class:`RunNotFound` (an id the
        database cannot hold, or below 1, names no run either)."""
        in_range = 1 <= run_id <= SQLITE_MAX_INTEGER
        found = self._select("WHERE id = ?", [run_id], 1) if in_range else []
        if not found:
            raise RunNotFound(
                f"error: no run {run_id} in {self.location}; `fedi-run history PLAYBOOK` lists them"
            )
        return found[0]

    def resume_tasks(
        self,
        deployment: str,
        kind: str = "run",
        *,
        check: bool | None = None,
        deployer: str | None = None,
    ) -> tuple[str, ...]:
        """The last run's tasks, in its order, that are not done (ok/changed) — on
        ``deployer``: a task on ``local`` that the last run did on another deployer made its
        files there, so it is not done here (:func:`done_elsewhere`).

        Empty when every task of the last run is done; :class:`NoPreviousRun` when there is
        no last run (``check`` as in :meth:`last_run`).
        """
        run = self.last_run(deployment, kind, check=check)
        if run is None:
            raise NoPreviousRun(
                f"error: nothing to resume: no previous {kind} of deployment '{deployment}' is "
                f"recorded in {self.location}; run without --resume"
            )
        return tuple(
            task.task_id
            for task in run.tasks
            if task.status not in DONE or done_elsewhere(task.host, run.deployer, deployer)
        )

    def last_outcomes(self, deployment: str, task_ids: Iterable[str]) -> dict[str, LastOutcome]:
        """Task id → what the latest run or teardown of ``deployment`` that touched it did
        (:class:`LastOutcome`), for those of ``task_ids`` some run touched."""
        with self._guard("read the state database"):
            return last_outcomes_of(self._conn.execute(TOUCHED, (deployment,)), task_ids)

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
            with db.transaction():
                for path in removed:
                    below = path.rstrip("/") + "/"
                    db.execute(
                        "DELETE FROM secrets WHERE deployment = ? AND host = ? AND (path = ? OR "
                        "substr(path, 1, ?) = ?)",
                        (deployment, host, path, len(below), below),
                    )
                db.executemany(
                    "INSERT INTO secrets (deployment, host, path, generated, task_id, run_id, "
                    "placed_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (deployment, host, path) "
                    "DO UPDATE SET generated = excluded.generated, task_id = excluded.task_id, "
                    "run_id = excluded.run_id, placed_at = excluded.placed_at",
                    [
                        (deployment, host, path, bool(generated), task_id, run_id, time.time())
                        for path, generated in placed
                    ],
                )
            db.check_lock()
        except self._errors as error:
            self._failed("cannot record the secrets placed in", error)

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
            with self._conn.transaction():
                self._conn.execute(
                    "INSERT INTO applied (deployment, domain, run_id, applied_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (deployment) DO UPDATE SET "
                    "domain = excluded.domain, run_id = excluded.run_id, "
                    "applied_at = excluded.applied_at",
                    (deployment, domain, run_id, time.time()),
                )
            self._conn.check_lock()
        except self._errors as error:
            self._failed("cannot record the applied domain in", error)

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
                db.close()  # commits what is pending
            except self._errors as error:
                _log.warning("cannot record the run in %s: %s", self.location, error)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _conn(self):
        if self._db is None:
            raise ValueError(f"the state database {self.location} is closed")
        return self._db

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except self._errors as error:
            if self.location.postgresql:
                reason = " ".join(str(error).split())
                raise StateError(
                    f"error: cannot {what} {self.location}: {reason}; check that the "
                    "PostgreSQL server is up and reachable, then run again"
                ) from None
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
                r[11] or "",
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
