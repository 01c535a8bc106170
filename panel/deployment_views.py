"""The deployments' pages: the list, the form (create, edit), a deployment's page (state,
service URLs and health, the hosts it uses), deploying after its plan and ``--check``,
tearing down, deleting.

An operator sees and acts on their own deployments only, staff on every one
(:mod:`fedi_run.panel.access`); another's is a 404. State changes are POSTs with Django's CSRF
token. A deploy is three steps: **Deploy…** starts a ``--check`` run (``runs.start(...,
check=True)``: it runs on the hosts and changes nothing) and shows the engine's plan beside it;
once the check has ended, **Confirm: deploy** starts the deploy. The health (the engine's
``verify``) is checked by a worker: after each deploy that succeeded, and on request.
"""

from __future__ import annotations

import logging
import shutil

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from fedi_run.engine.errors import DeploymentBusy, FediRunError
from fedi_run.panel import checks, deployment_files, queue, runs, site
from fedi_run.panel.access import deployments_of, own_deployment
from fedi_run.panel.catalog import catalog
from fedi_run.panel.environments import hosts_used, needed, placement_of
from fedi_run.panel.forms import DeploymentForm, environments_for
from fedi_run.panel.models import Deployment, Run

_log = logging.getLogger("fedi_run.panel")


def _active(deployment: Deployment) -> int | None:
    """The pk of the deployment's run queued or running, if any."""
    run = runs.active_run(deployment)
    return run.pk if run is not None else None


@login_required
@require_GET
def deployments(request: HttpRequest) -> HttpResponse:
    """The operator's deployments (staff: everyone's), each with its state and last run."""
    shown = list(deployments_of(request.user).select_related("owner", "environment"))
    for deployment in shown:
        deployment.last_run = deployment.runs.first()
    return render(
        request,
        "panel/deployments.html",
        {
            "deployments": shown,
            "can_create": environments_for(request.user).exists(),
        },
    )


def _form_page(request: HttpRequest, deployment: Deployment | None) -> HttpResponse:
    form = DeploymentForm(
        request.POST or None, instance=deployment, owner=request.user, session=request.session
    )
    if deployment is not None and deployment.owner_id != request.user.pk:
        form.owner = deployment.owner  # staff editing an operator's: it stays theirs
    if request.method == "POST":
        if form.is_valid():
            saved = form.save()
            messages.success(request, f"Deployment {saved.name} saved.")
            return redirect("panel:deployment", pk=saved.pk)
        form.keep_password()
    return render(
        request,
        "panel/form.html",
        {
            "form": form,
            "deployment": deployment,
            "no_environment": not form.fields["environment"].queryset.exists(),
        },
    )


@login_required
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def create(request: HttpRequest) -> HttpResponse:
    """A new deployment, from the form."""
    return _form_page(request, None)


@login_required
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a deployment (the name is fixed once it was deployed)."""
    return _form_page(request, own_deployment(request, pk))


def _services(deployment: Deployment) -> list[dict]:
    """Each enabled service with its URL and, when checked since, its health."""
    health = {h["service"]: h for h in deployment.health or ()}
    known = catalog()
    needs = {s.name: s.needs for s in known.services}
    placed = placement_of(deployment)
    return [
        {
            "name": service,
            "url": f"https://{service}.{deployment.domain}/",
            "host": placed.get(service, service),
            "health": health.get(service),
            "needed": service not in deployment.services,
        }
        for service in needed(deployment.services, needs)
    ]


def health_pending(deployment: Deployment) -> bool:
    """A health check was asked for (a button, or a deploy that succeeded) and a worker has
    not stored its results yet."""
    asked, checked = deployment.health_requested_at, deployment.health_checked_at
    return asked is not None and (checked is None or checked < asked)


@login_required
@require_GET
def deployment(request: HttpRequest, pk: int) -> HttpResponse:
    """A deployment: its state, services (URL, health), the hosts it uses, its last runs."""
    deployment = own_deployment(request, pk)
    problem = next((h["problem"] for h in deployment.health or () if h.get("problem")), "")
    return render(
        request,
        "panel/deployment.html",
        {
            "deployment": deployment,
            "state": deployment.state,
            "services": _services(deployment),
            "hosts": hosts_used(deployment),
            "runs": deployment.runs.all()[:5],
            "active": _active(deployment),
            "health_problem": problem,
            "health_pending": health_pending(deployment),
        },
    )


@login_required
@require_POST
def health(request: HttpRequest, pk: int) -> HttpResponse:
    """Check the services' health (the engine's ``verify``): sent to a worker; the page shows
    the results once it has stored them."""
    deployment = own_deployment(request, pk)
    Deployment.objects.filter(pk=deployment.pk).update(health_requested_at=timezone.now())
    try:
        queue.send_health(deployment.pk)
    except Exception as error:  # noqa: BLE001 - kombu's errors vary with the transport
        Deployment.objects.filter(pk=deployment.pk).update(health_requested_at=None)
        messages.error(
            request,
            f"The health check could not be queued: the broker ({site.current().broker.shown})"
            f" cannot be reached: {error}",
        )
    else:
        messages.info(request, "Health check sent to a worker: its results appear here.")
    return redirect("panel:deployment", pk=deployment.pk)


def _start(request: HttpRequest, deployment: Deployment, kind: str, check: bool = False):
    """Start a run; to its page (or, refused, to the run in progress)."""
    try:
        run = runs.start(deployment, kind, check=check)
    except DeploymentBusy as busy:
        messages.error(request, f"Refused: {busy}.")
        if busy.run_pk:
            return redirect("panel:run", pk=deployment.pk, run_pk=busy.run_pk)
        return redirect("panel:deployment", pk=deployment.pk)
    if check:
        return redirect(f"{_url('panel:deploy', deployment)}?check={run.pk}")
    return redirect("panel:run", pk=deployment.pk, run_pk=run.pk)


def _url(name: str, deployment: Deployment) -> str:
    return reverse(name, args=[deployment.pk])


def _check_data(deployment: Deployment, run: Run | None) -> dict | None:
    """The check run's state and, once it ended, the tasks that would change."""
    if run is None:
        return None
    from fedi_run.panel.views import _progress_data

    data = _progress_data(run, 0)
    ended = data["finished"] and data["state"] not in (Run.RUNNING, "storing")
    tasks = data.get("tasks") or []
    return {
        "run": run,
        "ended": ended,
        "result": data["result"],
        "error": data.get("error", ""),
        "changes": [t for t in tasks if t.get("status") == "changed"],
        "failed": [t for t in tasks if t.get("status") in ("failed", "unreachable")],
        "count": len(tasks),
    }


@login_required
@require_http_methods(["GET", "POST"])
def deploy(request: HttpRequest, pk: int) -> HttpResponse:
    """POST: start the ``--check`` run, then show the plan. GET ``?check=N``: the plan and
    that check's result, and the confirmation that starts the deploy."""
    deployment = own_deployment(request, pk)
    if request.method == "POST":
        return _start(request, deployment, "run", check=True)
    check_run = None
    if request.GET.get("check", "").isdigit():
        check_run = get_object_or_404(
            Run, pk=int(request.GET["check"]), deployment=deployment, check=True
        )
    try:
        ran = deployment.runs.exclude(engine_run_id=None).exists()
        plan = checks.plan_of(
            deployment_files.write_playbook(deployment),
            deployment_files.inventory_file(deployment),
            deployment_files.engine_state(deployment) if ran else None,
            deployment.apply,
        )
        plan_error = ""
    except FediRunError as error:
        plan, plan_error = None, error.message
    return render(
        request,
        "panel/deploy.html",
        {
            "deployment": deployment,
            "plan": plan,
            "plan_error": plan_error,
            "check": _check_data(deployment, check_run),
            "plan_hosts": [host for host in (plan or {}).get("hosts", ()) if host != "local"],
            "active": _active(deployment),
        },
    )


@login_required
@require_POST
def confirm_deploy(request: HttpRequest, pk: int) -> HttpResponse:
    """Start the deploy (after its plan and check were shown)."""
    return _start(request, own_deployment(request, pk), "run")


@login_required
@require_http_methods(["GET", "POST"])
def teardown(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: what a teardown does, on which hosts, and a confirmation; POST (confirmed): start
    it."""
    deployment = own_deployment(request, pk)
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
            "hosts": _teardown_hosts(deployment),
            "active": _active(deployment),
        },
    )


def _teardown_hosts(deployment: Deployment) -> list[str]:
    """The hosts a teardown touches: those its services run on, and those its deploys since
    the last teardown ran tasks on (a service switched off since is undone where it was)."""
    found = list(hosts_used(deployment))
    since = deployment.runs.filter(check=False).exclude(state__in=Run.ACTIVE)
    for run in since:
        if run.kind == "teardown" and run.state == Run.FINISHED and run.exit_status == 0:
            break
        found += [host for host in run.recap or {} if host != "local" and host not in found]
    return found


@login_required
@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: a confirmation; POST: remove a never-deployed or torn-down deployment, its runs
    and its files in the data directory. A deployed (or failed) one is refused: tear it down
    first."""
    deployment = own_deployment(request, pk)
    if request.method == "POST":
        if not deployment.deletable or _active(deployment) is not None:
            messages.error(
                request,
                f"Refused: {deployment.name} is {deployment.state}; tear it down first "
                "(a deployment is deleted only when never deployed or torn down).",
            )
            return redirect("panel:deployment", pk=deployment.pk)
        if request.POST.get("confirm") != deployment.name:
            messages.error(request, "Type the deployment's name to confirm the deletion.")
            return redirect("panel:delete", pk=deployment.pk)
        name, directory = deployment.name, deployment_files.directory(deployment)
        deployment_files.drop_engine_state(deployment)
        deployment.delete()  # its runs with it
        shutil.rmtree(directory, ignore_errors=True)  # a worker removes its own copy
        messages.success(request, f"Deployment {name} deleted, with its runs and files.")
        return redirect("panel:deployments")
    return render(request, "panel/delete.html", {"deployment": deployment})
