"""The panel's run pages (the deployments' own pages: :mod:`fedi_run.panel.deployment_views`,
the staff's: :mod:`fedi_run.panel.environment_views`). Every view but the login page needs a
logged-in user, and every deployment (and run) is looked up among the operator's own — staff:
among all (:mod:`fedi_run.panel.access`): another operator's is a 404.
State changes are POSTs with Django's CSRF token; the run page's script only reads
(:func:`progress`)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from fedi_run.engine.errors import DeploymentBusy
from fedi_run.panel import run_display, runs
from fedi_run.panel.access import own_deployment
from fedi_run.panel.models import Deployment, Run


def _own(request: HttpRequest, pk: int) -> Deployment:
    return own_deployment(request, pk)  # the operator's own; staff: any


def _active(deployment: Deployment) -> int | None:
    """The pk of the deployment's run queued or running on any worker, if any."""
    run = runs.active_run(deployment)
    return run.pk if run is not None else None


def _own_run(request: HttpRequest, pk: int, run_pk: int) -> tuple[Deployment, Run]:
    deployment = _own(request, pk)
    return deployment, get_object_or_404(Run, pk=run_pk, deployment=deployment)


def _start(request: HttpRequest, deployment: Deployment, kind: str) -> HttpResponse:
    try:
        run = runs.start(deployment, kind)
    except DeploymentBusy as busy:
        messages.error(request, f"Refused: {busy}.")
        if busy.run_pk:
            return redirect("panel:run", pk=deployment.pk, run_pk=busy.run_pk)
        return redirect("panel:deployment", pk=deployment.pk)
    return redirect("panel:run", pk=deployment.pk, run_pk=run.pk)


@login_required
@require_POST
def stop(request: HttpRequest, pk: int, run_pk: int) -> HttpResponse:
    """Stop a run in progress, as Ctrl-C stops the command line: nothing new starts, running
    tasks finish within their grace period, the rest is recorded as interrupted (exit 130);
    a later deploy picks up from there."""
    deployment, record = _own_run(request, pk, run_pk)
    if runs.request_stop(record, request.user.get_username()):
        messages.info(request, "Stopping: the running tasks finish, nothing new starts.")
    else:
        messages.error(request, "This run is not in progress, or is already stopping.")
    return redirect("panel:run", pk=deployment.pk, run_pk=record.pk)


@login_required
@require_GET
def history(request: HttpRequest, pk: int) -> HttpResponse:
    """Every run of the deployment, newest first, with its recap."""
    deployment = _own(request, pk)
    return render(
        request, "panel/history.html", {"deployment": deployment, "runs": deployment.runs.all()}
    )


@login_required
@require_GET
def run(request: HttpRequest, pk: int, run_pk: int) -> HttpResponse:
    """One run: live while it runs (the script polls :func:`progress`), then its record. Its
    number is the engine's history id; each task row opens the task's output
    (``run_views.task``); a deploy that failed, was interrupted or broke off offers Resume."""
    from fedi_run.panel import run_views

    deployment, record = _own_run(request, pk, run_pk)
    data = _progress_data(record, 0)
    chunks = data["chunks"]  # the same snapshot as data["next"]: the script goes on from there
    # The templates' "TASK" placeholder: the script puts each task's id in its place.
    task_url = reverse("panel:task", args=[deployment.pk, record.pk, "TASK"])
    output_url = reverse("panel:task_output", args=[deployment.pk, record.pk, "TASK"])
    return render(
        request,
        "panel/run.html",
        {
            "deployment": deployment,
            "run": record,
            "data": data,
            "number": run_display.number(data.get("engine_run_id"), data["state"]),
            "offer_resume": run_views.resumable(deployment, record, data),
            "may_resume": record.kind == "run" and not getattr(record, "check", False),
            "task_url": task_url,
            "output_url": output_url,
            "apply_output": data.get("apply_output")
            or "".join(
                c["text"]
                for c in chunks
                if c["task"].startswith("nixops4.") and c["stream"] != "event"
            ),
            "log": data.get("log") or "".join(c["text"] for c in chunks),
        },
    )


@never_cache
@login_required
@require_GET
def progress(request: HttpRequest, pk: int, run_pk: int) -> JsonResponse:
    """The run's state as JSON: tasks, output chunks after ``?after=N``, recap when done."""
    _, record = _own_run(request, pk, run_pk)
    try:
        after = max(int(request.GET.get("after", "0")), 0)
    except ValueError:
        raise Http404("bad ?after") from None
    return JsonResponse(_progress_data(record, after))


def _progress_data(record: Run, after: int) -> dict:
    """The run as the database has it — written by the worker carrying it out, wherever that
    is: while it runs, its tasks and the output chunks numbered above ``after``; once ended,
    its stored record, whole (``log``, ``apply_output``). A run whose worker is gone is
    marked broken off first (:func:`runs.check_alive`)."""
    runs.check_alive(Run.objects.filter(pk=record.pk))
    record.refresh_from_db()
    live = record.state in Run.ACTIVE
    data = {
        "tasks": record.tasks,
        "chunks": [],
        "next": after,
        "finished": not live,
        "exit_status": record.exit_status,
        "stopping": live and bool(record.stop_requested_by),
        "recap": record.recap,
        "error": record.error,
        "duration": (
            (record.finished_at - record.started_at).total_seconds() if record.finished_at else None
        ),
        "engine_run_id": record.engine_run_id,
        "state": record.state,
        "stored": not live,
        "worker": record.worker,
        "resume": record.resume,
        "only": record.only,
    }
    if live:
        chunks = [
            {"number": number, "task": task, "stream": stream, "text": text}
            for number, task, stream, text in record.events.filter(number__gt=after)
            .order_by("number")
            .values_list("number", "task", "stream", "text")
        ]
        data["chunks"] = chunks
        data["next"] = chunks[-1]["number"] if chunks else after
    else:
        data["log"] = record.log
        data["apply_output"] = record.apply_output
    data.update(run_display.page_fields(data))  # tone, label, number, error_text, advice
    data["result"] = data["label"]
    return data
