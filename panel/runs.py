"""Starting a deploy or teardown in the background, through the engine's Python API.

:func:`start` writes the deployment's playbook, claims the deployment on the process's
:data:`~fedi_run.panel.live.BOARD` (a second start while one runs:
:class:`~fedi_run.engine.errors.DeploymentBusy`), records a :class:`~fedi_run.panel.models.Run`
and starts a thread that loads the project (:func:`fedi_run.engine.project.load_project`)
and calls :func:`fedi_run.engine.run.run_project` with a :class:`~fedi_run.panel.sink.PanelSink`
— the CLI is never called. The engine's own deployment lock still applies: a run of the same
deployment from the command line makes the panel's run fail with the engine's ``LockHeld``
message. When the run ends, its tasks, recap and masked log are stored in the Run row, then the
live state is dropped.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from django.db import close_old_connections, connection
from django.utils import timezone

from fedi_run.engine.errors import FediRunError
from fedi_run.panel import paths, site
from fedi_run.panel.catalog import catalog
from fedi_run.panel.live import BOARD, LiveRun
from fedi_run.panel.models import Deployment, Run
from fedi_run.panel.playbooks import DeploymentSpec, InitialUser, render_playbook
from fedi_run.panel.sink import PanelSink

_log = logging.getLogger("fedi_run.panel")
KINDS = ("run", "teardown")
STOP_MARGIN = 15.0
"""Seconds a stopped run may take beyond its grace period: the engine closes its connections
and ends its local commands (engine.execute.jobs: up to KILL_AFTER), records the rest as
interrupted, and the run thread stores its record."""


@dataclass(frozen=True)
class RunJob:
    """What the run thread needs: plain values, no model instances."""

    run_pk: int
    deployment_pk: int
    deployment: str
    kind: str
    playbook: Path
    inventory: Path
    apply: bool
    password_file: Path


def directory(deployment: Deployment) -> Path:
    """The deployment's directory in the data directory (created 0700)."""
    return paths.deployment_dir(site.current().data_dir, deployment.key)


def password_file(deployment: Deployment) -> Path:
    """Where the deployment's initial user password is kept (0600)."""
    return directory(deployment) / paths.PASSWORD_FILE


def playbook_file(deployment: Deployment) -> Path:
    """The deployment's ``playbook.toml``, written by :func:`write_playbook`."""
    return directory(deployment) / paths.PLAYBOOK_FILE


def state_path(deployment_directory: Path) -> Path:
    """The engine's state database of a deployment (``--state``): in its directory, where the
    command line would look for it too (``.fedi-run/state.db`` beside the playbook)."""
    return deployment_directory / ".fedi-run" / "state.db"


def spec_of(deployment: Deployment, password: Path | None = None) -> DeploymentSpec:
    """The deployment as a :class:`DeploymentSpec`."""
    known = catalog()
    return DeploymentSpec(
        name=deployment.name,
        domain=deployment.domain,
        services=tuple(s for s in deployment.services if s in known.service_names()),
        known=known.service_names(),
        initial_user=InitialUser(
            deployment.initial_username,
            deployment.initial_display_name,
            deployment.initial_email,
            password or password_file(deployment),
        ),
        acme_email=deployment.acme_email,
        acme_accept_terms=deployment.acme_accept_terms,
        acme=known.acme,
    )


def write_playbook(deployment: Deployment) -> Path:
    """(Re)write the deployment's ``playbook.toml`` (0600) from its current values."""
    return paths.write_private(playbook_file(deployment), render_playbook(spec_of(deployment)))


def write_password(deployment: Deployment, password: str) -> Path:
    """Keep the initial user's password in its 0600 file — the only place it is stored."""
    return paths.write_private(password_file(deployment), password + "\n")


def start(deployment: Deployment, kind: str) -> Run:
    """Start a ``kind`` ("run" or "teardown") of ``deployment`` in a background thread; the
    :class:`Run` row. DeploymentBusy when one of its runs is in progress in this panel."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    BOARD.claim(deployment.pk, deployment.name)
    try:
        playbook = write_playbook(deployment)
        run = Run.objects.create(deployment=deployment, kind=kind, apply=deployment.apply)
        live = LiveRun(run.pk, deployment.pk, kind)
        BOARD.register(live)
        job = RunJob(
            run.pk,
            deployment.pk,
            deployment.name,
            kind,
            playbook,
            Path(deployment.inventory),
            deployment.apply,
            password_file(deployment),
        )
        threading.Thread(
            target=_work, args=(job, live), daemon=True, name=f"fedi-run panel {kind} {run.pk}"
        ).start()
    except BaseException:
        BOARD.release(deployment.pk)
        raise
    return run


def _work(job: RunJob, live: LiveRun) -> None:
    """The run thread: load, run, store, release."""
    from fedi_run.engine.execute.scheduler import ExecutionOptions
    from fedi_run.engine.project import load_project
    from fedi_run.engine.run import RunRequest, run_project

    secrets = []
    try:
        secrets.append(job.password_file.read_text().rstrip("\n"))
    except OSError:
        pass
    sink = PanelSink(live, secrets)
    try:
        project = load_project(job.playbook, [job.inventory], apply=job.apply)
        options = ExecutionOptions(kind=job.kind, forks=project.playbook.run.forks)
        request = RunRequest(
            options=options,
            state_path=state_path(job.playbook.parent),
            argv=("panel", "deploy" if job.kind == "run" else job.kind, job.deployment),
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
        try:
            _store(job, live)
        finally:
            live.mark_stored()
            BOARD.release(job.deployment_pk)
            connection.close()


def _store(job: RunJob, live: LiveRun) -> None:
    """Write the ended run's record into its Run row."""
    close_old_connections()
    data = live.snapshot()
    Run.objects.filter(pk=job.run_pk).update(
        state=Run.ERROR if data["error"] else Run.FINISHED,
        engine_run_id=data["engine_run_id"],
        finished_at=timezone.now(),
        exit_status=data["exit_status"],
        error=data["error"],
        tasks=data["tasks"],
        recap=data["recap"],
        log=live.log(),
        apply_output=live.apply_output(),
    )


def stop_all(by: str, timeout: float | None = None) -> list[int]:
    """Stop every run in progress in this process as its Stop button does (the engine: nothing
    new starts, running tasks get their grace period, then are stopped, the rest recorded as
    interrupted — exit 130), and wait up to ``timeout`` seconds (default: the grace period and
    :data:`STOP_MARGIN`) for each to end and be stored. A run still going then is recorded as
    interrupted in the panel's history and in the engine's state database alike. Returns the
    pks of the runs that were stopped."""
    from fedi_run.engine.execute.scheduler import ExecutionOptions

    if timeout is None:
        timeout = ExecutionOptions().grace + STOP_MARGIN
    live = BOARD.live()
    for run in live:
        run.request_stop(by)
    if not BOARD.wait_idle(timeout):
        for run in live:
            if not run.stored:
                _record_abandoned(run, by, timeout)
    return [run.run_pk for run in live]


def _record_abandoned(live: LiveRun, by: str, waited: float) -> None:
    """``live`` did not end within ``waited`` seconds of the stop: recorded as interrupted
    (exit 130) here and, when it had begun, in the engine's state database, as the engine
    itself records a stopped run."""
    from fedi_run.engine.report.events import RunFinished
    from fedi_run.engine.report.state import StateStore

    close_old_connections()
    note = (
        f"interrupted: stop requested by {by}; the run had not ended {waited:g} s later, when "
        "the panel stopped — the engine's state database says how far it got"
    )
    data = live.snapshot()
    record = Run.objects.filter(pk=live.run_pk, state=Run.RUNNING)
    deployment = Deployment.objects.filter(runs__pk=live.run_pk).first()
    if data["engine_run_id"] is not None and deployment is not None:
        try:
            with StateStore.open(state_path(directory(deployment))) as store:
                store.handle(RunFinished(data["engine_run_id"], 130, 0.0, True, data["recap"]))
        except FediRunError as error:
            _log.error("run %s: cannot record it as interrupted: %s", live.run_pk, error)
    record.update(
        state=Run.FINISHED,
        engine_run_id=data["engine_run_id"],
        finished_at=timezone.now(),
        exit_status=130,
        tasks=data["tasks"],
        recap=data["recap"],
        log=live.log() + note + "\n",
        apply_output=live.apply_output(),
    )


def recover_orphans() -> int:
    """Runs recorded as running by a panel process that is gone: marked as broken off.
    Called when a panel starts serving; returns how many."""
    return Run.objects.filter(state=Run.RUNNING).update(
        state=Run.ERROR,
        finished_at=timezone.now(),
        error="error: the panel stopped while this run was in progress; its record in the "
        "engine's state database says how far it got (a new deploy picks up from there)",
    )
