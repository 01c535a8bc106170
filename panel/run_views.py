"""The run page's own actions: Resume a run that left work to do, one task's output, and
re-running one task alone (after its page shows what that runs).

As every view of the panel: a logged-in operator's own deployments only (another's: 404),
state changes as POSTs with the CSRF token. Runs start only through
:func:`fedi_run.panel.runs.start` — ``resume=True`` is the engine's ``--resume`` (what the last
deploy left to do: its failed, skipped and never-run tasks), ``only=(task,)`` the engine's
``--only TASK`` (the task and what it needs, docs/selection.md).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from fedi_run.engine.errors import DeploymentBusy
from fedi_run.panel import deployment_files, run_display, runs
from fedi_run.panel.initial_password import secrets_of
from fedi_run.panel.models import Deployment, Run, StoredTaskOutput
from fedi_run.panel.rerun import plan_rerun
from fedi_run.panel.task_output import TaskOutput, find_task, task_output
from fedi_run.panel.views import _own_run, _progress_data

DONE_STATUSES = ("ok", "changed")


def resumable(deployment: Deployment, record: Run, data: dict) -> bool:
    """Whether Resume is offered for ``record`` (its progress ``data``): a deploy (not a
    ``--check``) that failed, was interrupted or broke off, left a task not done, and is the
    deployment's last deploy the engine recorded — ``--resume`` continues the last one."""
    if record.kind != "run" or getattr(record, "check", False):
        return False
    tone = run_display.shown(data["state"], data["exit_status"], data["error"]).tone
    if tone not in run_display.RESUMABLE:
        return False
    if data.get("engine_run_id") is None and tone != run_display.BROKEN:
        return False  # the engine never recorded it: nothing of it to resume
    tasks = data.get("tasks") or ()
    if tasks and all(t.get("status") in DONE_STATUSES for t in tasks):
        return False
    later = deployment.runs.filter(kind="run", pk__gt=record.pk)
    if hasattr(Run, "check"):
        later = later.filter(check=False)
    return not later.exclude(engine_run_id=None).exists()


def _begin(request: HttpRequest, deployment: Deployment, **how) -> HttpResponse:
    """Start a deploy of ``deployment`` (``runs.start(deployment, "run", **how)``) and show it;
    a deployment already running is refused with a message."""
    try:
        started = runs.start(deployment, "run", **how)
    except DeploymentBusy as busy:
        messages.error(request, f"Refused: {busy}.")
        if busy.run_pk:
            return redirect("panel:run", pk=deployment.pk, run_pk=busy.run_pk)
        return redirect("panel:deployment", pk=deployment.pk)
    return redirect("panel:run", pk=deployment.pk, run_pk=started.pk)


@login_required
@require_POST
def resume(request: HttpRequest, pk: int, run_pk: int) -> HttpResponse:
    """Resume a failed, interrupted or broken-off deploy: the engine's ``--resume``."""
    deployment, record = _own_run(request, pk, run_pk)
    if not resumable(deployment, record, _progress_data(record, 2**31)):
        messages.error(
            request,
            "Nothing to resume from this run: only the last deploy that failed, was "
            "interrupted or broke off can be resumed (a later deploy replaced it, or it left "
            "nothing to do).",
        )
        return redirect("panel:run", pk=deployment.pk, run_pk=record.pk)
    return _begin(request, deployment, resume=True)


def _stored(record: Run, task: str) -> tuple[str, int] | None:
    """The task's output the worker stored with the ended run, if any."""
    found = StoredTaskOutput.objects.filter(run=record, task=task).values_list("text", "size")
    return found.first()


def _task_of(request: HttpRequest, pk: int, run_pk: int, task: str):
    deployment, record = _own_run(request, pk, run_pk)
    data = _progress_data(record, 0)
    found = task_output(data, task, _stored(record, task), secrets_of(deployment))
    if found is None:
        raise Http404(f"no task {task} in this run")
    return deployment, record, data, found


def can_rerun(record: Run, data: dict) -> bool:
    """A task of an ended deploy (not a ``--check``, not a teardown) may be re-run alone."""
    ended = data["finished"] and data["state"] not in ("running", "storing", "queued")
    return ended and record.kind == "run" and not getattr(record, "check", False)


@never_cache
@login_required
@require_GET
def task_output_json(request: HttpRequest, pk: int, run_pk: int, task: str) -> JsonResponse:
    """One task's state and output as JSON (what its row on the run page opens)."""
    deployment, record, data, found = _task_of(request, pk, run_pk, task)
    return JsonResponse(
        {
            **found.as_json(),
            "finished": bool(data["finished"]),
            "can_rerun": can_rerun(record, data),
        }
    )


@login_required
@require_GET
def task(request: HttpRequest, pk: int, run_pk: int, task: str) -> HttpResponse:
    """One task of a run: its state, its whole output, and re-running it alone — with the
    tasks that runs (the engine's ``--only`` selection) listed before it is confirmed."""
    deployment, record, data, found = _task_of(request, pk, run_pk, task)
    plan = None
    if can_rerun(record, data):
        plan = plan_rerun(
            deployment_files.write_playbook(deployment),
            deployment_files.inventory_file(deployment),
            deployment.apply,
            task,
        )
    return render(
        request,
        "panel/task.html",
        {
            "deployment": deployment,
            "run": record,
            "number": run_display.number(data.get("engine_run_id"), data["state"]),
            "task": found,
            "tone": _task_tone(found),
            "plan": plan,
        },
    )


def _task_tone(found: TaskOutput) -> str:
    return f"status-{found.status or 'pending'}"


@login_required
@require_POST
def rerun(request: HttpRequest, pk: int, run_pk: int, task: str) -> HttpResponse:
    """Re-run one task of an ended deploy alone: the engine's ``--only TASK``."""
    deployment, record = _own_run(request, pk, run_pk)
    data = _progress_data(record, 2**31)
    if find_task(data, task) is None:
        raise Http404(f"no task {task} in this run")
    if not can_rerun(record, data):
        messages.error(request, "Only a task of an ended deploy can be re-run alone.")
        return redirect("panel:run", pk=deployment.pk, run_pk=record.pk)
    return _begin(request, deployment, only=(task,))
