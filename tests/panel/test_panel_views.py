"""The panel's views with Django's test client: logins, permissions, the deployment form and
its errors, the password's file, deploys in the background, refusals, history, teardown."""

from __future__ import annotations

import os
import socket
import stat
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from panel_helpers import DATA_DIR, PASSWORD, wait_for_run

from fedi_run.panel import deployment_files, initial_password, runs
from fedi_run.panel.models import Deployment, Run


def create(client, data) -> Deployment:
    response = client.post(reverse("panel:create"), data)
    assert response.status_code == 302, _errors(response)
    return Deployment.objects.get(name=data["name"], owner=response.wsgi_request.user)


def _errors(response) -> str:
    form = response.context["form"] if response.context else None
    return str(form.errors.as_data()) if form is not None else response.content.decode()[:2000]


def urls_of(deployment: Deployment, run: Run | None = None) -> list[str]:
    pk = deployment.pk
    found = [
        reverse(name, args=[pk])
        for name in ("panel:deployment", "panel:edit", "panel:teardown", "panel:history")
    ]
    if run is not None:
        found += [
            reverse("panel:run", args=[pk, run.pk]),
            reverse("panel:progress", args=[pk, run.pk]),
        ]
    return found


# --- logging in -------------------------------------------------------------------------------


def test_every_page_needs_a_login(operator, client_for, form_data):
    owner = operator()
    deployment = create(client_for(owner), form_data())
    run = Run.objects.create(deployment=deployment, state=Run.FINISHED, exit_status=0)
    anonymous = Client()
    for url in [reverse("panel:deployments"), reverse("panel:create"), *urls_of(deployment, run)]:
        response = anonymous.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("panel:login") + "?next="), url
    response = anonymous.post(reverse("panel:deploy", args=[deployment.pk]))
    assert response.status_code == 302 and not deployment.runs.exclude(pk=run.pk).exists()


def test_log_in_with_a_hashed_password_and_log_out(operator):
    user = operator("carol", password="carol's long password")
    assert user.password.startswith("pbkdf2_sha256$") and "carol's" not in user.password
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("panel:login"))
    token = page.context["csrf_token"]
    wrong = client.post(
        reverse("panel:login"),
        {"username": "carol", "password": "nope", "csrfmiddlewaretoken": str(token)},
    )
    assert (
        wrong.status_code == 200
        and b"Please enter a correct username and password" in wrong.content
    )
    response = client.post(
        reverse("panel:login"),
        {
            "username": "carol",
            "password": "carol's long password",
            "csrfmiddlewaretoken": str(token),
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("panel:deployments")
    assert client.get(reverse("panel:deployments")).status_code == 200
    client.post(
        reverse("panel:logout"),
        {"csrfmiddlewaretoken": client.cookies["fedi_run_panel_csrf"].value},
    )
    assert client.get(reverse("panel:deployments")).status_code == 302


def test_a_post_without_the_csrf_token_is_refused(operator, form_data):
    owner = operator()
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(reverse("panel:create"), form_data()).status_code == 403
    assert not Deployment.objects.filter(owner=owner).exists()


# --- permissions ------------------------------------------------------------------------------


def test_an_operator_sees_only_their_own_deployments(operator, client_for, form_data):
    alice, bob = operator(), operator()
    mine = create(client_for(alice), form_data(name="alices-site"))
    theirs = create(client_for(bob), form_data(name="bobs-site"))
    page = client_for(alice).get(reverse("panel:deployments")).content.decode()
    assert 'data-deployment="alices-site"' in page and "bobs-site" not in page
    assert mine.owner == alice and theirs.owner == bob


def test_another_operators_deployment_is_a_404(operator, client_for, form_data):
    alice, bob = operator(), operator()
    deployment = create(client_for(alice), form_data())
    run = Run.objects.create(deployment=deployment, state=Run.FINISHED, exit_status=0, log="x")
    intruder = client_for(bob)
    for url in urls_of(deployment, run):
        assert intruder.get(url).status_code == 404, url
    for name in (
        "panel:deploy",
        "panel:confirm_deploy",
        "panel:teardown",
        "panel:edit",
        "panel:delete",
        "panel:health",
    ):
        assert (
            intruder.post(
                reverse(name, args=[deployment.pk]), {"confirm": deployment.name}
            ).status_code
            == 404
        ), name
    assert deployment.runs.count() == 1  # nothing started
    other = create(client_for(bob), form_data())
    assert intruder.get(reverse("panel:run", args=[other.pk, run.pk])).status_code == 404


# --- the form ---------------------------------------------------------------------------------


def test_the_form_offers_a_switch_per_installed_service(operator, client_for):
    page = client_for(operator()).get(reverse("panel:create")).content.decode()
    for service in ("mastodon", "peertube", "pixelfed", "garage"):
        assert f'name="services" value="{service}"' in page
    assert "Services live at &lt;service&gt;.&lt;domain&gt;." in page  # the schema's description


def test_saving_seals_the_password_and_the_playbook_names_its_file(operator, client_for, form_data):
    client = client_for(operator())
    deployment = create(client, form_data())
    directory = deployment_files.directory(deployment)
    password = directory / "initial-user-password"
    assert not password.exists()  # written by a worker for a run only
    assert deployment.initial_password_sealed and PASSWORD not in deployment.initial_password_sealed
    assert initial_password.password_of(deployment) == PASSWORD
    with deployment_files.password_written(deployment) as given:
        assert given == PASSWORD and password.read_text() == PASSWORD + "\n"
        assert stat.S_IMODE(password.stat().st_mode) == 0o600
    assert not password.exists()
    deployment_files.write_playbook(deployment)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(DATA_DIR.stat().st_mode) == 0o700
    assert stat.S_IMODE((DATA_DIR / "secret-key").stat().st_mode) == 0o600
    assert stat.S_IMODE((DATA_DIR / "panel.sqlite3").stat().st_mode) == 0o600
    playbook = (directory / "playbook.toml").read_text()
    assert PASSWORD not in playbook and f'password_file = "{password}"' in playbook
    assert deployment.services == ["mastodon", "pixelfed"]
    # The engine loads what the panel wrote, with the inventory, as a run will.
    from fedi_run.engine.project import load_project

    project = load_project(
        directory / "playbook.toml", [deployment_files.inventory_file(deployment)]
    )
    assert set(project.playbook.enabled) == {"garage", "mastodon", "pixelfed"}


def test_the_password_is_never_stored_in_the_database_nor_shown(operator, client_for, form_data):
    client = client_for(operator())
    data = form_data()
    responses = [client.post(reverse("panel:create"), data, follow=True)]
    deployment = Deployment.objects.get(name=data["name"])
    responses += [client.get(url) for url in urls_of(deployment)]
    bad = client.post(reverse("panel:edit", args=[deployment.pk]), {**data, "domain": "bad domain"})
    assert bad.status_code == 200 and bad.context["form"].errors
    responses.append(bad)
    for response in responses:
        assert PASSWORD.encode() not in response.content
    for path in DATA_DIR.glob("panel.sqlite3*"):
        assert PASSWORD.encode() not in path.read_bytes(), path


def test_editing_keeps_the_password_unless_a_new_one_is_typed(operator, client_for, form_data):
    client = client_for(operator())
    data = form_data()
    deployment = create(client, data)
    page = client.get(reverse("panel:edit", args=[deployment.pk]))
    assert page.context["form"]["services"].value() == ["mastodon", "pixelfed"]
    assert b'name="password"' in page.content and PASSWORD.encode() not in page.content
    response = client.post(
        reverse("panel:edit", args=[deployment.pk]),
        {**data, "password": "", "services": ["peertube"]},
    )
    assert response.status_code == 302, _errors(response)
    deployment.refresh_from_db()
    assert deployment.services == ["peertube"]
    assert initial_password.password_of(deployment) == PASSWORD
    client.post(
        reverse("panel:edit", args=[deployment.pk]), {**data, "password": "another one, longer"}
    )
    deployment.refresh_from_db()
    assert initial_password.password_of(deployment) == "another one, longer"


@pytest.mark.parametrize(
    "changes, field, expected",
    [
        ({"domain": "fedi verse"}, "domain", "expected a DNS name"),
        ({"name": "my site"}, "name", "expected a deployment name"),
        ({"initial_email": "admin"}, "initial_email", "expected an e-mail address"),
        ({"initial_username": "Ad min"}, "initial_username", "expected a user name"),
        ({"acme_email": "ops"}, "acme_email", "expected an e-mail address"),
        ({"environment": ""}, "environment", "This field is required"),
        ({"environment": "999999"}, "environment", "Select a valid choice"),
        ({"password": ""}, "password", "This field is required"),
        ({"password": "short"}, "password", "at least 8 characters"),
        ({"domain": ""}, "domain", "This field is required"),
    ],
)
def test_errors_appear_beside_their_field(
    operator, client_for, form_data, changes, field, expected
):
    client = client_for(operator())
    response = client.post(reverse("panel:create"), form_data(**changes))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors and expected in " ".join(errors[field]), errors
    page = response.content.decode()
    beside = page.split(f'id="field-{field}"', 1)[1].split('<div class="field', 1)[0]
    assert f'id="errors-{field}"' in beside and expected.replace("'", "&#x27;") in beside
    assert not Deployment.objects.filter(owner=response.wsgi_request.user).exists()


def test_a_service_without_a_host_in_the_environment_is_reported(
    operator, client_for, form_data, tmp_path
):
    """(The inventory's own problems are the environment's: test_panel_environments.py.)"""
    client = client_for(operator())
    partial = tmp_path / "partial.toml"
    partial.write_text(
        '[hosts.garage]\naddress = "127.0.0.2"\n[hosts.mastodon]\naddress = "127.0.0.3"\n'
    )
    response = client.post(reverse("panel:create"), form_data(inventory=str(partial)))
    errors = " ".join(response.context["form"].errors["services"])
    assert "has no host that may carry pixelfed" in errors, errors


def test_a_name_is_unique_per_operator(operator, client_for, form_data):
    alice, bob = operator(), operator()
    create(client_for(alice), form_data(name="shared"))
    response = client_for(alice).post(reverse("panel:create"), form_data(name="shared"))
    assert "you already have a deployment called 'shared'" in " ".join(
        response.context["form"].errors["name"]
    )
    create(client_for(bob), form_data(name="shared"))  # another operator may


# --- deploying --------------------------------------------------------------------------------


def test_a_deploy_runs_in_the_background_and_is_recorded(operator, client_for, form_data, hostless):
    client = client_for(operator())
    deployment = create(
        client, form_data(services=[], apply=None, inventory=hostless)
    )  # renders only: no host
    response = client.post(reverse("panel:confirm_deploy", args=[deployment.pk]))
    run = deployment.runs.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("panel:run", args=[deployment.pk, run.pk])
    run = wait_for_run(run.pk)
    assert run.state == Run.FINISHED and run.exit_status == 0, run.error or run.log
    assert [t["id"] for t in run.tasks] == ["nixops4.render"] and run.tasks[0]["status"] in (
        "ok",
        "changed",
    )
    assert {k: v for k, v in run.recap["local"].items() if v} == {run.tasks[0]["status"]: 1}
    assert "nixops4.render: " in run.log
    data = client.get(reverse("panel:progress", args=[deployment.pk, run.pk])).json()
    assert data["finished"] and data["state"] == "finished" and data["result"] == "done"
    assert data["tasks"] == run.tasks
    page = client.get(reverse("panel:run", args=[deployment.pk, run.pk])).content.decode()
    assert 'data-done="1"' in page and 'data-task="nixops4.render"' in page
    history = client.get(reverse("panel:history", args=[deployment.pk])).content.decode()
    assert f'data-run="{run.pk}"' in history and "<b>local</b>" in history and "done" in history
    # The engine recorded the same run in the deployment's state database.
    from fedi_run.engine.report.state import StateStore

    with StateStore.open(
        deployment_files.directory(deployment) / ".fedi-run" / "state.db"
    ) as store:
        assert store.get_run(run.engine_run_id).argv == ("panel", "deploy", deployment.name)


def test_a_run_that_cannot_start_says_why(operator, client_for, form_data, hostless, tmp_path):
    client = client_for(operator())
    deployment = create(client, form_data(services=[], apply=None, inventory=hostless))
    # The environment's rows changed behind the form's back: its inventory, which the worker
    # writes from them, is no TOML any more; the worker cannot load the project.
    deployment.environment.hosts.update(name="web]")
    client.post(reverse("panel:confirm_deploy", args=[deployment.pk]))
    run = wait_for_run(deployment.runs.get().pk)
    assert run.state == Run.ERROR and "inventory.toml" in run.error, run.error
    page = client.get(reverse("panel:run", args=[deployment.pk, run.pk])).content.decode()
    assert "could not run" in page


def running_run(deployment) -> Run:
    """A run as a live worker has it: running, this test's pid, a fresh heartbeat."""
    return Run.objects.create(
        deployment=deployment,
        kind="run",
        state=Run.RUNNING,
        worker="fedi-run@test",
        worker_host=socket.gethostname(),
        worker_pid=os.getpid(),
        heartbeat_at=timezone.now(),
    )


def test_a_second_deploy_while_one_runs_is_refused(operator, client_for, form_data, hostless):
    client = client_for(operator())
    deployment = create(client, form_data(services=[], apply=None, inventory=hostless))
    running = running_run(deployment)
    try:
        for url, data in [
            (reverse("panel:confirm_deploy", args=[deployment.pk]), {}),
            (reverse("panel:teardown", args=[deployment.pk]), {"confirm": deployment.name}),
        ]:
            response = client.post(url, data, follow=True)
            assert response.redirect_chain[0][0] == reverse(
                "panel:run", args=[deployment.pk, running.pk]
            )
            assert (
                f"Refused: {deployment.name} is already being deployed "
                f"(run {running.pk} is in progress)" in response.content.decode()
            )
        assert deployment.runs.count() == 1
    finally:
        Run.objects.filter(pk=running.pk).update(state=Run.FINISHED, exit_status=0)


def test_a_run_whose_worker_is_gone_is_broken_off(operator, client_for, form_data, hostless):
    """Its worker's pid gone on this machine, or no heartbeat for BROKEN_AFTER seconds: the
    progress view marks it broken off, and the deployment may be deployed again."""
    client = client_for(operator())
    deployment = create(client, form_data(services=[], apply=None, inventory=hostless))
    dead = running_run(deployment)
    Run.objects.filter(pk=dead.pk).update(worker_pid=2**22 + 12345)  # above pid_max: no such
    data = client.get(reverse("panel:progress", args=[deployment.pk, dead.pk])).json()
    assert (data["state"], data["result"], data["finished"]) == ("broken", "broken off", True)
    assert "its worker (fedi-run@test) is gone" in data["error"]
    silent = running_run(deployment)
    Run.objects.filter(pk=silent.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=runs.BROKEN_AFTER + 1),
        worker_host="another-machine",
    )
    assert runs.active_run(deployment) is None
    silent.refresh_from_db()
    assert silent.state == Run.BROKEN and "sent no heartbeat for" in silent.error
    page = client.get(reverse("panel:deployments")).content.decode()
    assert "broken off" in page


def test_stop_asks_the_worker_to_stop_a_run_in_progress(operator, client_for, form_data, hostless):
    """The Stop button records who asked; the worker polls it and sets the event it gave the
    engine (``RunRequest.stop``; the engine's side is
    tests/run/test_execution.py::test_a_run_in_a_thread_stops_when_asked, the worker's
    tests/panel_workers/)."""
    alice, bob = operator("alice"), operator("bob")
    client = client_for(alice)
    deployment = create(client, form_data(services=[], apply=None, inventory=hostless))
    running = running_run(deployment)
    url = reverse("panel:stop", args=[deployment.pk, running.pk])
    try:
        page = client.get(reverse("panel:run", args=[deployment.pk, running.pk])).content.decode()
        assert 'id="stop"' in page and 'id="stop-form" hidden' not in page
        assert client.get(url).status_code == 405  # a POST only, with the CSRF token
        assert client_for(bob).post(url).status_code == 404  # not bob's
        running.refresh_from_db()
        assert running.stop_requested_by == ""
        response = client.post(url, follow=True)
        running.refresh_from_db()
        assert running.stop_requested_by == "alice"
        assert (
            "Stopping: the running tasks finish, nothing new starts." in response.content.decode()
        )
        assert client.get(reverse("panel:progress", args=[deployment.pk, running.pk])).json()[
            "stopping"
        ]
        again = client.post(url, follow=True).content.decode()
        assert "This run is not in progress, or is already stopping." in again
    finally:
        Run.objects.filter(pk=running.pk).update(state=Run.FINISHED, exit_status=130)


def test_stop_on_a_queued_run_means_it_is_never_carried_out(
    operator, client_for, form_data, hostless
):
    client = client_for(operator())
    deployment = create(client, form_data(services=[], apply=None, inventory=hostless))
    queued = Run.objects.create(deployment=deployment, kind="run", state=Run.QUEUED)
    client.post(reverse("panel:stop", args=[deployment.pk, queued.pk]))
    queued.refresh_from_db()
    assert queued.state == Run.ERROR and "before a worker took it" in queued.error
    from fedi_run.panel.worker import carry_out

    carry_out(queued.pk)  # a worker that takes its message later leaves it alone
    queued.refresh_from_db()
    assert (queued.state, queued.worker, queued.engine_run_id) == (Run.ERROR, "", None)


def test_the_engines_lock_is_respected(operator, client_for, form_data, hostless):
    """A run of the same deployment outside the panel (the CLI) holds the engine's lock."""
    from fedi_run.engine.report.state import StateStore

    client = client_for(operator())
    deployment = create(client, form_data(services=[], apply=None, inventory=hostless))
    with (
        StateStore.open(deployment_files.directory(deployment) / ".fedi-run" / "state.db") as store,
        store.lock(deployment.name),
    ):
        client.post(reverse("panel:confirm_deploy", args=[deployment.pk]))
        run = wait_for_run(deployment.runs.get().pk)
    assert run.state == Run.ERROR
    assert f"another run of deployment '{deployment.name}' is in progress" in run.error
    assert (
        "another run"
        in client.get(reverse("panel:run", args=[deployment.pk, run.pk])).content.decode()
    )


# --- teardown ---------------------------------------------------------------------------------


def test_teardown_asks_for_a_confirmation(operator, client_for, form_data, hostless):
    client = client_for(operator())
    deployment = create(client, form_data(services=[], apply=None, inventory=hostless))
    page = client.get(reverse("panel:teardown", args=[deployment.pk])).content.decode()
    assert f"Tear down {deployment.name}?" in page and 'name="confirm"' in page
    response = client.post(
        reverse("panel:teardown", args=[deployment.pk]), {"confirm": "wrong"}, follow=True
    )
    assert "Type the deployment&#x27;s name to confirm" in response.content.decode()
    assert not deployment.runs.exists()
    response = client.post(
        reverse("panel:teardown", args=[deployment.pk]), {"confirm": deployment.name}
    )
    run = wait_for_run(deployment.runs.get().pk)
    assert run.kind == "teardown" and run.state == Run.FINISHED and run.exit_status == 0, run.error
    assert response["Location"] == reverse("panel:run", args=[deployment.pk, run.pk])


def test_the_migrations_match_the_models():
    from django.core.management import call_command

    call_command("makemigrations", "fedi_panel", "--check", "--dry-run", verbosity=0)
