"""The panel as a hosting provider and its operator use it, in a real browser (Selenium,
headless Chromium) against ``fedi-run panel serve`` on loopback and the lab's hosts.

A staff user defines the environment ``lab`` by importing the lab's inventory file (its hosts'
keys pinned, nothing typed) and opens it to the operator. The operator describes a deployment
in it (mastodon and pixelfed; garage shown on because they need it), deploys — the plan and the
``--check`` run first, then the confirmation — and the deploy fails on a lab host (a file where
the deployment's secrets directory goes on pixelfed): the deployment "failed", the run's result
red. The host fixed, Resume on the failed run's page continues it to done — the engine's state
shows the resumed run ran exactly what the first left undone, nothing twice, the apply once.
The operator sees the services' URLs and their health ("not active": the lab's hosts are
Debian, not NixOS), sees what switching pixelfed off would remove (the plan's destructive
steps), tears down (only the hosts it uses named), and deletes the deployment.

At 390 px (a phone) every page of ``panel/urls.py`` a browser opens — login, deployments, the
deployment form, a deployment (never deployed, failed, deployed), its edit and deploy pages,
History, a run (failed, resumed), a task, the teardown and delete confirmations, and the
staff's environments, new environment and environment pages — has no horizontal overflow, each
checked where the flow reaches it (the others are POST actions or JSON).

The steps are functions (``as_staff_define_lab``, ``describe``, ``deploy_after_plan``, …) that
other browser tests import (the run pages' resume-after-failure test builds on them).
Screenshots as ``test_panel_browser.py`` takes them (``FEDI_RUN_SCREENSHOTS=1``: into
``docs/screenshots/``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_panel_browser import (  # noqa: E402,F401 - the fixtures are used by name
    OPERATOR,
    OPERATOR_PASSWORD,
    browser,
    follow_run,
    panel,
    panel_row,
    screenshots,
    shot,
    wait,
)
from test_panel_browser_pages import COLOURS, PHONE, colour, overflow, phone  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "services"))
from test_cli_check import check_step, secret_files  # noqa: E402

pytestmark = pytest.mark.lab

STAFF, STAFF_PASSWORD = "provider", "the provider staff's long password"
ADMIN_PASSWORD = "a long and secret admin password"
DEPLOYMENT = "fediversity"
APPS = ("mastodon", "pixelfed")
BROKEN_PATH = f"/var/lib/fedi-run/{DEPLOYMENT}/secrets"  # a file there: the deploy fails
DONE = ("ok", "changed")


def narrow(driver, pages: dict[str, str | None]) -> dict[str, tuple]:
    """Each page (name → URL, or None: the page shown now) at 390 px: name → (scroll width,
    client width, the elements reaching past it) for each that overflows sideways."""
    wide = {}
    phone(driver, True)
    try:
        for name, page in pages.items():
            if page is not None:
                driver.get(page)
            width, screen, past = overflow(driver)
            assert screen <= PHONE, (name, screen)  # the phone's width in effect
            if width > screen:
                wide[name] = (width, screen, past)
    finally:
        phone(driver, False)
    return wide


def panel_rows(served, query: str, *args) -> list[tuple]:
    with sqlite3.connect(served.data / "panel.sqlite3") as db:
        return db.execute(query, args).fetchall()


def engine_runs(served, deployment_key: str, run_ids) -> list:
    """The engine's records (with their tasks) of the runs ``run_ids``."""
    from fedi_run.engine.report.state import StateStore

    state = served.data / "deployments" / deployment_key / ".fedi-run" / "state.db"
    with StateStore.open(state) as store:
        return [store.get_run(run_id) for run_id in run_ids]


def together(served, deployment_key: str, first, resumed) -> tuple[dict, Path]:
    """A failed run and its resume as the cli check sees one deploy (:func:`engine_step`'s
    shape): each task as the run that did it (the first's done tasks, then the resumed run's),
    and every stand-in call."""
    did = [t for t in first.tasks if t.outcome in DONE] + list(resumed.tasks)
    started = sorted((t for t in did if t.started_at is not None), key=lambda t: t.started_at)
    events = [{"event": "task_started", "id": t.task_id, "time": t.started_at} for t in started]
    events += [
        {"event": "task_finished", "id": t.task_id, "status": t.outcome, "time": t.finished_at}
        for t in did
    ]
    calls = [json.loads(line) for line in served.standin_log.read_text().splitlines()]
    return {"events": events, "calls": calls}, (
        served.data / "deployments" / deployment_key / "playbook.toml"
    )


def fedi_run_panel(served, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """``fedi-run panel ARGS`` on the served panel's data directory."""
    return subprocess.run(
        [sys.executable, "-m", "fedi_run.engine.cli.main", "panel", *args],
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, "FEDI_RUN_PANEL_DIR": str(served.data)},
        timeout=60,
        check=False,
    )


def create_staff(served) -> None:
    made = fedi_run_panel(
        served, "createuser", STAFF, "--staff", input=f"{STAFF_PASSWORD}\n{STAFF_PASSWORD}\n"
    )
    assert made.returncode == 0, made.stderr


def log_in(driver, url: str, name: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "login/")
    if driver.find_elements(By.ID, "logout"):
        driver.find_element(By.ID, "logout").click()
        wait(driver, lambda d: d.find_elements(By.ID, "id_username"), 30, "the login page")
    driver.find_element(By.ID, "id_username").send_keys(name)
    driver.find_element(By.ID, "id_password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait(driver, lambda d: d.current_url == url, 30, "the deployments page")


def as_staff_define_lab(driver, url: str, lab, shots: Path | None = None) -> int:
    """Staff: New environment ``lab``, open to the operator, its hosts imported from the lab's
    inventory file (an upload: the pinned keys are never typed); its pk."""
    from selenium.webdriver.common.by import By

    log_in(driver, url, STAFF, STAFF_PASSWORD)
    driver.find_element(By.ID, "environments").click()
    driver.find_element(By.ID, "new-environment").click()
    driver.find_element(By.ID, "id_name").send_keys("lab")
    driver.find_element(By.ID, "id_description").send_keys("The lab's four hosts")
    driver.find_element(
        By.XPATH, f"//ul[@class='switches']//label[span[text()='{OPERATOR}']]/input"
    ).click()
    driver.find_element(By.ID, "id_import-file").send_keys(str(lab.inventory_path))
    driver.find_element(By.ID, "save").click()
    wait(driver, lambda d: "Environment lab saved." in d.page_source, 30, "the saved environment")
    environment = int(driver.current_url.rstrip("/").rsplit("/", 1)[1])
    page = driver.page_source
    for name, host in lab.hosts.items():
        assert host.host_key in page, name  # pinned, from the file
    if shots is not None:
        shot(driver, shots, "environment")
    driver.find_element(By.LINK_TEXT, "All environments").click()
    row = driver.find_element(By.CSS_SELECTOR, "#environment-list tr[data-environment=lab]")
    assert OPERATOR in row.text and "mastodon: mastodon" in row.text
    if shots is not None:
        shot(driver, shots, "environments")
    return environment


def describe(driver, url: str, apps=APPS, shots: Path | None = None) -> int:
    """The operator: a new deployment in ``lab`` with ``apps`` on; its pk."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(url)
    driver.find_element(By.ID, "new-deployment").click()
    assert not driver.find_elements(By.ID, "id_inventory")  # no path to type
    fields = {
        "id_name": DEPLOYMENT,
        "id_domain": "fediversity.net",
        "id_acme_email": "ops@fedi-test.org",
        "id_initial_username": "admin",
        "id_initial_display_name": "Admin",
        "id_initial_email": "admin@fediversity.net",
        "id_password": ADMIN_PASSWORD,
    }
    for field, value in fields.items():
        driver.find_element(By.ID, field).send_keys(value)
    Select(driver.find_element(By.ID, "id_environment")).select_by_visible_text("lab")
    garage = driver.find_element(By.CSS_SELECTOR, "input[name=services][value=garage]")
    assert garage.is_enabled() and not garage.is_selected()
    for service in apps:
        driver.find_element(By.CSS_SELECTOR, f"input[name=services][value={service}]").click()
    assert garage.is_selected() and not garage.is_enabled()
    note = driver.find_element(By.ID, "forced-garage").text
    assert note == f"on because {', '.join(apps)} need{'s' if len(apps) == 1 else ''} it"
    driver.find_element(By.ID, "id_acme_accept_terms").click()
    assert "Off: prepare only" in driver.find_element(By.ID, "field-apply").text
    if shots is not None:
        shot(driver, shots, "form")
    driver.find_element(By.ID, "save").click()
    wait(driver, lambda d: d.find_elements(By.ID, "deploy"), 30, "the deployment's page")
    assert f"Deployment {DEPLOYMENT} saved." in driver.page_source
    return int(driver.current_url.rstrip("/").rsplit("/", 1)[1])


def deploy_after_plan(
    driver, shots: Path | None = None, while_running=None, before_confirm=None
) -> dict:
    """On a deployment's page: Deploy… → the plan and the ``--check`` run → Confirm → the run,
    followed to its recap (:func:`follow_run`'s result). ``before_confirm()`` is called on the
    plan's page once the check ended."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "deploy").click()
    wait(driver, lambda d: d.find_elements(By.ID, "plan"), 30, "the plan")
    wait(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, "#check[data-ended='1']"),
        180,
        "the check to end",
    )
    check = driver.find_element(By.ID, "check-status").text
    assert "would change" in check, check
    plan = {
        row.get_attribute("data-task")
        for row in driver.find_elements(By.CSS_SELECTOR, "#plan tbody tr")
    }
    assert "nixops4.apply" in plan
    if shots is not None:
        shot(driver, shots, "deploy")
    if before_confirm is not None:
        before_confirm()
    driver.find_element(By.ID, "confirm-deploy").click()
    wait(driver, lambda d: d.find_elements(By.ID, "live-run"), 30, "the run page")
    return follow_run(driver, "deploy", while_running)


def test_provider_flow(lab, panel, browser, screenshots):  # noqa: F811 - fixtures
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    driver, url = browser, panel.url
    wide = narrow(driver, {"login": url + "login/"})  # at 390 px: name → how it overflows
    create_staff(panel)
    environment = as_staff_define_lab(driver, url, lab, screenshots)
    wide |= narrow(
        driver,
        {
            "environments": url + "environments/",
            "environment (new)": url + "environments/new/",
            "environment": f"{url}environments/{environment}/",
            "deployments (staff)": url,
        },
    )

    log_in(driver, url, OPERATOR, OPERATOR_PASSWORD)
    wide |= narrow(driver, {"deployments (none)": url, "form (new)": url + "deployments/new/"})
    pk = describe(driver, url, APPS, screenshots)
    assert driver.find_element(By.ID, "deployment-state").text == "never deployed"
    hosts = [
        r.get_attribute("data-host") for r in driver.find_elements(By.CSS_SELECTOR, "#hosts tr")
    ]
    assert hosts == ["garage", "mastodon", "pixelfed"]  # not peertube: it never uses it
    key = panel_row(panel, "SELECT key FROM fedi_panel_deployment WHERE id = ?", pk)[0]
    page = f"{url}deployments/{pk}/"
    wide |= narrow(driver, {"deployment (never deployed)": None, "edit": page + "edit/"})
    driver.get(page)

    def plan_at_390_then_break_pixelfed():
        wide.update(narrow(driver, {"deploy (plan, check ended)": None}))
        phone(driver, True)
        try:
            driver.execute_script("window.scrollTo(0, 0)")
            assert driver.save_screenshot(str(screenshots / "deploy-390.png"))
        finally:
            phone(driver, False)
        # A failing step on a lab host: a file where the deployment's secrets directory goes.
        lab.run(
            "pixelfed",
            f"mkdir -p {BROKEN_PATH.rsplit('/', 1)[0]} && touch {BROKEN_PATH}",
            check=True,
        )

    # The first deploy fails on pixelfed: the run red, the deployment "failed".
    failed_run = deploy_after_plan(
        driver, screenshots, before_confirm=plan_at_390_then_break_pixelfed
    )
    assert failed_run["result"].startswith("failed (exit 1)"), failed_run["result"]
    assert colour(driver, "#run-result") == COLOURS["failed"]
    failed = sorted(t for t, s in failed_run["statuses"].items() if s == "failed")
    assert failed and all("pixelfed" in t for t in failed), failed
    assert driver.find_element(By.ID, "resume").is_displayed()
    failed_url = driver.current_url
    failed_pk = int(failed_url.rstrip("/").rsplit("/", 1)[1])
    driver.get(page)
    assert driver.find_element(By.ID, "deployment-state").text == "failed"
    driver.get(f"{page}runs/")
    assert colour(driver, f'#runs tr[data-run="{failed_pk}"] .result') == COLOURS["failed"]
    wide |= narrow(
        driver,
        {
            "deployment (failed)": page,
            "run (failed)": failed_url,
            "task (failed)": f"{failed_url}tasks/{failed[0]}/",
            "history (check, failed run)": f"{page}runs/",
        },
    )

    # The host fixed, Resume on the failed run's page continues it to done (green).
    lab.run("pixelfed", f"rm -f {BROKEN_PATH}", check=True)
    driver.get(failed_url)
    driver.find_element(By.ID, "resume").click()
    wait(driver, lambda d: d.current_url != failed_url, 30, "the resumed run")
    wait(driver, lambda d: d.find_elements(By.ID, "live-run"), 30, "the resumed run's page")
    deployed = follow_run(driver, "resumed deploy")
    assert deployed["result"] == "done", driver.find_element(By.ID, "log").text[-3000:]
    assert colour(driver, "#run-result") == COLOURS["ok"]
    left = {t for t, s in failed_run["statuses"].items() if s not in DONE}
    assert set(deployed["statuses"]) == left, (deployed["statuses"], left)
    assert ADMIN_PASSWORD not in driver.page_source
    resumed_url = driver.current_url

    # The engine's state: the resumed run ran what the first left undone, nothing twice; the
    # two together did the whole deploy (the hosts' files, the apply once and last).
    run_ids = [
        row[0]
        for row in panel_rows(
            panel,
            'SELECT engine_run_id FROM fedi_panel_run WHERE deployment_id = ? AND "check" = 0 '
            "AND kind = 'run' ORDER BY id",
            pk,
        )
    ]
    assert len(run_ids) == 2 and None not in run_ids, run_ids
    first, resumed = engine_runs(panel, key, run_ids)
    assert first.exit_status == 1 and resumed.exit_status == 0
    done_first = {t.task_id for t in first.tasks if t.outcome in DONE}
    undone = {t.task_id for t in first.tasks} - done_first
    assert set(failed) <= undone and "nixops4.apply" in undone, undone
    assert {t.task_id for t in resumed.tasks} == undone  # exactly what was left, none done twice
    outcomes = {t.task_id: t.outcome for t in resumed.tasks}
    assert set(outcomes.values()) <= set(DONE), outcomes
    assert min(t.started_at for t in resumed.tasks) >= max(
        t.finished_at for t in first.tasks if t.finished_at is not None
    )
    step, playbook = together(panel, key, first, resumed)
    check_step(lab, type("Deploy", (), {"playbook": playbook}), step, set(APPS))
    assert secret_files(lab, "peertube") == {}

    # The deployment's page: deployed, the URLs, the health the engine's verify found.
    driver.find_element(By.LINK_TEXT, DEPLOYMENT).click()
    wait(driver, lambda d: d.find_elements(By.ID, "services"), 60, "the deployment's page")
    assert driver.find_element(By.ID, "deployment-state").text == "deployed"
    urls = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#services a.service-url")]
    assert urls == [f"https://{s}.fediversity.net/" for s in ("mastodon", "pixelfed", "garage")]
    wait(  # the worker's check after the deploy: the page refreshes itself until it is stored
        driver,
        lambda d: not d.find_elements(By.CSS_SELECTOR, '#services [data-health="checking"]'),
        120,
        "the health check after the deploy",
    )
    health = {
        row.get_attribute("data-service"): row.find_element(By.CSS_SELECTOR, ".health")
        for row in driver.find_elements(By.CSS_SELECTOR, "#services tbody tr")
    }
    for service in ("mastodon", "pixelfed"):
        assert health[service].get_attribute("data-health") == "not active", health[service].text
    shot(driver, screenshots, "deployment")
    driver.get(url)
    row = driver.find_element(By.CSS_SELECTOR, f"#deployments tr[data-deployment={DEPLOYMENT}]")
    assert "lab" in row.text and "deployed" in row.text
    shot(driver, screenshots, "deployments")
    wide |= narrow(
        driver,
        {
            "deployments": url,
            "deployment (deployed)": page,
            "edit (deployed)": page + "edit/",
            "run (resumed)": resumed_url,
            "task (resumed)": f"{resumed_url}tasks/nixops4.apply/",
            "history (check, failed, resumed)": f"{page}runs/",
        },
    )

    # Switching pixelfed off would remove its data: the plan marks those steps.
    driver.get(f"{url}deployments/{pk}/edit/")
    assert not driver.find_element(By.ID, "id_name").is_enabled()  # fixed since the deploy
    driver.find_element(By.CSS_SELECTOR, "input[name=services][value=pixelfed]").click()
    driver.find_element(By.ID, "save").click()
    wait(driver, lambda d: d.find_elements(By.ID, "deploy"), 30, "the deployment's page")
    driver.get(f"{url}deployments/{pk}/deploy/")
    destructive = {
        row.get_attribute("data-task")
        for row in driver.find_elements(By.CSS_SELECTOR, "#plan tr[data-destructive='1']")
    }
    assert {"pixelfed.absent", "garage.drop-key.pixelfed"} <= destructive, destructive
    assert not driver.find_element(By.ID, "confirm-deploy").is_enabled()  # no check yet
    assert "Run the check first" in driver.find_element(By.ID, "confirm").text
    shot(driver, screenshots, "deploy-destructive")
    wide |= narrow(driver, {"deploy (destructive plan)": None})
    driver.get(f"{url}deployments/{pk}/edit/")
    driver.find_element(By.CSS_SELECTOR, "input[name=services][value=pixelfed]").click()
    driver.find_element(By.ID, "save").click()
    wait(driver, lambda d: d.find_elements(By.ID, "deploy"), 30, "the deployment's page")

    # Tear down: the confirmation names only the hosts it uses.
    driver.find_element(By.ID, "teardown").click()
    named = driver.find_element(By.ID, "teardown-hosts").text
    wide |= narrow(driver, {"teardown": None})
    assert named == "garage, mastodon, pixelfed", named
    driver.find_element(By.ID, "id_confirm").send_keys(DEPLOYMENT)
    shot(driver, screenshots, "teardown")
    driver.find_element(By.ID, "confirm-teardown").click()
    wait(driver, lambda d: d.find_elements(By.ID, "live-run"), 30, "the teardown's page")
    removed = follow_run(driver, "teardown")
    wide |= narrow(driver, {"run (teardown)": None})
    assert removed["result"] == "done", driver.find_element(By.ID, "log").text[-3000:]
    assert {h: secret_files(lab, h) for h in lab.hosts} == {h: {} for h in lab.hosts}

    # Delete: the deployment, its runs and its files.
    driver.find_element(By.LINK_TEXT, DEPLOYMENT).click()
    assert driver.find_element(By.ID, "deployment-state").text == "torn down"
    driver.find_element(By.ID, "delete").click()
    wide |= narrow(driver, {"delete": None})
    driver.find_element(By.ID, "id_confirm").send_keys(DEPLOYMENT)
    shot(driver, screenshots, "delete")
    driver.find_element(By.ID, "confirm-delete").click()
    wait(driver, lambda d: "deleted, with its runs and files" in d.page_source, 30, "deleted")
    assert not driver.find_elements(By.CSS_SELECTOR, f"tr[data-deployment={DEPLOYMENT}]")
    assert not (panel.data / "deployments" / key).exists()
    assert (
        panel_row(panel, "SELECT COUNT(*) FROM fedi_panel_run WHERE deployment_id = ?", pk)[0] == 0
    )
    assert ADMIN_PASSWORD.encode() not in (panel.data / "panel.sqlite3").read_bytes()

    users = fedi_run_panel(panel, "users")
    assert users.returncode == 0, users.stderr
    listed = {line.split()[0]: line.split() for line in users.stdout.splitlines()[1:]}
    assert listed[STAFF][1] == "staff" and listed[OPERATOR][1] == "operator"
    assert listed[OPERATOR][-1] == "0" and "never" not in listed[OPERATOR]
    print(f"\nprovider flow: {time.monotonic() - started:.1f}s; screenshots in {screenshots}")
    assert wide == {}, wide  # at 390 px: page → (scroll width, client width, the widest)
    assert "Traceback" not in panel.server_log.read_text(), panel.server_log.read_text()[-3000:]
