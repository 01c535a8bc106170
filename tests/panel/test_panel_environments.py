"""Environments, with Django's test client and the real engine: staff define them (rows or an
imported inventory, checked by the engine's loader), operators deploy into the ones open to
them; a deployment's state, its services' URLs and health, only the hosts it uses, the plan and
``--check`` before a deploy, delete; the form's one round of errors, the password kept across
it, garage shown as what it is, the name fixed after the first deploy."""

from __future__ import annotations

import stat

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from panel_helpers import (
    DATA_DIR,
    NUMBERS,
    PASSWORD,
    make_environment,
    wait_for_health,
    wait_for_run,
)

from fedi_run.panel import deployment_files, initial_password, sealing
from fedi_run.panel.models import Deployment, Environment, Run

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILom1sSdKP0VR4JbI1dqWB/UPZlufFbPjB3SKk6w0LId"
LAB_LIKE = f"""# fedi-run lab inventory (/tmp/x); pass it with -i

[hosts.garage]
address = "127.0.0.2"
port = 22
user = "root"
host_key = "{KEY}"

[hosts.mastodon]
address = "127.0.0.3"
port = 2222
user = "root"
host_key = "{KEY}"

[hosts.spare]
address = "127.0.0.9"

[acme]
server = "https://127.0.0.1:14000/dir"
"""


def staff_user(operator):
    user = operator()
    user.is_staff = True
    user.save()
    return user


def host_rows(*rows: dict, existing: int = 0) -> dict:
    """The hosts formset's POST data: ``rows`` (name, address, ... services)."""
    data = {
        "hosts-TOTAL_FORMS": str(len(rows)),
        "hosts-INITIAL_FORMS": str(existing),
        "hosts-MIN_NUM_FORMS": "0",
        "hosts-MAX_NUM_FORMS": "1000",
    }
    for number, row in enumerate(rows):
        for key, value in {"port": "22", "user": "root", **row}.items():
            data[f"hosts-{number}-{key}"] = value
    return data


def environment_post(name: str, *rows: dict, users=(), **extra) -> dict:
    return {
        "name": name,
        "description": "",
        "users": [str(u.pk) for u in users],
        "extra": "",
        **host_rows(*rows),
        **extra,
    }


def create(client, data) -> Deployment:
    response = client.post(reverse("panel:create"), data)
    assert response.status_code == 302, response.context["form"].errors.as_data()
    return Deployment.objects.get(name=data["name"], owner=response.wsgi_request.user)


def web_and_spare(tmp_path, users):
    """An environment whose host ``web`` carries every app and garage, and ``spare`` nothing."""
    nixos = tmp_path / "nixos" / "configuration.nix"
    nixos.parent.mkdir()
    nixos.write_text("{ ... }: { boot.isContainer = true; }\n")
    path = tmp_path / "two.toml"
    path.write_text(
        f'[hosts.web]\naddress = "127.0.0.2"\nnixos = "{nixos}"\n\n'
        '[hosts.spare]\naddress = "127.0.0.3"\n'
    )
    environment = make_environment(path, users=users)
    environment.hosts.filter(name="web").update(
        services=["garage", "mastodon", "peertube", "pixelfed"]
    )
    return environment


# --- staff define environments -----------------------------------------------------------


def test_only_staff_reach_the_environment_pages(operator, client_for):
    plain, staff = operator(), staff_user(operator)
    environment = Environment.objects.create(name=f"e{next(NUMBERS)}")
    urls = [
        reverse("panel:environments"),
        reverse("panel:environment_create"),
        reverse("panel:environment_edit", args=[environment.pk]),
    ]
    for url in urls:
        assert client_for(plain).get(url).status_code == 403, url
        assert client_for(staff).get(url).status_code == 200, url
    assert client_for(plain).post(urls[1], environment_post("sneaky")).status_code == 403
    assert not Environment.objects.filter(name="sneaky").exists()
    assert Client().get(urls[0]).status_code == 302  # to the login page
    page = client_for(staff).get(reverse("panel:deployments")).content.decode()
    assert 'id="environments"' in page
    assert (
        'id="environments"'
        not in client_for(plain).get(reverse("panel:deployments")).content.decode()
    )


def test_staff_define_hosts_checked_by_the_engines_loader(operator, client_for):
    staff, alice = staff_user(operator), operator()
    client = client_for(staff)
    name = f"prod{next(NUMBERS)}"
    bad = environment_post(
        name,
        {"name": "web", "address": "not an address!", "host_key": "ssh-ed25519 nope"},
        {"name": "db", "address": "127.0.0.5", "port": "70000"},
        users=[alice],
    )
    response = client.post(reverse("panel:environment_create"), bad)
    assert response.status_code == 200 and not Environment.objects.filter(name=name).exists()
    forms = response.context["hosts"].forms
    # Every problem at once, in the engine's words, beside the host's field it is about.
    assert forms[0].errors == {
        "address": [
            "hosts.web.address: found 'not an address!', expected an IP address or a DNS name"
        ],
        "host_key": [
            "hosts.web.host_key: found 'ssh-ed25519 nope', expected an SSH public key such as "
            "'ssh-ed25519 AAAA...' (one of ssh-ed25519, ecdsa-sha2-nistp256, "
            "ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa)"
        ],
    }
    assert forms[1].errors == {"port": ["hosts.db.port: found 70000, expected a number <= 65535"]}
    page = response.content.decode()
    beside = page.split('id="host-0"', 1)[1].split('id="host-1"', 1)[0]
    assert "hosts.web.address: found" in beside and 'id="errors-address"' in beside
    good = environment_post(
        name,
        {"name": "web", "address": "127.0.0.4", "host_key": KEY, "services": ["mastodon"]},
        {"name": "files", "address": "127.0.0.5", "port": "2222", "services": ["garage"]},
        users=[alice],
    )
    response = client.post(reverse("panel:environment_create"), good)
    assert response.status_code == 302, response.context["hosts"].errors
    environment = Environment.objects.get(name=name)
    assert [(h.name, h.port, h.services) for h in environment.hosts.all()] == [
        ("web", 22, ["mastodon"]),
        ("files", 2222, ["garage"]),
    ]
    assert list(environment.users.all()) == [alice]
    inventory = DATA_DIR / "environments" / environment.key / "inventory.toml"
    assert stat.S_IMODE(inventory.stat().st_mode) == 0o600
    text = inventory.read_text()
    assert f'host_key = "{KEY}"' in text and "port = 2222" in text
    # What the runs read: the engine loads it as -i would.
    from fedi_run.panel.environments import check_inventory

    assert check_inventory(text, DATA_DIR) == []


def test_staff_import_an_inventory_file(operator, client_for):
    staff = staff_user(operator)
    client = client_for(staff)
    name = f"lab{next(NUMBERS)}"
    upload = SimpleUploadedFile("inventory.toml", LAB_LIKE.encode(), "application/toml")
    data = {**environment_post(name), "import-file": upload}
    response = client.post(reverse("panel:environment_create"), data)
    assert response.status_code == 302, (
        response.context["importing"].errors,
        response.context["hosts"].errors,
        response.context["form"].errors,
    )
    environment = Environment.objects.get(name=name)
    hosts = {h.name: h for h in environment.hosts.all()}
    assert set(hosts) == {"garage", "mastodon", "spare"}
    assert hosts["mastodon"].host_key == KEY and hosts["mastodon"].port == 2222
    assert hosts["garage"].services == ["garage"] and hosts["spare"].services == []
    assert '[acme]\nserver = "https://127.0.0.1:14000/dir"' in environment.extra
    page = client.get(reverse("panel:environment_edit", args=[environment.pk])).content.decode()
    assert KEY in page and 'value="127.0.0.9"' in page
    # A broken inventory is refused with the engine's words, and nothing changes.
    broken = {
        **environment_post(name),
        "import-text": "[hosts.x]\naddress = 5\n[surprise]\na = 1\n",
    }
    response = client.post(reverse("panel:environment_edit", args=[environment.pk]), broken)
    assert response.status_code == 200
    errors = " ".join(response.context["importing"].errors["text"])
    assert "an inventory may hold only" in errors or "hosts.x.address" in errors, errors
    assert environment.hosts.count() == 3


# --- operators deploy into the environments open to them ----------------------------------


def test_an_operator_chooses_only_among_the_environments_open_to_them(
    operator, client_for, form_data, inventory
):
    alice, bob = operator(), operator()
    mine = make_environment(inventory, users=[alice], name=f"alices{next(NUMBERS)}")
    theirs = make_environment(inventory, users=[bob], name=f"bobs{next(NUMBERS)}")
    page = client_for(alice).get(reverse("panel:create")).content.decode()
    assert mine.name in page and theirs.name not in page
    assert 'name="inventory"' not in page  # no path to type
    response = client_for(alice).post(
        reverse("panel:create"), form_data(environment=str(theirs.pk))
    )
    assert "Select a valid choice" in " ".join(response.context["form"].errors["environment"])
    nobody = operator()
    page = client_for(nobody).get(reverse("panel:deployments")).content.decode()
    assert 'id="no-environment"' in page and 'id="new-deployment"' not in page


def test_services_go_to_the_hosts_that_may_carry_them_and_only_those_are_shown(
    operator, client_for, form_data, tmp_path
):
    alice = operator()
    environment = web_and_spare(tmp_path, [alice])
    client = client_for(alice)
    deployment = create(client, form_data(environment=str(environment.pk)))
    playbook = deployment_files.write_playbook(deployment).read_text()
    assert '[services.mastodon]\nenable = true\nhost = "web"' in playbook
    from fedi_run.engine.project import load_project

    project = load_project(
        deployment_files.playbook_file(deployment), [deployment_files.inventory_file(deployment)]
    )
    assert {project.playbook.service_host(s) for s in project.playbook.enabled} == {"web"}
    page = client.get(reverse("panel:deployment", args=[deployment.pk])).content.decode()
    assert 'data-host="web"' in page and 'data-host="spare"' not in page
    assert 'href="https://mastodon.fedi-test.org/"' in page
    assert 'href="https://pixelfed.fedi-test.org/"' in page
    assert 'href="https://garage.fedi-test.org/"' in page  # on: the apps need it
    assert 'data-state="never deployed"' in page
    teardown = client.get(reverse("panel:teardown", args=[deployment.pk])).content.decode()
    hosts = teardown.split('id="teardown-hosts">', 1)[1].split("</span>", 1)[0]
    assert hosts == "<b>web</b>"


# --- the form ------------------------------------------------------------------------------


def test_every_error_in_one_round_and_the_password_kept(operator, client_for, form_data):
    client = client_for(operator())
    data = form_data(
        name="my site",  # the engine's check
        domain="fedi verse",  # the engine's check
        initial_email="admin",  # the engine's check
        initial_display_name="",  # the form's own: required
    )
    response = client.post(reverse("panel:create"), data)
    errors = response.context["form"].errors
    assert {"name", "domain", "initial_email", "initial_display_name"} <= set(errors), errors
    page = response.content.decode()
    assert PASSWORD not in page
    token = response.context["form"]["password_token"].value()
    assert token and f'name="password_token" value="{token}"' in page
    sealed = client.session["pending_passwords"][token][1]  # in the session, sealed
    assert PASSWORD not in sealed and sealing.unseal(sealed) == PASSWORD
    assert 'id="password-kept"' in page
    # Another session cannot claim it.
    other = client_for(operator())
    fixed = {**form_data(), "password": "", "password_token": token}
    stolen = other.post(reverse("panel:create"), fixed)
    assert "password" in stolen.context["form"].errors
    # The next round: the password need not be typed again.
    fixed["name"] = f"site{next(NUMBERS)}"
    response = client.post(reverse("panel:create"), fixed)
    assert response.status_code == 302, response.context["form"].errors
    deployment = Deployment.objects.get(name=fixed["name"])
    assert initial_password.password_of(deployment) == PASSWORD
    assert token not in client.session.get("pending_passwords", {})


def test_garage_is_shown_on_because_an_app_needs_it(operator, client_for, form_data):
    client = client_for(operator())
    page = client.get(reverse("panel:create")).content.decode()
    garage = page.split('data-service="garage"', 1)[1].split("</li>", 1)[0]
    assert "disabled" not in garage.split(">", 2)[1]
    deployment = create(client, form_data(services=["mastodon"]))
    page = client.get(reverse("panel:edit", args=[deployment.pk])).content.decode()
    garage = page.split('data-service="garage"', 1)[1].split("</li>", 1)[0]
    assert 'value="garage"' in garage and " checked disabled" in garage
    assert "on because mastodon needs it" in garage
    assert "End with nixops4 apply" in page and "Off: prepare only" in page


def test_the_name_is_fixed_after_the_first_deploy(operator, client_for, form_data):
    client = client_for(operator())
    data = form_data()
    deployment = create(client, data)
    Run.objects.create(deployment=deployment, kind="run", check=True, state=Run.FINISHED)
    response = client.post(
        reverse("panel:edit", args=[deployment.pk]), {**data, "name": "renamed", "password": ""}
    )
    assert response.status_code == 302
    deployment.refresh_from_db()
    assert deployment.name == "renamed"  # a check run does not fix it
    Run.objects.create(deployment=deployment, kind="run", state=Run.FINISHED, exit_status=0)
    page = client.get(reverse("panel:edit", args=[deployment.pk])).content.decode()
    assert 'name="name"' in page and "Fixed since the first deploy" in page
    response = client.post(
        reverse("panel:edit", args=[deployment.pk]),
        {**data, "name": "again", "password": "", "domain": "other.org"},
    )
    assert response.status_code == 302
    deployment.refresh_from_db()
    assert (deployment.name, deployment.domain) == ("renamed", "other.org")


# --- state, delete, staff ------------------------------------------------------------------


def test_state_and_delete(operator, client_for, form_data):
    client = client_for(operator())
    deployment = create(client, form_data())
    directory = deployment_files.directory(deployment)
    assert deployment.state == "never deployed" and deployment.deletable

    def ended(kind, exit_status, check=False):
        return Run.objects.create(
            deployment=deployment,
            kind=kind,
            check=check,
            state=Run.FINISHED,
            exit_status=exit_status,
        )

    ended("run", 0)
    ended("teardown", 0, check=True)  # a check changes nothing: still deployed
    assert deployment.state == "deployed" and not deployment.deletable
    response = client.post(
        reverse("panel:delete", args=[deployment.pk]), {"confirm": deployment.name}, follow=True
    )
    assert "tear it down first" in response.content.decode()
    assert Deployment.objects.filter(pk=deployment.pk).exists()
    ended("teardown", 1)
    assert deployment.state == "failed" and not deployment.deletable
    ended("teardown", 0)
    assert deployment.state == "torn down" and deployment.deletable
    page = client.get(reverse("panel:deployment", args=[deployment.pk])).content.decode()
    assert 'data-state="torn down"' in page and 'id="delete"' in page
    wrong = client.post(reverse("panel:delete", args=[deployment.pk]), {"confirm": "x"})
    assert wrong.status_code == 302 and Deployment.objects.filter(pk=deployment.pk).exists()
    response = client.post(
        reverse("panel:delete", args=[deployment.pk]), {"confirm": deployment.name}
    )
    assert response["Location"] == reverse("panel:deployments")
    assert not Deployment.objects.filter(pk=deployment.pk).exists()
    assert not Run.objects.filter(deployment_id=deployment.pk).exists()
    assert not directory.exists()


def test_staff_see_and_act_on_every_deployment(operator, client_for, form_data):
    alice, staff = operator(), staff_user(operator)
    deployment = create(client_for(alice), form_data())
    client = client_for(staff)
    listing = client.get(reverse("panel:deployments")).content.decode()
    assert f'data-deployment="{deployment.name}"' in listing and alice.username in listing
    assert client.get(reverse("panel:deployment", args=[deployment.pk])).status_code == 200
    response = client.post(
        reverse("panel:edit", args=[deployment.pk]),
        {**form_data(name=deployment.name), "password": "", "domain": "staff.example"},
    )
    assert response.status_code == 302, response.context["form"].errors
    deployment.refresh_from_db()
    assert deployment.owner == alice and deployment.domain == "staff.example"


# --- plan and check before a deploy; health -------------------------------------------------


def test_deploy_shows_the_plan_and_the_check_then_asks_to_confirm(
    operator, client_for, form_data, tmp_path
):
    alice = operator()
    environment = web_and_spare(tmp_path, [alice])
    client = client_for(alice)
    deployment = create(client, form_data(environment=str(environment.pk)))
    # a run recorded and gone: the check's number in the panel is not its engine id
    Run.objects.create(deployment=deployment, kind="run", state=Run.FINISHED).delete()
    response = client.post(reverse("panel:deploy", args=[deployment.pk]))
    check = deployment.runs.get()
    assert check.check and check.kind == "run"
    assert (
        response["Location"] == reverse("panel:deploy", args=[deployment.pk]) + f"?check={check.pk}"
    )
    page = client.get(response["Location"]).content.decode()
    # The engine's plan, whatever the check's progress.
    from fedi_run.panel.checks import plan_of

    plan = plan_of(
        deployment_files.playbook_file(deployment),
        deployment_files.inventory_file(deployment),
        deployment_files.engine_state(deployment),
        deployment.apply,
    )
    for task in plan["tasks"]:
        assert f'data-task="{task["id"]}"' in page, task["id"]
    assert {t["host"] for t in plan["tasks"]} <= {"web", "local"}
    assert page.count('data-destructive="1"') == len(plan["destructive"])
    # Carried out by a worker: nothing listens at web's address, and the check says so.
    ended = wait_for_run(check.pk)
    assert ended.check and ended.exit_status != 0 and ended.tasks, ended.error
    page = client.get(response["Location"]).content.decode()
    assert 'id="check-result"' in page and 'id="check-failed"' in page
    assert ended.engine_run_id is not None and ended.engine_run_id != ended.pk
    assert f"Check {ended.engine_run_id}:" in page  # the engine's history id, as everywhere
    assert 'id="confirm-deploy">' in page  # enabled
    assert not deployment.runs.filter(check=False).exists()  # nothing deployed yet
    # While a check is still going, the deploy cannot be confirmed.
    going = Run.objects.create(deployment=deployment, kind="run", check=True, state=Run.RUNNING)
    page = client.get(
        reverse("panel:deploy", args=[deployment.pk]) + f"?check={going.pk}"
    ).content.decode()
    assert 'id="confirm-deploy" disabled' in page and "Checking the hosts" in page
    assert "Once the check has ended, you confirm here." in page
    going.delete()
    response = client.post(reverse("panel:confirm_deploy", args=[deployment.pk]))
    run = deployment.runs.get(check=False)
    assert response["Location"] == reverse("panel:run", args=[deployment.pk, run.pk])
    assert wait_for_run(run.pk).kind_label == "deploy"


def test_health_is_the_engines_verify(operator, client_for, form_data, tmp_path):
    alice = operator()
    environment = web_and_spare(tmp_path, [alice])
    client = client_for(alice)
    deployment = create(client, form_data(environment=str(environment.pk), services=["mastodon"]))
    asked = client.post(reverse("panel:health", args=[deployment.pk]), follow=True)
    assert "Health check sent to a worker" in asked.content.decode()
    assert 'data-health="checking"' in asked.content.decode()  # until a worker stored it
    wait_for_health(deployment)
    found = {h["service"]: h for h in deployment.health}
    assert set(found) == {"garage", "mastodon"}
    # Nothing listens at 127.0.0.2: the engine's verify says so; the page shows it.
    assert found["mastodon"]["summary"] in ("unreachable", "not active", "https refused")
    assert found["mastodon"]["detail"].startswith("mastodon")
    page = client.get(reverse("panel:deployment", args=[deployment.pk])).content.decode()
    assert f'data-health="{found["mastodon"]["summary"]}"' in page


def test_a_host_a_deployed_deployment_runs_on_stays_until_it_is_torn_down(
    operator, client_for, form_data, tmp_path
):
    alice, staff = operator(), staff_user(operator)
    environment = web_and_spare(tmp_path, [alice])
    deployment = create(client_for(alice), form_data(environment=str(environment.pk)))
    Run.objects.create(deployment=deployment, kind="run", state=Run.FINISHED, exit_status=0)
    hosts = list(environment.hosts.all())
    rows = [
        {
            "id": str(h.pk),
            "environment": str(environment.pk),
            "name": h.name,
            "address": h.address,
            "port": str(h.port),
            "user": h.user,
            "nixos": h.nixos,
            "services": [s for s in h.services if s != "pixelfed"],
        }
        for h in hosts
    ]
    data = environment_post(environment.name, *rows, users=[alice])
    data["hosts-INITIAL_FORMS"] = str(len(rows))
    url = reverse("panel:environment_edit", args=[environment.pk])
    response = client_for(staff).post(url, data)
    assert response.status_code == 200
    assert (
        f"the deployment {deployment.name!r} (deployed) runs pixelfed on the host 'web'"
        in " ".join(response.context["form"].non_field_errors())
    )
    assert "pixelfed" in environment.hosts.get(name="web").services
    Run.objects.create(deployment=deployment, kind="teardown", state=Run.FINISHED, exit_status=0)
    response = client_for(staff).post(url, data)
    assert response.status_code == 302, response.context["form"].errors
    assert "pixelfed" not in environment.hosts.get(name="web").services


def test_teardown_names_the_hosts_its_deploys_touched_too(operator, client_for, form_data):
    """A service switched off since the deploy is undone where it ran: that host is named."""
    client = client_for(operator())
    deployment = create(client, form_data(services=["mastodon"]))
    Run.objects.create(
        deployment=deployment,
        kind="run",
        state=Run.FINISHED,
        exit_status=0,
        recap={"garage": {"ok": 1}, "mastodon": {"ok": 1}, "pixelfed": {"ok": 1}, "local": {}},
    )
    page = client.get(reverse("panel:teardown", args=[deployment.pk])).content.decode()
    named = page.split('id="teardown-hosts">', 1)[1].split("</span>", 1)[0]
    assert named == "<b>garage</b>, <b>mastodon</b>, <b>pixelfed</b>"
    Run.objects.create(deployment=deployment, kind="teardown", state=Run.FINISHED, exit_status=0)
    page = client.get(reverse("panel:teardown", args=[deployment.pk])).content.decode()
    named = page.split('id="teardown-hosts">', 1)[1].split("</span>", 1)[0]
    assert named == "<b>garage</b>, <b>mastodon</b>"  # torn down since: its services' hosts
