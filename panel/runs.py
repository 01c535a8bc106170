"""Starting, stopping and watching a deploy or teardown: the web processes' side of runs.

:func:`start` records a queued :class:`~fedi_run.panel.models.Run` and sends it to the broker;
a ``fedi-run panel worker`` takes it and carries it out through the engine's Python API
(:mod:`fedi_run.panel.worker`) — a web process never runs the engine. One run per deployment
at a time, whichever worker has it (:func:`active_run`; a second start:
:class:`~fedi_run.engine.errors.DeploymentBusy`); the engine's own deployment lock still
applies (a run of the same deployment from the command line makes the panel's run fail with
the engine's ``LockHeld`` message). :func:`request_stop` is the Stop button;
:func:`check_alive` marks the runs of dead workers as broken off.

Nothing here writes a file: what a run needs travels in the database, and the worker writes
its own copies (:mod:`fedi_run.panel.deployment_files`).
"""

from __future__ import annotations

import logging
import socket

from django.db import transaction
from django.utils import timezone

from fedi_run.engine.errors import DeploymentBusy
from fedi_run.panel import site
from fedi_run.panel.models import Deployment, Run
from fedi_run.panel.worker import HEARTBEAT

_log = logging.getLogger("fedi_run.panel")
KINDS = ("run", "teardown")
BROKEN_AFTER = 10 * HEARTBEAT
"""Seconds without a heartbeat after which a running run is broken off (its worker is gone)."""


def start(
    deployment: Deployment,
    kind: str,
    check: bool = False,
    resume: bool = False,
    only: tuple[str, ...] = (),
) -> Run:
    """Queue a ``kind`` ("run" or "teardown") of ``deployment`` for a worker; the new
    :class:`Run` row (state ``queued``). ``check``: the engine's ``--check`` (runs on the
    hosts, changes nothing); ``resume``: its ``--resume`` (what the last run left to do);
    ``only``: task ids, its ``--only`` (each alone; with its needs already done).

    The web process never runs the engine: it records the run and sends its pk to the broker
    (:func:`fedi_run.panel.queue.send_run`). :class:`DeploymentBusy` (naming the run) when a
    run of the deployment is queued or running on any worker — the deployment's row is locked
    while this is decided, so two web processes cannot both start one; a bad ``only``:
    :class:`~fedi_run.engine.errors.SelectionError`. A broker that cannot be reached: the run
    is recorded as could not run, saying so (and returned)."""
    from fedi_run.engine.planning.selection import Selector

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    only = tuple(only)
    Selector(only=only)  # an empty task id is refused here, before anything is recorded
    with transaction.atomic():
        Deployment.objects.select_for_update().filter(pk=deployment.pk).first()
        busy = active_run(deployment)
        if busy is not None:
            raise DeploymentBusy(deployment.name, busy.pk)
        run = Run.objects.create(
            deployment=deployment,
            kind=kind,
            state=Run.QUEUED,
            apply=deployment.apply,
            check=check,
            resume=resume,
            only=list(only),
        )
    from fedi_run.panel import queue

    try:
        queue.send_run(run.pk)
    except Exception as error:  # noqa: BLE001 - kombu's errors vary with the transport
        _log.error("run %s: cannot reach the broker: %s", run.pk, error)
        Run.objects.filter(pk=run.pk, state=Run.QUEUED).update(
            state=Run.ERROR,
            finished_at=timezone.now(),
            error=f"error: the run could not be queued: the broker ({site.current().broker.shown})"
            f" cannot be reached: {error}; start it (and a `fedi-run panel worker`), then deploy "
            "again",
        )
        run.refresh_from_db()
    return run


def active_run(deployment: Deployment) -> Run | None:
    """The deployment's run queued or running on a worker that is alive, if any (runs whose
    worker is gone are marked broken off first, :func:`check_alive`)."""
    check_alive(Run.objects.filter(deployment=deployment))
    return Run.objects.filter(deployment=deployment, state__in=Run.ACTIVE).first()


def request_stop(run: Run, by: str) -> bool:
    """Stop ``run`` as Ctrl-C stops the command line: its worker (polling
    ``stop_requested_by``) tells the engine — nothing new starts, running tasks get their grace
    period, the rest is recorded as interrupted (exit 130). A run still queued is not carried
    out at all (recorded as could not run). False when it has ended or is already stopping."""
    check_alive(Run.objects.filter(pk=run.pk))
    if Run.objects.filter(pk=run.pk, state=Run.QUEUED).update(
        state=Run.ERROR,
        stop_requested_by=by,
        finished_at=timezone.now(),
        error=f"stopped by {by} before a worker took it: nothing was run",
    ):
        return True
    return bool(
        Run.objects.filter(pk=run.pk, state=Run.RUNNING, stop_requested_by="").update(
            stop_requested_by=by
        )
    )


def check_alive(runs=None) -> int:
    """Mark as broken off each running run (of ``runs``, default all) whose worker is gone:
    its heartbeat older than :data:`BROKEN_AFTER` seconds, or its worker's pid gone on this
    machine. Called by whoever looks (the progress view, the deployment's page, a start, a
    worker starting). Returns how many were marked."""
    runs = Run.objects.all() if runs is None else runs
    now = timezone.now()
    here = socket.gethostname()
    marked = 0
    for run in runs.filter(state=Run.RUNNING).only(
        "pk", "worker", "worker_host", "worker_pid", "heartbeat_at", "started_at"
    ):
        beat = run.heartbeat_at or run.started_at
        silent = (now - beat).total_seconds() > BROKEN_AFTER
        dead = bool(run.worker_pid) and run.worker_host == here and not _alive(run.worker_pid)
        if not (silent or dead):
            continue
        why = (
            f"its worker ({run.worker}) is gone"
            if dead
            else f"its worker ({run.worker or 'none'}) sent no heartbeat for "
            f"{(now - beat).total_seconds():.0f} s"
        )
        marked += Run.objects.filter(pk=run.pk, state=Run.RUNNING).update(
            state=Run.BROKEN,
            finished_at=now,
            error=f"broken off: {why}. The engine's state database says how far it got; "
            "Resume continues it on another worker (what was done is not done again)",
        )
    return marked


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        return True
