"""Carrying out one run in a worker process (``fedi-run panel worker``), through the engine's
Python API — the CLI is never called.

:func:`carry_out` takes a queued :class:`~fedi_run.panel.models.Run` (a run that is no longer
queued — stopped before a worker took it — is left alone), marks it running with this worker's
name, host and pid, writes in its own data directory what the run needs, from the database
(:mod:`fedi_run.panel.deployment_files`: the playbook, the environment's inventory, the initial
user's password for the run only), then runs the engine in a thread of its own (so the engine
installs no signal handler: the worker's stay Celery's) while the worker's thread watches it
every :data:`WATCH` seconds: it writes what is new (output chunks as :class:`RunEvent` rows,
task states, the engine's run id) into the database, refreshes the heartbeat every
:data:`HEARTBEAT` seconds, and passes a Stop pressed on any web process (``stop_requested_by``)
or the worker's own shutdown (SIGTERM, SIGINT) to the engine as ``RunRequest.stop``. When the
engine returns, the password file is removed, and the run's record (state, exit status, recap,
masked log, each task's masked output from the engine's logs) is stored in the database and
its events deleted, in one transaction. After a deploy that applied and succeeded, a health
check (:func:`check_health`, the engine's ``verify``) is queued for any worker.

A worker killed mid-run writes nothing more: its run is marked broken off by whoever looks next
(:func:`fedi_run.panel.runs.check_alive`), the engine's locks (flocks; PostgreSQL's advisory
lock, with the connection) are released with the process, and the engine's state says how far
it got. A worker starting removes what a killed one left (:func:`sweep_local_files`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from fedi_run.engine.errors import FediRunError
from fedi_run.panel import deployment_files
from fedi_run.panel.live import LiveRun
from fedi_run.panel.models import Deployment, Run, RunEvent, StoredTaskOutput
from fedi_run.panel.sink import PanelSink

_log = logging.getLogger("fedi_run.panel")

WATCH = 0.3
"""Seconds between two looks of the worker at its run: new output written, Stop read."""
HEARTBEAT = 2.0
"""Seconds between two heartbeats of a running run."""

SHUTTING_DOWN = threading.Event()
"""Set when the worker is asked to stop (Celery's ``worker_shutting_down``): its run is
stopped as its Stop button does."""


@dataclass(frozen=True)
class RunJob:
    """What the engine's thread needs: plain values, no model instances. ``state`` is the
    engine's ``--state`` (a path or a ``postgresql://`` URL), ``engine_dir`` where it keeps the
    run's local files (its per-task output logs among them)."""

    run_pk: int
    deployment: str
    kind: str
    playbook: Path
    inventory: Path
    apply: bool
    check: bool
    resume: bool
    only: tuple[str, ...]
    state: Path | str
    engine_dir: Path


def _on_shutdown(**_kwargs) -> None:
    SHUTTING_DOWN.set()


def install_shutdown_hook() -> None:
    """Stop the run in progress when the worker shuts down (called by ``panel worker``)."""
    from celery.signals import worker_shutting_down

    worker_shutting_down.connect(_on_shutdown, weak=False)


def carry_out(run_pk: int) -> None:
    """Carry out the queued run ``run_pk`` (see the module's docstring)."""
    from fedi_run.panel import queue

    close_old_connections()
    claimed = Run.objects.filter(pk=run_pk, state=Run.QUEUED).update(
        state=Run.RUNNING,
        worker=queue.worker_name(),
        worker_host=socket.gethostname(),
        worker_pid=os.getpid(),
        heartbeat_at=timezone.now(),
    )
    if not claimed:
        _log.info("run %s is no longer queued: left alone", run_pk)
        return
    run = Run.objects.select_related("deployment", "deployment__environment").get(pk=run_pk)
    live = LiveRun(run.pk, run.deployment_id, run.kind)
    with ExitStack() as held:
        try:
            password = held.enter_context(deployment_files.password_written(run.deployment))
            job = _job(run)
        except Exception as error:  # noqa: BLE001 - the data directory, the key, or a bug
            if not isinstance(error, FediRunError):
                _log.exception("run %s could not be prepared", run_pk)
            message = error.message if isinstance(error, FediRunError) else str(error)
            live.fail(f"error: the run could not be prepared: {message}")
            _store(run_pk, live, ())
            return
        sink = PanelSink(live, [password] if password else [])
        engine = threading.Thread(
            target=_engine, args=(job, live, sink), daemon=True, name=f"fedi-run run {run_pk}"
        )
        engine.start()
        _watch(run_pk, live, engine)
    deployed = run.kind == "run" and not run.check and live.snapshot()["exit_status"] == 0
    applied = deployed and run.apply  # a run without the apply deployed no service to check
    outputs = task_outputs(job.engine_dir, live.snapshot(), sink.mask)
    _store(run_pk, live, outputs, health_of=run.deployment_id if applied else None)
    if applied:
        _queue_health(run.deployment_id)


def _queue_health(deployment_pk: int) -> None:
    """Queue the health check after a deploy (any free worker takes it, after the runs queued
    before it); a broker that cannot be reached: no check, and the page says none is pending."""
    from fedi_run.panel import queue

    try:
        queue.send_health(deployment_pk)
    except Exception as error:  # noqa: BLE001 - kombu's errors vary with the transport
        _log.error("deployment %s: cannot queue its health check: %s", deployment_pk, error)
        Deployment.objects.filter(pk=deployment_pk).update(health_requested_at=None)


def _job(run: Run) -> RunJob:
    deployment = run.deployment
    return RunJob(
        run.pk,
        deployment.name,
        run.kind,
        deployment_files.write_playbook(deployment),
        deployment_files.inventory_file(deployment),
        run.apply,
        bool(run.check),
        run.resume,
        tuple(run.only),
        deployment_files.engine_state(deployment),
        deployment_files.engine_dir(deployment),
    )


def sweep_local_files() -> int:
    """At a worker's start: remove from its data directory what the database no longer
    needs there — the directories of deleted deployments, and an initial user's password file
    a killed worker left behind (a copy: the password is sealed in the database; for a
    deployment with no run queued or running). Returns how many were removed."""
    import shutil

    from fedi_run.panel import paths, site

    base = Path(site.current().data_dir) / paths.DEPLOYMENTS
    if not base.is_dir():
        return 0
    local = {path.name: path for path in base.iterdir() if path.is_dir()}
    found = Deployment.objects.filter(key__in=list(local))
    known = set(found.values_list("key", flat=True))
    sealed = set(found.exclude(initial_password_sealed="").values_list("key", flat=True))
    busy = set(
        Run.objects.filter(state__in=Run.ACTIVE, deployment__key__in=list(known)).values_list(
            "deployment__key", flat=True
        )
    )
    removed = 0
    for key, path in local.items():
        if key not in known:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        elif key in sealed and key not in busy and (path / paths.PASSWORD_FILE).exists():
            (path / paths.PASSWORD_FILE).unlink(missing_ok=True)
            removed += 1
    return removed


def check_health(deployment_pk: int, after_run: int | None = None) -> None:
    """The engine's ``verify`` of the deployment's services, stored in its row (``health``,
    ``health_checked_at``, ``health_run``: the deploy it followed, else the last one); a
    problem loading the deployment is stored as its one result. Nothing on a host changes."""
    from fedi_run.panel import checks

    close_old_connections()
    deployment = Deployment.objects.select_related("environment").filter(pk=deployment_pk).first()
    if deployment is None:
        return
    if after_run is None:
        last = deployment.last_real_run()
        after_run = last.pk if last is not None else None
    try:
        found = checks.health_of(
            deployment_files.write_playbook(deployment),
            deployment_files.inventory_file(deployment),
        )
    except FediRunError as error:
        found = [checks.unavailable(error.message)]
    except Exception as error:  # noqa: BLE001 - a bug: shown on the page and logged
        _log.exception("the health check of deployment %s broke off", deployment_pk)
        found = [checks.unavailable(f"error: the health check broke off: {error}")]
    Deployment.objects.filter(pk=deployment_pk).update(
        health=found, health_checked_at=timezone.now(), health_run=after_run
    )


def _engine(job: RunJob, live: LiveRun, sink: PanelSink) -> None:
    """The engine's thread: load the project and run it; how it ended goes into ``live``."""
    from fedi_run.engine.execute.scheduler import ExecutionOptions
    from fedi_run.engine.planning.selection import Selector
    from fedi_run.engine.project import load_project
    from fedi_run.engine.run import RunRequest, run_project

    try:
        project = load_project(job.playbook, [job.inventory], apply=job.apply)
        options = ExecutionOptions(kind=job.kind, forks=project.playbook.run.forks, check=job.check)
        argv = ["panel", "deploy" if job.kind == "run" else job.kind]
        argv += ["--check"] if job.check else []
        argv += ["--resume"] if job.resume else []
        argv += [f"--only={task}" for task in job.only]
        argv.append(job.deployment)
        request = RunRequest(
            options=options,
            selector=Selector(only=job.only),
            state_path=job.state,
            resume=job.resume,
            argv=tuple(argv),
            stop=live.stop_requested,
            yes=True,  # a teardown: its page had the deployment's name typed to confirm it
        )
        outcome = run_project(project, request, [sink])
        if not live.finished:
            live.finish(outcome.exit_status, outcome.recap, 0.0)
    except FediRunError as error:
        live.fail(sink.mask(str(error)))
    except Exception as error:  # noqa: BLE001 - a bug; shown on the page and logged
        _log.exception("panel run %s broke off", job.run_pk)
        live.fail(sink.mask(f"error: the run broke off: {type(error).__name__}: {error}"))
    finally:
        connection.close()  # the engine's thread used no Django connection; to be sure


def _watch(run_pk: int, live: LiveRun, engine: threading.Thread) -> int:
    """Until the engine's thread ends: write what is new, heartbeat, pass Stop on. Returns how
    many output chunks are written."""
    written, tasks, beat = 0, None, 0.0
    while True:
        engine.join(WATCH)
        ended = not engine.is_alive()
        if SHUTTING_DOWN.is_set():
            live.request_stop("the worker stopping")
        try:
            data = live.snapshot(written)
            if data["chunks"]:
                RunEvent.objects.bulk_create(
                    RunEvent(
                        run_id=run_pk,
                        number=c["number"],
                        task=c["task"][:500],
                        stream=c["stream"],
                        text=c["text"],
                    )
                    for c in data["chunks"]
                )
                written = data["next"]
            now = time.monotonic()
            if data["tasks"] != tasks or now - beat >= HEARTBEAT:
                Run.objects.filter(pk=run_pk).update(
                    tasks=data["tasks"],
                    engine_run_id=data["engine_run_id"],
                    heartbeat_at=timezone.now(),
                )
                tasks, beat = data["tasks"], now
            if not ended:
                by = Run.objects.filter(pk=run_pk).values_list("stop_requested_by", flat=True)
                if by and by[0]:
                    live.request_stop(by[0])
        except DatabaseError as error:  # the database away for a while: try again next time
            _log.warning("run %s: cannot write its progress: %s", run_pk, error)
            close_old_connections()
        if ended:
            return written


def task_outputs(engine_dir: Path, data: dict, mask) -> tuple[StoredTaskOutput, ...]:
    """Each task's output of the ended run (``data``: its snapshot), from the engine's logs
    in ``engine_dir`` (their last :data:`~fedi_run.panel.task_output.TAIL_BYTES`), masked by
    ``mask``; the tasks that printed nothing are left out."""
    from fedi_run.engine.report.output_log import log_path
    from fedi_run.panel.task_output import read_log

    if data.get("engine_run_id") is None:
        return ()
    found = []
    for task in data.get("tasks") or ():
        text, size = read_log(log_path(engine_dir, data["engine_run_id"], task["id"]))
        if text:
            found.append(StoredTaskOutput(task=task["id"][:500], text=mask(text), size=size))
    return tuple(found)


def _store(run_pk: int, live: LiveRun, outputs, health_of: int | None = None) -> None:
    """Write the ended run's record into its Run row with its tasks' ``outputs``, and drop its
    events (one transaction; ``health_of``: the deployment whose health check is asked for in
    it, after a deploy that succeeded); retried while the database is away."""
    data = live.snapshot()
    for attempt in range(60):
        try:
            with transaction.atomic():
                Run.objects.filter(pk=run_pk).update(
                    state=Run.ERROR if data["error"] else Run.FINISHED,
                    engine_run_id=data["engine_run_id"],
                    finished_at=timezone.now(),
                    heartbeat_at=timezone.now(),
                    exit_status=data["exit_status"],
                    error=data["error"],
                    tasks=data["tasks"],
                    recap=data["recap"],
                    log=live.log(),
                    apply_output=live.apply_output(),
                )
                RunEvent.objects.filter(run_id=run_pk).delete()
                StoredTaskOutput.objects.filter(run_id=run_pk).delete()
                for output in outputs:
                    output.run_id = run_pk
                StoredTaskOutput.objects.bulk_create(outputs)
                if health_of is not None:
                    Deployment.objects.filter(pk=health_of).update(
                        health_requested_at=timezone.now()
                    )
            live.mark_stored()
            return
        except DatabaseError as error:
            _log.warning("run %s: cannot store its record (%s); trying again", run_pk, error)
            close_old_connections()
            time.sleep(min(1.0 + attempt, 10.0))
    _log.error("run %s: its record could not be stored; it will show as broken off", run_pk)
