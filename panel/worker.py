"""Carrying out one run in a worker process (``fedi-run panel worker``), through the engine's
Python API — the CLI is never called.

:func:`carry_out` takes a queued :class:`~fedi_run.panel.models.Run` (a run that is no longer
queued — stopped before a worker took it — is left alone), marks it running with this worker's
name, host and pid, then runs the engine in a thread of its own (so the engine installs no
signal handler: the worker's stay Celery's) while the worker's thread watches it every
:data:`WATCH` seconds: it writes what is new (output chunks as :class:`RunEvent` rows, task
states, the engine's run id) into the database, refreshes the heartbeat every
:data:`HEARTBEAT` seconds, and passes a Stop pressed on any web process (``stop_requested_by``)
or the worker's own shutdown (SIGTERM, SIGINT) to the engine as ``RunRequest.stop``. When the
engine returns, the run's record (state, exit status, recap, masked log) is stored in its Run
row and its events deleted, in one transaction.

A worker killed mid-run writes nothing more: its run is marked broken off by whoever looks next
(:func:`fedi_run.panel.runs.check_alive`), the engine's locks (flocks) are released by the
kernel with the process, and the engine's state database says how far it got.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from fedi_run.engine.errors import FediRunError
from fedi_run.panel.live import LiveRun
from fedi_run.panel.models import Run, RunEvent
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
    """What the engine's thread needs: plain values, no model instances."""

    run_pk: int
    deployment: str
    kind: str
    playbook: Path
    inventory: Path
    apply: bool
    check: bool
    resume: bool
    only: tuple[str, ...]
    password_file: Path
    state_path: Path


def _on_shutdown(**_kwargs) -> None:
    SHUTTING_DOWN.set()


def install_shutdown_hook() -> None:
    """Stop the run in progress when the worker shuts down (called by ``panel worker``)."""
    from celery.signals import worker_shutting_down

    worker_shutting_down.connect(_on_shutdown, weak=False)


def carry_out(run_pk: int) -> None:
    """Carry out the queued run ``run_pk`` (see the module's docstring)."""
    from fedi_run.panel import queue, runs

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
    run = Run.objects.select_related("deployment").get(pk=run_pk)
    live = LiveRun(run.pk, run.deployment_id, run.kind)
    try:
        deployment = run.deployment
        job = RunJob(
            run.pk,
            deployment.name,
            run.kind,
            runs.write_playbook(deployment),
            Path(deployment.inventory),
            run.apply,
            bool(getattr(run, "check", False)),
            run.resume,
            tuple(run.only),
            runs.password_file(deployment),
            runs.state_path(runs.directory(deployment)),
        )
    except Exception as error:  # noqa: BLE001 - the data directory or a bug: shown and logged
        _log.exception("run %s could not be prepared", run_pk)
        live.fail(f"error: the run could not be prepared: {error}")
        _store(run_pk, live)
        return
    sink = PanelSink(live, _secrets(job))
    engine = threading.Thread(
        target=_engine, args=(job, live, sink), daemon=True, name=f"fedi-run run {run_pk}"
    )
    engine.start()
    _watch(run_pk, live, engine)
    _store(run_pk, live)


def _secrets(job: RunJob) -> list[str]:
    try:
        return [job.password_file.read_text().rstrip("\n")]
    except OSError:
        return []


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
            state_path=job.state_path,
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


def _store(run_pk: int, live: LiveRun) -> None:
    """Write the ended run's record into its Run row and drop its events (one transaction);
    retried while the database is away."""
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
            live.mark_stored()
            return
        except DatabaseError as error:
            _log.warning("run %s: cannot store its record (%s); trying again", run_pk, error)
            close_old_connections()
            time.sleep(min(1.0 + attempt, 10.0))
    _log.error("run %s: its record could not be stored; it will show as broken off", run_pk)
