"""The panel's pages. Every view but the login page needs a logged-in operator, and every
deployment (and run) is looked up among the operator's own: another operator's is a 404.
State changes are POSTs with Django's CSRF token; the run page's script only reads
(:func:`progress`)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from fedi_run.engine.errors import DeploymentBusy
from fedi_run.panel import runs
from fedi_run.panel.forms import DeploymentForm
from fedi_run.panel.live import BOARD
from fedi_run.panel.models import Deployment, Run
from fedi_run.panel.playbooks import hosts_of


def _own(request: HttpRequest, pk: int) -> Deployment:
    return get_object_or_404(Deployment, pk=pk, owner=request.user)


def _own_run(request: HttpRequest, pk: int, run_pk: int) -> tuple[Deployment, Run]:
    deployment = _own(request, pk)
    return deployment, get_object_or_404(Run, pk=run_pk, deployment=deployment)


@login_required
@require_GET
def deployments(request: HttpRequest) -> HttpResponse:
    """The operator's deployments, each with its last run."""
    mine = list(Deployment.objects.filter(owner=request.user))
    for deployment in mine:
        deployment.last_run = deployment.runs.first()
    return render(request, "panel/deployments.html", {"deployments": mine})


@login_required
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def create(request: HttpRequest) -> HttpResponse:
    """A new deployment, from the form."""
    form = DeploymentForm(request.POST or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        deployment = form.save()
        messages.success(request, f"Deployment {deployment.name} saved.")
        return redirect("panel:deployment", pk=deployment.pk)
    return render(request, "panel/form.html", {"form": form, "deployment": None})


@login_required
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change one of the operator's deployments."""
    deployment = _own(request, pk)
    form = DeploymentForm(request.POST or None, instance=deployment, owner=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Deployment {deployment.name} saved.")
        return redirect("panel:deployment", pk=deployment.pk)
    return render(request, "panel/form.html", {"form": form, "deployment": deployment})


@login_required
@require_GET
def deployment(request: HttpRequest, pk: int) -> HttpResponse:
    """A deployment: its settings, its hosts, deploy and teardown, its last runs."""
    deployment = _own(request, pk)
    return render(
        request,
        "panel/deployment.html",
        {
            "deployment": deployment,
            "hosts": hosts_of(deployment.inventory),
            "runs": deployment.runs.all()[:5],
            "active": BOARD.active_run(deployment.pk),
        },
    )


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
def deploy(request: HttpRequest, pk: int) -> HttpResponse:
    """Start a deploy in the background; show it live."""
    return _start(request, _own(request, pk), "run")


@login_required
@require_http_methods(["GET", "POST"])
def teardown(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: what a teardown does, and a confirmation; POST (confirmed): start it."""
    deployment = _own(request, pk)
    if request.method == "POST":
        if request.POST.get("confirm") != deployment.name:
            messages.error(request, "Type the deployment's name to confirm the teardown.")
            return redirect("panel:teardown", pk=deployment.pk)
        return _start(request, deployment, "teardown")
    return render(
        request,
        "panel/teardown.html",
        {
            "deployment": deployment,
            "hosts": hosts_of(deployment.inventory),
            "active": BOARD.active_run(deployment.pk),
        },
    )


@login_required
@require_POST
def stop(request: HttpRequest, pk: int, run_pk: int) -> HttpResponse:
    """Stop a run in progress, as Ctrl-C stops the command line: nothing new starts, running
    tasks finish within their grace period, the rest is recorded as interrupted (exit 130);
    a later deploy picks up from there."""
    deployment, record = _own_run(request, pk, run_pk)
    live = BOARD.get(record.pk)
    if live is not None and live.request_stop(request.user.get_username()):
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
    """One run: live while it runs (the script polls :func:`progress`), then its record."""
    deployment, record = _own_run(request, pk, run_pk)
    data = _progress_data(record, 0)
    chunks = data["chunks"]  # the same snapshot as data["next"]: the script goes on from there
    return render(
        request,
        "panel/run.html",
        {
            "deployment": deployment,
            "run": record,
            "data": data,
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
    """From the live run while it is in this process, else from the stored record."""
    live = BOARD.get(record.pk)
    if live is not None:
        data = live.snapshot(after)
        if not data["finished"]:
            data["state"] = Run.RUNNING
        elif not data["stored"]:
            data["state"] = "storing"
        else:
            data["state"] = Run.ERROR if data["error"] else Run.FINISHED
    else:  # not followed live in this process: the stored record, whole
        record.refresh_from_db()
        data = {
            "tasks": record.tasks,
            "chunks": [],
            "next": after,
            "finished": record.state != Run.RUNNING,
            "exit_status": record.exit_status,
            "stopping": False,
            "recap": record.recap,
            "error": record.error,
            "duration": None,
            "engine_run_id": record.engine_run_id,
            "state": record.state,
            "stored": True,
            "log": record.log,
            "apply_output": record.apply_output,
        }
    data["result"] = _result(data)
    return data


def _result(data: dict) -> str:
    if data["error"]:
        return "could not run"
    if not data["finished"] or data["exit_status"] is None:
        return "running"
    return {0: "done", 130: "interrupted"}.get(
        data["exit_status"], f"failed (exit {data['exit_status']})"
    )
