"""Reading a deployment's state without opening a store: what ``plan`` and a run's teardown
tasks need to know of its history, read only.

Contract: :func:`read_history` and :func:`read_last_outcomes` create and write nothing — an
SQLite file that does not exist is an empty history; a PostgreSQL state that cannot be reached
is a :class:`~fedi_run.engine.errors.StateError`. :data:`TOUCHED` and :func:`last_outcomes_of`
are the query and its reading that :meth:`StateStore.last_outcomes
<fedi_run.engine.report.state.StateStore.last_outcomes>` shares.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from fedi_run.engine.errors import StateError
from fedi_run.engine.report.events import DONE, Status
from fedi_run.engine.report.state_location import StateLocation, locate_state
from fedi_run.engine.report.state_records import LastOutcome

_HISTORY = (
    "SELECT t.task_id, t.host, r.id, r.kind, t.status FROM tasks t JOIN runs r "
    "ON r.id = t.run_id WHERE r.deployment = ? AND r.check_mode = 0 AND "
    "t.started_at IS NOT NULL ORDER BY r.id"
)


def read_history(
    where: StateLocation | Path | str, deployment: str
) -> dict[str, tuple[str, int, str, bool]]:
    """Task id → ``(host, run id, kind, done)`` of the last run of ``deployment`` (not a
    ``--check``) that started the task — what may have placed something on that host — read
    only: nothing is created or written. An SQLite file that does not exist, or cannot be read
    (its directory read-only, the file not a database), is an empty history: what is read
    from it only ever adds clean-up tasks, and a run that uses the file says what is wrong
    with it when it opens it (:meth:`StateStore.open`). A PostgreSQL state that cannot be
    reached is a :class:`StateError` (its run could not use it either)."""
    location = locate_state(where, None)
    if location.postgresql:
        from fedi_run.engine.report.state_postgresql import read_postgresql_history

        rows = read_postgresql_history(location, _HISTORY, (deployment,))
    else:
        from fedi_run.engine.report.state_sqlite import read_sqlite_history

        rows = read_sqlite_history(location.path, _HISTORY, (deployment,)) or []
    done = tuple(status.value for status in DONE)
    found: dict[str, tuple[str, int, str, bool]] = {}
    for task_id, host, run_id, kind, status in rows:
        found[task_id] = (host, int(run_id), kind, status in done)
    return found


TOUCHED = (
    "SELECT t.task_id, r.id, r.kind, t.status, t.host, r.deployer FROM tasks t "
    "JOIN runs r ON r.id = t.run_id "
    "WHERE r.deployment = ? AND r.check_mode = 0 AND (t.status IN ('ok', 'changed', 'failed') "
    "OR (t.status IS NULL AND t.started_at IS NOT NULL)) ORDER BY r.id"
)
"""Every task record of a deployment's runs (not ``--check``) that touched the task: it ended
ok, changed or failed, or started and did not finish (a skipped or unreachable one did not)."""


def last_outcomes_of(rows: Iterable[Sequence], task_ids: Iterable[str]) -> dict[str, LastOutcome]:
    """:data:`TOUCHED`'s rows, in run order, as each wanted task's latest outcome."""
    wanted = set(task_ids)
    found: dict[str, LastOutcome] = {}
    for task_id, run_id, kind, status, host, deployer in rows:
        if task_id in wanted:
            found[task_id] = LastOutcome(
                task_id,
                int(run_id),
                kind,
                Status(status) if status is not None else None,
                host,
                deployer or "",
            )
    return found


def read_last_outcomes(
    where: StateLocation | Path | str, deployment: str, task_ids: Iterable[str]
) -> dict[str, LastOutcome]:
    """:meth:`StateStore.last_outcomes`, read only (for ``plan``): nothing is created or
    written, and an SQLite file that does not exist is an empty history. One that exists and
    cannot be read, or a PostgreSQL state that cannot be reached, is a :class:`StateError` (a
    plan must not call a dependency "never run" when it cannot tell)."""
    location = locate_state(where, None)
    ids = tuple(task_ids)
    if location.postgresql:
        from fedi_run.engine.report.state_postgresql import read_postgresql_history

        return last_outcomes_of(read_postgresql_history(location, TOUCHED, (deployment,)), ids)
    from fedi_run.engine.report.state_sqlite import read_sqlite_history

    path = location.path
    if not path.is_file():
        return {}
    rows = read_sqlite_history(path, TOUCHED, (deployment,))
    if rows is None:
        raise StateError(
            f"error: cannot read the state database {path}: it is not a database this "
            "fedi-run can read; give --state the deployment's state, or move this file away"
        )
    return last_outcomes_of(rows, ids)
