"""The run pages with Django's test client: a result's colour class by meaning (run page,
History, deployments list), the engine's run numbers, the could-not-run page pointing at the
form, the Stopping banner and the nixops4 box, the version in every page's footer, Resume,
a task's own output (live and from the engine's log) and re-running one task alone.

Runs are made as rows (their states as a worker records them); Resume and re-run go through
``runs.start`` and are checked by the queued run they record (what the engine then does with
``--resume`` / ``--only`` is the engine's tests' and the browser test's)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from panel_helpers import NUMBERS, PASSWORD

from fedi_run.engine import __version__
from fedi_run.engine.report.output_log import log_path
from fedi_run.panel import deployment_files, initial_password, runs
from fedi_run.panel.models import Deployment, Run
from fedi_run.panel.sink import PanelSink
from fedi_run.panel.worker import task_outputs

NIXOPS4_MISSING = (
    "error: nixops4 is not on PATH, and this run ends with `nixops4 apply`. Install NixOps4 (see "
    "its documentation), or pass --no-apply to prepare the hosts and render the deployment "
    "without applying it. Nothing was changed on any host."
)


@pytest.fixture
def deployment_of(inventory):
    """``deployment_of(owner, **changes)`` → a saved deployment (its playbook and password
    file written), mastodon and pixelfed on the four-host inventory (nothing listens)."""

    def make(owner, **changes):
        values = {
            "owner": owner,
            "name": f"runs{next(NUMBERS)}",
            "domain": "fedi-test.org",
            "inventory": str(inventory),
            "services": ["mastodon", "pixelfed"],
            "acme_email": "ops@fedi-test.org",
            "acme_accept_terms": True,
            "initial_username": "admin",
            "initial_display_name": "Admin",
            "initial_email": "admin@fedi-test.org",
            "apply": True,
            **changes,
        }
        deployment = Deployment.objects.create(**values)
        initial_password.set_password(deployment, PASSWORD)
        deployment_files.write_playbook(deployment)
        return deployment

    return make


def ended(deployment, exit_status=0, **fields) -> Run:
    """A run as a worker stores it at its end."""
    values = {"state": Run.FINISHED, "exit_status": exit_status, "kind": "run", **fields}
    return Run.objects.create(deployment=deployment, **values)


def result_spans(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<span(?: id="run-result")? class="result (\w+)">([^<]*)</span>', page)


def drop_queued(deployment) -> None:
    """The runs a test queued are never carried out (a worker leaves a stopped one alone)."""
    for run in deployment.runs.filter(state=Run.QUEUED):
        runs.request_stop(run, "the test")


# --- colours by meaning, numbers -------------------------------------------------------------


RESULTS = [  # (fields, label, tone)
    ({"exit_status": 0}, "done", "ok"),
    ({"exit_status": 1}, "failed (exit 1)", "failed"),
    ({"exit_status": 130}, "interrupted", "interrupted"),
    ({"state": Run.ERROR, "exit_status": None, "error": "error: x"}, "could not run", "failed"),
    (
        {"state": Run.BROKEN, "exit_status": None, "error": "broken off: gone"},
        "broken off",
        "broken",
    ),
    ({"state": Run.QUEUED, "exit_status": None}, "queued", "queued"),
]


@pytest.mark.parametrize("fields, label, tone", RESULTS)
def test_a_result_has_the_colour_of_its_meaning_on_every_page(
    operator, client_for, deployment_of, fields, label, tone
):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = ended(deployment, **fields)
    pages = {
        "run": client.get(reverse("panel:run", args=[deployment.pk, run.pk])),
        "history": client.get(reverse("panel:history", args=[deployment.pk])),
        "deployments": client.get(reverse("panel:deployments")),
        "deployment": client.get(reverse("panel:deployment", args=[deployment.pk])),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        assert (tone, label) in result_spans(response.content.decode()), (name, label)
    progress = client.get(reverse("panel:progress", args=[deployment.pk, run.pk])).json()
    assert (progress["tone"], progress["label"]) == (tone, label)
    drop_queued(deployment)


def test_runs_are_numbered_as_the_engines_history(operator, client_for, deployment_of):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    first = ended(deployment, engine_run_id=41)
    queued = Run.objects.create(deployment=deployment, state=Run.QUEUED)
    never = ended(deployment, state=Run.ERROR, exit_status=None, error="error: no broker")
    history = client.get(reverse("panel:history", args=[deployment.pk])).content.decode()
    numbers = dict(re.findall(r'data-run="(\d+)" data-number="([^"]+)"', history))
    assert numbers == {str(first.pk): "41", str(queued.pk): "queued", str(never.pk): "—"}
    assert first.pk != 41
    page = client.get(reverse("panel:run", args=[deployment.pk, first.pk])).content.decode()
    assert f"<title>Deploy 41 of {deployment.name}" in page
    assert re.search(r'<span id="run-number" title="[^"]*">41</span> of', page)
    waiting = client.get(reverse("panel:run", args=[deployment.pk, queued.pk])).content.decode()
    assert re.search(r'<span id="run-number" title="[^"]*">queued</span> of', waiting)
    drop_queued(deployment)


# --- the could-not-run page, Stopping, the nixops4 box, the footer ---------------------------


def test_could_not_run_points_at_the_forms_switch(operator, client_for, deployment_of):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = ended(deployment, state=Run.ERROR, exit_status=None, error=NIXOPS4_MISSING)
    page = client.get(reverse("panel:run", args=[deployment.pk, run.pk])).content.decode()
    assert "nixops4 is not on PATH" in page and "could not run" in page
    assert "--no-apply" not in page
    assert "switch off “End with nixops4 apply” in the deployment&#x27;s settings" in page
    edit = reverse("panel:edit", args=[deployment.pk])
    assert f'<a href="{edit}#field-apply" id="run-advice-link">' in page
    assert "Loading" not in page and "No task ran." in page
    data = client.get(reverse("panel:progress", args=[deployment.pk, run.pk])).json()
    assert "--no-apply" not in data["error_text"] and "End with nixops4 apply" in data["advice"]


def test_the_stopping_banner_goes_when_the_run_has_ended(operator, client_for, deployment_of):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = Run.objects.create(deployment=deployment, state=Run.RUNNING, stop_requested_by="x")
    url = reverse("panel:run", args=[deployment.pk, run.pk])
    assert re.search(r'<p id="stopping" class="notice">Stopping', client.get(url).content.decode())
    Run.objects.filter(pk=run.pk).update(state=Run.FINISHED, exit_status=130)
    page = client.get(url).content.decode()
    assert '<p id="stopping" class="notice" hidden>' in page


def test_the_stop_message_is_not_left_on_an_ended_runs_page(operator, client_for, deployment_of):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = Run.objects.create(deployment=deployment, state=Run.RUNNING)
    stop = client.post(reverse("panel:stop", args=[deployment.pk, run.pk]))
    assert stop.status_code == 302
    Run.objects.filter(pk=run.pk).update(state=Run.FINISHED, exit_status=130)
    page = client.get(stop["Location"]).content.decode()
    assert 'class="message info' not in page and "interrupted" in page
    running = Run.objects.create(deployment=deployment, state=Run.RUNNING)
    stop = client.post(reverse("panel:stop", args=[deployment.pk, running.pk]))
    page = client.get(stop["Location"]).content.decode()
    assert '<li class="message info while-running">Stopping:' in page  # while it runs: shown
    Run.objects.filter(pk=running.pk).update(state=Run.FINISHED, exit_status=130)


@pytest.mark.parametrize(
    "apply, output, shown",
    [(False, "", False), (True, "", False), (True, "nixops4: deployed\n", True)],
)
def test_the_nixops4_box_only_with_the_apply_and_its_output(
    operator, client_for, deployment_of, apply, output, shown
):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = ended(deployment, apply=apply, apply_output=output)
    page = client.get(reverse("panel:run", args=[deployment.pk, run.pk])).content.decode()
    assert ('<div id="apply-box" hidden>' not in page) is shown
    assert '<div id="apply-box">' in page or not shown


def test_the_footer_shows_the_version_on_every_page(operator, client_for, deployment_of):
    from django.test import Client

    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = ended(
        deployment,
        engine_run_id=3,
        tasks=[{"id": "nixops4.render", "host": "local", "status": "ok"}],
    )
    urls = [
        reverse("panel:deployments"),
        reverse("panel:create"),
        reverse("panel:deployment", args=[deployment.pk]),
        reverse("panel:edit", args=[deployment.pk]),
        reverse("panel:teardown", args=[deployment.pk]),
        reverse("panel:history", args=[deployment.pk]),
        reverse("panel:run", args=[deployment.pk, run.pk]),
        reverse("panel:task", args=[deployment.pk, run.pk, "nixops4.render"]),
    ]
    footer = f'<footer id="version">fedi-run {__version__}</footer>'
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert footer in response.content.decode(), url
    assert footer in Client().get(reverse("panel:login")).content.decode()


# --- Resume ----------------------------------------------------------------------------------

TASKS = [
    {"id": "garage.secrets", "host": "garage", "status": "changed", "message": "", "duration": 0.2},
    {"id": "pixelfed.secrets", "host": "pixelfed", "status": "failed", "message": "boom"},
    {"id": "nixops4.apply", "host": "local", "status": "skipped", "message": ""},
]


def resume_offered(client, deployment, run) -> bool:
    page = client.get(reverse("panel:run", args=[deployment.pk, run.pk])).content.decode()
    form = re.search(r'<form [^>]*id="resume-form"[^>]*>', page)
    assert form, "the page has the Resume form"
    return " hidden" not in form[0]


def test_a_failed_deploy_offers_resume_and_resume_queues_the_engines_resume(
    operator, client_for, deployment_of
):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = ended(deployment, exit_status=1, engine_run_id=5, tasks=TASKS)
    assert resume_offered(client, deployment, run)
    assert client.get(reverse("panel:resume", args=[deployment.pk, run.pk])).status_code == 405
    response = client.post(reverse("panel:resume", args=[deployment.pk, run.pk]))
    resumed = deployment.runs.exclude(pk=run.pk).get()
    assert response["Location"] == reverse("panel:run", args=[deployment.pk, resumed.pk])
    assert (resumed.kind, resumed.resume, resumed.only) == ("run", True, [])
    drop_queued(deployment)


@pytest.mark.parametrize(
    "fields, offered",
    [
        ({"exit_status": 130}, True),  # interrupted
        ({"state": Run.BROKEN, "exit_status": None, "error": "broken off: gone"}, True),
        ({"exit_status": 0, "tasks": [dict(t, status="ok") for t in TASKS]}, False),  # done
        ({"kind": "teardown", "exit_status": 1}, False),  # a teardown: its own page
        ({"check": True, "exit_status": 1}, False),  # a --check changes nothing
        ({"state": Run.ERROR, "exit_status": None, "engine_run_id": None, "error": "e"}, False),
    ],
)
def test_resume_is_offered_for_a_deploy_that_left_work(
    operator, client_for, deployment_of, fields, offered
):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = ended(deployment, **{"engine_run_id": 8, "tasks": TASKS, **fields})
    assert resume_offered(client, deployment, run) is offered


def test_only_the_last_deploy_is_resumed(operator, client_for, deployment_of):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    old = ended(deployment, exit_status=1, engine_run_id=5, tasks=TASKS)
    ended(deployment, exit_status=0, engine_run_id=6)
    assert not resume_offered(client, deployment, old)
    response = client.post(reverse("panel:resume", args=[deployment.pk, old.pk]), follow=True)
    assert "Nothing to resume from this run" in response.content.decode()
    assert deployment.runs.count() == 2


def test_another_operators_run_cannot_be_resumed_nor_its_tasks_read(
    operator, client_for, deployment_of
):
    alice, bob = operator(), operator()
    deployment = deployment_of(alice)
    run = ended(deployment, exit_status=1, engine_run_id=5, tasks=TASKS)
    intruder = client_for(bob)
    args = [deployment.pk, run.pk, "pixelfed.secrets"]
    assert intruder.post(reverse("panel:resume", args=args[:2])).status_code == 404
    assert intruder.get(reverse("panel:task", args=args)).status_code == 404
    assert intruder.get(reverse("panel:task_output", args=args)).status_code == 404
    assert intruder.post(reverse("panel:rerun", args=args)).status_code == 404
    assert deployment.runs.count() == 1


# --- a task's own output ---------------------------------------------------------------------


def test_a_task_opens_its_output_from_the_engines_log(operator, client_for, deployment_of):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = ended(deployment, exit_status=1, engine_run_id=12, tasks=TASKS)
    state_dir = deployment_files.engine_dir(deployment)
    log = log_path(state_dir, 12, "pixelfed.secrets")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"writing the secrets\nthe password {PASSWORD} leaked\nmkdir: failed\n")
    # What the worker stores with the ended run, masked as the worker masks it.
    mask = PanelSink(None, [PASSWORD]).mask
    stored = task_outputs(state_dir, {"engine_run_id": 12, "tasks": TASKS}, mask)
    assert [o.task for o in stored] == ["pixelfed.secrets"]
    for output in stored:
        output.run = run
        output.save()
    log.unlink()  # the page reads the database, never the worker's files
    args = [deployment.pk, run.pk, "pixelfed.secrets"]
    data = client.get(reverse("panel:task_output", args=args)).json()
    assert data["source"] == "log" and data["status"] == "failed" and data["message"] == "boom"
    assert "mkdir: failed" in data["text"] and PASSWORD not in data["text"]
    assert "the password ******** leaked" in data["text"] and data["can_rerun"] is True
    page = client.get(reverse("panel:task", args=args)).content.decode()
    assert "mkdir: failed" in page and PASSWORD not in page
    quiet = client.get(reverse("panel:task_output", args=[deployment.pk, run.pk, "garage.secrets"]))
    assert (quiet.json()["source"], quiet.json()["text"]) == ("none", "")
    assert client.get(reverse("panel:task_output", args=[*args[:2], "no.such"])).status_code == 404
    run_page = client.get(reverse("panel:run", args=args[:2])).content.decode()
    task_url = reverse("panel:task", args=args)
    assert f'<a class="task-link" href="{task_url}">pixelfed.secrets</a>' in run_page


def test_a_running_tasks_output_comes_from_the_live_data(operator, client_for, deployment_of):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = Run.objects.create(
        deployment=deployment,
        state=Run.RUNNING,
        engine_run_id=13,
        tasks=[{"id": "garage.secrets", "host": "garage", "status": "running"}],
    )
    for number, (task, stream, text) in enumerate(
        [
            ("garage.secrets", "event", "[garage] garage.secrets: started\n"),
            ("garage.secrets", "stdout", "first line\n"),
            ("mastodon.secrets", "stdout", "another task's line\n"),
            ("garage.secrets", "stderr", "second line\n"),
        ],
        start=1,
    ):
        run.events.create(number=number, task=task, stream=stream, text=text)
    try:
        data = client.get(
            reverse("panel:task_output", args=[deployment.pk, run.pk, "garage.secrets"])
        ).json()
        assert data["source"] == "live" and data["finished"] is False
        assert data["text"] == "first line\nsecond line\n"  # its own output, no event line
        assert data["can_rerun"] is False  # not while the run goes
    finally:
        Run.objects.filter(pk=run.pk).update(state=Run.FINISHED, exit_status=0)


# --- re-running one task alone ---------------------------------------------------------------


def needy_task(deployment) -> tuple[str, tuple[str, ...]]:
    """A task of the deployment that needs others, and what ``--only`` it runs (the engine's
    selection, computed here independently of the panel's page)."""
    from fedi_run.engine.planning.selection import Selector
    from fedi_run.engine.project import load_project

    project = load_project(
        deployment_files.playbook_file(deployment), [deployment_files.inventory_file(deployment)]
    )
    task = next(t for t in project.graph.order if project.graph.tasks[t].requires)
    return task, project.select(Selector(only=(task,)), "run").order


def test_a_task_is_rerun_alone_after_its_page_shows_what_runs(operator, client_for, deployment_of):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    task, expected = needy_task(deployment)
    assert len(expected) > 1
    run = ended(deployment, engine_run_id=20, tasks=[{"id": task, "host": "x", "status": "ok"}])
    page = client.get(reverse("panel:task", args=[deployment.pk, run.pk, task])).content.decode()
    plan = page.split('id="rerun-plan"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<tr data-task="([^"]+)">', plan) == list(expected)
    assert f"required by {task}" in plan
    assert f"Re-run {len(expected)} tasks</button>" in page and f"--only {task}" in page
    response = client.post(reverse("panel:rerun", args=[deployment.pk, run.pk, task]))
    again = deployment.runs.exclude(pk=run.pk).get()
    assert response["Location"] == reverse("panel:run", args=[deployment.pk, again.pk])
    assert (again.kind, again.only, again.resume) == ("run", [task], False)
    drop_queued(deployment)


def test_a_task_the_deployment_lost_cannot_be_rerun(operator, client_for, deployment_of):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = ended(deployment, tasks=[{"id": "peertube.secrets", "host": "peertube", "status": "ok"}])
    page = client.get(
        reverse("panel:task", args=[deployment.pk, run.pk, "peertube.secrets"])
    ).content.decode()
    assert "the deployment has no task peertube.secrets any more" in page
    assert 'id="rerun-confirm"' not in page


def test_a_teardowns_task_is_not_rerun(operator, client_for, deployment_of):
    owner = operator()
    client = client_for(owner)
    deployment = deployment_of(owner)
    run = ended(deployment, kind="teardown", tasks=[{"id": "x.y", "host": "h", "status": "ok"}])
    page = client.get(reverse("panel:task", args=[deployment.pk, run.pk, "x.y"])).content.decode()
    assert 'id="rerun"' not in page
    response = client.post(reverse("panel:rerun", args=[deployment.pk, run.pk, "x.y"]), follow=True)
    assert "Only a task of an ended deploy can be re-run alone." in response.content.decode()
    assert deployment.runs.count() == 1


def test_live_output_is_masked_once_more(tmp_path):
    """The sink masks the live output before it is stored; the task's output masks it again
    (here given unmasked, as a missed form would be), in each of its forms."""
    import json as jsonlib

    from fedi_run.panel.task_output import task_output

    data = {
        "finished": False,
        "engine_run_id": None,
        "tasks": [{"id": "a.b", "host": "h", "status": "running", "message": f"m {PASSWORD}"}],
        "chunks": [
            {"task": "a.b", "stream": "stdout", "text": f"plain {PASSWORD}\n"},
            {"task": "a.b", "stream": "stdout", "text": f"json {jsonlib.dumps(PASSWORD)}\n"},
        ],
    }
    found = task_output(data, "a.b", tmp_path, (PASSWORD,))
    assert found.source == "live" and PASSWORD not in found.text + found.message
    assert found.text == 'plain ********\njson "********"\n' and found.message == "m ********"
