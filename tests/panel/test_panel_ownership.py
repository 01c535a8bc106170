"""Two panel deployments on one inventory, on the lab: each keeps to what is its own.

The panel writes each deployment's playbook in a directory of its own, so each has its own
state; their hosts are the same. One deploys mastodon and pixelfed, the other mastodon and
peertube, then switches everything off: every file under /var/lib/fedi-run, /etc and the other
places fedi-run writes to, on every host, is compared byte for byte (``helpers.host_snapshot``).
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from helpers import changed_entries, host_snapshot
from panel_helpers import HOSTS, wait_for_run

from fedi_run.panel.models import Deployment, Run

pytestmark = pytest.mark.lab


def create(client, data) -> Deployment:
    response = client.post(reverse("panel:create"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return Deployment.objects.get(name=data["name"], owner=response.wsgi_request.user)


def deploy(client, deployment: Deployment) -> Run:
    before = set(deployment.runs.values_list("pk", flat=True))
    response = client.post(reverse("panel:confirm_deploy", args=[deployment.pk]))
    assert response.status_code == 302
    [pk] = set(deployment.runs.values_list("pk", flat=True)) - before
    run = wait_for_run(pk, timeout=300)
    assert run.state == Run.FINISHED and run.exit_status == 0, run.error or run.log[-3000:]
    return run


def snapshots(lab) -> dict[str, dict[str, str]]:
    return {host: host_snapshot(lab, host) for host in HOSTS}


def only_its_own(before: dict, after: dict, name: str, files: bool) -> None:
    """Between the two snapshots, nothing changed but entries added under the deployment
    ``name``'s own directory (``files``: files among them; else directories only) — and
    /var/lib/fedi-run itself on a host it was the first to use."""
    root = f"/var/lib/fedi-run/{name}"
    for host in HOSTS:
        for path, (old, new) in changed_entries(before[host], after[host]).items():
            ours = path in (root, "/var/lib/fedi-run") or path.startswith(root + "/")
            assert ours, (host, path, old, new)
            assert old is None, (host, path, old, new)
            assert files or new.startswith("d "), (host, path, new)


@pytest.mark.reliability(
    "security",
    "two panel deployments on one inventory: one deploys mastodon and pixelfed, the other "
    "mastodon and peertube, then switches every service off",
    "both deploys done; the second adds files only under /var/lib/fedi-run/<its name>/, its "
    "clean-up runs only on the hosts it used (not pixelfed's) and leaves none of its files; "
    "the first's every file and secret byte for byte as before, its next deploy all ok",
)
def test_two_panel_deployments_on_one_inventory_keep_to_their_own(
    lab_factory, operator, client_for, form_data
):
    lab = lab_factory(HOSTS)
    client = client_for(operator())
    common = {"inventory": str(lab.inventory_path), "apply": None}
    common |= {"acme_email": "", "acme_accept_terms": None}  # no ACME: the lab runs none
    first = create(client, form_data(services=["mastodon", "pixelfed"], **common))
    second_data = form_data(services=["mastodon", "peertube"], **common)
    second = create(client, second_data)

    deploy(client, first)
    before = snapshots(lab)
    assert any(f"/var/lib/fedi-run/{first.name}/secrets/mastodon/" in p for p in before["mastodon"])

    deploy(client, second)
    placed = snapshots(lab)
    only_its_own(before, placed, second.name, files=True)
    assert any(f"/{second.name}/secrets/peertube/" in p for p in placed["peertube"])

    response = client.post(
        reverse("panel:edit", args=[second.pk]), {**second_data, "password": "", "services": []}
    )
    assert response.status_code == 302
    cleaned = deploy(client, second)
    tasks = {task["id"]: task for task in cleaned.tasks}
    assert {task["host"] for task in tasks.values()} == {"garage", "mastodon", "peertube", "local"}
    assert {t for t in tasks if t.endswith(".absent")} == {
        "garage.absent",
        "mastodon.absent",
        "peertube.absent",
    }
    assert not [t for t in tasks if "pixelfed" in t]  # it never had pixelfed: never touched
    only_its_own(before, snapshots(lab), second.name, files=False)

    again = deploy(client, first)
    assert {task["status"] for task in again.tasks} == {"ok"}
    only_its_own(before, snapshots(lab), second.name, files=False)
