"""The staff's pages: the environments, and one environment's form — its name, who may deploy
there, its hosts (address, port, user, pinned host key, identity file, NixOS base
configuration, the services each may carry) and its other inventory tables — with the hosts of
an inventory file to import (such as ``fedi-run lab inventory`` prints).

On Save the hosts (the rows, with the imported ones: a host of the same name replaced) are
written as the inventory TOML and loaded by the engine's own loader, as ``fedi-run -i`` would
load it (:func:`fedi_run.panel.environments.check_inventory`); each problem appears beside the
host's field it is about, and nothing is saved until there is none. Then the inventory is
written (0600) where the environment's deployments' runs read it. Only staff reach these pages
(others: 403).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from fedi_run.panel import site
from fedi_run.panel.access import require_staff
from fedi_run.panel.catalog import catalog
from fedi_run.panel.environments import (
    check_inventory,
    import_inventory,
    materialize,
    needed,
    placement,
    render_inventory,
    rows_of,
)
from fedi_run.panel.forms import EnvironmentForm, HostFormSet, ImportForm
from fedi_run.panel.models import Deployment, Environment, EnvironmentHost
from fedi_run.panel.playbooks import NON_FIELD


@login_required
@require_GET
def environments(request: HttpRequest) -> HttpResponse:
    """Every environment, with its hosts, users and deployments."""
    require_staff(request)
    shown = Environment.objects.prefetch_related("hosts", "users", "deployments")
    return render(request, "panel/environments.html", {"environments": shown})


@login_required
@require_http_methods(["GET", "POST"])
def environment_create(request: HttpRequest) -> HttpResponse:
    require_staff(request)
    return _page(request, None)


@login_required
@require_http_methods(["GET", "POST"])
def environment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    require_staff(request)
    return _page(request, get_object_or_404(Environment, pk=pk))


def _page(request: HttpRequest, environment: Environment | None) -> HttpResponse:
    post = request.POST if request.method == "POST" else None
    files = request.FILES if request.method == "POST" else None
    form = EnvironmentForm(post, instance=environment)
    hosts = HostFormSet(post, instance=environment or Environment(), prefix="hosts")
    importing = ImportForm(post, files, prefix="import")
    if post is not None and _save(request, form, hosts, importing):
        messages.success(request, f"Environment {form.instance.name} saved.")
        return redirect("panel:environment_edit", pk=form.instance.pk)
    return render(
        request,
        "panel/environment.html",
        {
            "form": form,
            "hosts": hosts,
            "importing": importing,
            "environment": environment,
            "services": catalog().service_names(),
        },
    )


def _save(request, form, hosts, importing) -> bool:
    """Check every part, the engine's check of the whole inventory last; save when all pass."""
    valid = [form.is_valid(), hosts.is_valid(), importing.is_valid()]
    if not all(valid):
        return False
    data_dir = site.current().data_dir
    text = importing.inventory_text()
    imported = import_inventory(text, data_dir, catalog().service_names()) if text else None
    if imported is not None and imported.problems:
        for problem in imported.problems:
            importing.add_error(
                "text" if not importing.cleaned_data.get("file") else "file", problem.message
            )
        return False
    if importing.errors:
        return False
    kept = [f for f in hosts.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
    rows = {f.cleaned_data["name"]: f.row() for f in kept}
    by_name = {f.cleaned_data["name"]: f for f in kept}
    for row in imported.hosts if imported else ():
        rows[row.name] = row
    extra = form.cleaned_data.get("extra", "")
    if imported is not None and imported.extra and not extra.strip():
        extra = imported.extra
    problems = check_inventory(render_inventory(list(rows.values()), extra), data_dir)
    for problem in problems:
        target = by_name.get(problem.host or "")
        if target is not None and problem.field in target.fields:
            target.add_error(problem.field, problem.message)
        elif target is not None:
            target.add_error(None, problem.message)
        elif problem.host is None and problem.field == NON_FIELD and "[" in problem.message:
            form.add_error("extra", problem.message)
        else:
            form.add_error(None, problem.message)
    moved = _moved_services(form.instance, list(rows.values())) if form.instance.pk else []
    for message in moved:
        form.add_error(None, message)
    if problems or moved:
        return False
    with transaction.atomic():
        environment = form.save(commit=False)
        environment.extra = extra
        environment.save()
        form.save_m2m()
        hosts.instance = environment
        hosts.save()
        for row in imported.hosts if imported else ():
            EnvironmentHost.objects.update_or_create(
                environment=environment,
                name=row.name,
                defaults={
                    "address": row.address,
                    "port": row.port,
                    "user": row.user,
                    "host_key": row.host_key,
                    "identity": row.identity,
                    "nixos": row.nixos,
                    "services": list(row.services),
                },
            )
        materialize(data_dir, environment)  # this process's copy; others write their own
    return True


def _moved_services(environment: Environment, rows) -> list[str]:
    """Why the new ``rows`` would move (or strand) a service of a deployment that is on its
    hosts (deployed or failed): its next run would leave the old host as it is."""
    needs = {s.name: s.needs for s in catalog().services}
    old_rows = rows_of(environment)
    found = []
    for deployment in environment.deployments.all():
        if deployment.state in (Deployment.NEVER, Deployment.TORN_DOWN):
            continue
        wanted = needed(deployment.services, needs)
        before, after = placement(old_rows, wanted), placement(rows, wanted)
        for service in wanted:
            if service in before and before.get(service) != after.get(service):
                found.append(
                    f"the deployment {deployment.name!r} ({deployment.state}) runs {service} "
                    f"on the host {before[service]!r}: keep that host, carrying {service}, "
                    "until it is torn down"
                )
    return found
