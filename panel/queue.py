"""The task queue between the web processes and the workers: Celery, configured in code.

A web process only *sends* a run (:func:`send_run`: the Run row's pk, nothing else) or a
health check (:func:`send_health`: the deployment's pk); a
``fedi-run panel worker`` process takes runs one at a time (:func:`work`) and carries each out
(:func:`fedi_run.panel.worker.carry_out`). The settings that matter for runs:

* ``task_acks_late=False``: a run's message is acknowledged when a worker takes it, so a worker
  killed mid-run never has its run taken again by another — the run is marked broken off
  (:mod:`fedi_run.panel.runs`) and the operator resumes it;
* ``worker_prefetch_multiplier=1`` and the solo pool: a worker holds one run at a time, in its
  own process (a SIGKILL ends the run with it), and takes no other while it runs;
* no results stored, no remote control, gossip, mingle or events: the database is where runs
  are followed.

The broker is the data directory's own files or Redis (:mod:`fedi_run.panel.backends`).
"""

from __future__ import annotations

import os
import socket

from fedi_run.panel import site

RUN_TASK = "fedi_run.panel.run"
HEALTH_TASK = "fedi_run.panel.health"
QUEUE = "fedi-run-panel"

_app = None


def app():
    """The process's Celery app, for the configured site's broker (made once)."""
    global _app
    if _app is not None:
        return _app
    from celery import Celery

    broker = site.current().broker
    celery = Celery("fedi_run_panel", set_as_current=True)
    celery.conf.update(
        broker_url=broker.url,
        broker_transport_options=broker.options,
        broker_connection_retry_on_startup=True,
        task_acks_late=False,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="solo",
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
    )

    @celery.task(name=RUN_TASK, ignore_result=True)
    def run(run_pk: int) -> None:
        from fedi_run.panel.worker import carry_out

        carry_out(run_pk)

    @celery.task(name=HEALTH_TASK, ignore_result=True)
    def health(deployment_pk: int) -> None:
        from fedi_run.panel.worker import check_health

        check_health(deployment_pk)

    _app = celery
    return celery


def send_run(run_pk: int) -> None:
    """Put the run on the queue (a few retries if the broker is not reachable; then the
    broker's error is raised)."""
    _send(RUN_TASK, run_pk)


def send_health(deployment_pk: int) -> None:
    """Put a health check (the engine's ``verify``) of the deployment on the queue (retried
    as :func:`send_run`)."""
    _send(HEALTH_TASK, deployment_pk)


def _send(task: str, pk: int) -> None:
    app().send_task(
        task,
        args=[pk],
        queue=QUEUE,
        retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
    )


def worker_name() -> str:
    """This worker's name: ``fedi-run@HOST:PID``."""
    return f"fedi-run@{socket.gethostname()}:{os.getpid()}"


def work(loglevel: str = "WARNING") -> None:
    """Run this process as a worker until SIGTERM or SIGINT (Celery's warm shutdown: the run
    in progress is stopped as its Stop button does, recorded, then the worker exits)."""
    app().worker_main(
        [
            "--quiet",  # no banner
            "worker",
            "--pool=solo",
            "--concurrency=1",
            f"--hostname={worker_name()}",
            f"--queues={QUEUE}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--loglevel={loglevel}",
        ]
    )
