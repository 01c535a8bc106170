"""The seed's panel check, in a real browser: Selenium drives Debian's headless Chromium against
``fedi-run panel serve`` on loopback. It logs in, describes the deployment (mastodon and
pixelfed on, the lab's inventory), saves, deploys to the lab hosts with the recording nixops4
stand-in, follows the live progress to the recap — on the same page, never reloaded — then
checks the hosts exactly as the cli check does, and tears down through the page.

Screenshots of the main pages go to ``docs/screenshots/`` when ``FEDI_RUN_SCREENSHOTS=1``, else
to the test's temporary directory. A missing chromium or chromedriver fails the test, with the
command that installs them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "services"))
from test_cli_check import (  # noqa: E402 - importable only after the sys.path line above
    SECRETS,
    check_step,
    expected_files,
    secret_files,
)

pytestmark = pytest.mark.lab

STANDIN = ROOT / "tests" / "standin"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
INSTALL = "apt-get install chromium chromium-driver"
OPERATOR, OPERATOR_PASSWORD = "operator", "the operator's own long password"
ADMIN_PASSWORD = "a long and secret admin password"
TIMEOUT = 180


@pytest.fixture
def screenshots(tmp_path):
    """Where the screenshots go: docs/screenshots/ with FEDI_RUN_SCREENSHOTS=1, else tmp."""
    directory = (
        ROOT / "docs" / "screenshots"
        if os.environ.get("FEDI_RUN_SCREENSHOTS") == "1"
        else tmp_path / "screenshots"
    )
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def panel(tmp_path):
    """``fedi-run panel serve`` on a free loopback port, its own data directory, the nixops4
    stand-in on its PATH; an operator created with ``createuser``. Stopped (by pid) at the end."""
    data = tmp_path / "panel-data"
    log = tmp_path / "nixops4.log"
    env = {
        **os.environ,
        "PATH": f"{STANDIN}:{os.environ['PATH']}",
        "NIXOPS4_STANDIN_LOG": str(log),
        "FEDI_RUN_PANEL_DIR": str(data),
    }
    created = subprocess.run(
        [sys.executable, "-m", "fedi_run.engine.cli.main", "panel", "createuser", OPERATOR],
        input=f"{OPERATOR_PASSWORD}\n{OPERATOR_PASSWORD}\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    errors = open(tmp_path / "panel.log", "w+")
    server = subprocess.Popen(
        [sys.executable, "-m", "fedi_run.engine.cli.main", "panel", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        cwd=tmp_path,
    )
    try:
        deadline, url = time.monotonic() + 30, None
        while url is None and time.monotonic() < deadline and server.poll() is None:
            found = re.search(
                r"serving (http://127\.0\.0\.1:\d+/)", (tmp_path / "panel.log").read_text()
            )
            url = found[1] if found else time.sleep(0.05)
        assert url, f"the panel did not start:\n{(tmp_path / 'panel.log').read_text()}"
        yield type(
            "Panel",
            (),
            {"url": url, "data": data, "standin_log": log, "server_log": tmp_path / "panel.log"},
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        errors.close()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium driven by chromedriver; a test failure, never a skip, without them."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert not missing, (
        f"the panel's browser test needs Debian's Chromium and its driver; "
        f"missing {', '.join(missing)}: install them with `{INSTALL}`"
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, directory: Path, name: str) -> Path:
    """A full-height screenshot of the current page."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(int(height) + 40, 2400)))
    driver.execute_script("window.scrollTo(0, 0)")
    path = directory / f"{name}.png"
    assert driver.save_screenshot(str(path)), name
    driver.set_window_size(1280, 1000)
    return path


def wait(driver, condition, timeout: float = TIMEOUT, what: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, what)


def engine_step(
    panel, deployment_key: str, engine_run_id: int, calls_before: int
) -> tuple[dict, Path]:
    """The run as the cli check sees it: its events (from the engine's state database, shaped
    as ``--json`` events) and the stand-in's calls since ``calls_before``; and the playbook."""
    from fedi_run.engine.report.state import StateStore

    directory = panel.data / "deployments" / deployment_key
    with StateStore.open(directory / ".fedi-run" / "state.db") as store:
        run = store.get_run(engine_run_id)
    started = sorted((t for t in run.tasks if t.started_at is not None), key=lambda t: t.started_at)
    events = [{"event": "task_started", "id": t.task_id, "time": t.started_at} for t in started]
    events += [
        {"event": "task_finished", "id": t.task_id, "status": t.outcome, "time": t.finished_at}
        for t in run.tasks
    ]
    calls = [json.loads(line) for line in panel.standin_log.read_text().splitlines()][calls_before:]
    return {"events": events, "calls": calls}, directory / "playbook.toml"


def assert_readable_member(calls: list[dict]) -> None:
    """Each apply was of the deployment's member path, in a directory Nix can read (the
    nixops4 stand-in's checks: its own git repository, HEAD holding the rendered files)."""
    for call in calls:
        assert (call["memberPath"], call["problems"]) == ("fediversity", [])
        assert call["git"]["toplevel"] == call["cwd"] and call["git"]["clean"] is True


def follow_run(driver, what: str, while_running=None) -> dict:
    """On a run page: watch it update in place until the recap; what changed, and how.
    ``while_running()`` is called once the watch is set up (for a screenshot mid-run)."""
    marker = secrets.token_hex(8)
    driver.execute_script(
        """
        window.__panelMarker = arguments[0];
        window.__statusChanges = [];
        new MutationObserver(function (records) {
          records.forEach(function (r) {
            window.__statusChanges.push(
              [r.target.dataset.task, r.oldValue, r.target.dataset.status]);
          });
        }).observe(document.querySelector('#tasks tbody'),
                   {attributes: true, attributeFilter: ['data-status'], attributeOldValue: true,
                    subtree: true});
    """,
        marker,
    )
    url = driver.current_url
    if while_running is not None:
        while_running()
    wait(
        driver,
        lambda d: (
            d.execute_script("return document.getElementById('live-run').dataset.done") == "1"
        ),
        what=f"the {what} to reach its recap",
    )
    assert driver.current_url == url
    assert driver.execute_script("return window.__panelMarker") == marker  # never reloaded
    assert not driver.find_element("id", "stop-form").is_displayed()  # nothing left to stop
    return {
        "changes": driver.execute_script("return window.__statusChanges"),
        "result": driver.find_element("id", "run-result").text,
        "apply_output": driver.execute_script(
            "return document.getElementById('apply-output').textContent"
        ),
        "log": driver.execute_script("return document.getElementById('log').textContent"),
        "recap": driver.find_element("id", "recap").text,
        "statuses": {
            row.get_attribute("data-task"): row.get_attribute("data-status")
            for row in driver.find_elements("css selector", "#tasks tbody tr")
        },
    }


def panel_row(panel, query: str, *args):
    with sqlite3.connect(panel.data / "panel.sqlite3") as db:
        return db.execute(query, args).fetchone()


def test_panel_check(lab, panel, browser, screenshots):
    started = time.monotonic()
    driver, url = browser, panel.url
    from selenium.webdriver.common.by import By

    # Staff define the environment "lab" (the lab's inventory imported): test_panel_provider_flow.
    from test_panel_provider_flow import as_staff_define_lab, create_staff

    create_staff(panel)
    as_staff_define_lab(driver, url, lab)
    driver.find_element(By.ID, "logout").click()

    # Log in.
    driver.get(url)
    assert driver.current_url.startswith(url + "login/")
    driver.find_element(By.ID, "id_username").send_keys(OPERATOR)
    driver.find_element(By.ID, "id_password").send_keys(OPERATOR_PASSWORD)
    shots = [shot(driver, screenshots, "login")]
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait(driver, lambda d: d.current_url == url, 30, "the deployments page")

    # Describe the deployment: mastodon and pixelfed on, the lab's hosts.
    driver.find_element(By.ID, "new-deployment").click()
    fields = {
        "id_name": "fediversity",
        "id_domain": "fediversity.net",
        "id_acme_email": "ops@fedi-test.org",
        "id_initial_username": "admin",
        "id_initial_display_name": "Admin",
        "id_initial_email": "admin@fediversity.net",
        "id_password": ADMIN_PASSWORD,
    }
    for field, value in fields.items():
        driver.find_element(By.ID, field).send_keys(value)
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "id_environment")).select_by_visible_text("lab")
    for service in ("mastodon", "pixelfed"):
        driver.find_element(By.CSS_SELECTOR, f"input[name=services][value={service}]").click()
    driver.find_element(By.ID, "id_acme_accept_terms").click()
    assert driver.find_element(By.ID, "id_apply").is_selected()
    # form, deployment, deployments, teardown: test_panel_provider_flow.py screenshots them
    driver.find_element(By.ID, "save").click()
    wait(driver, lambda d: d.find_elements(By.ID, "deploy"), 30, "the deployment's page")
    assert "Deployment fediversity saved." in driver.page_source
    key, pk = panel_row(
        panel, "SELECT key, id FROM fedi_panel_deployment WHERE name = ?", "fediversity"
    )

    # Deploy (after the plan and the --check run), and follow it live.
    driver.find_element(By.ID, "deploy").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#check[data-ended='1']"), 180, "check")
    driver.find_element(By.ID, "confirm-deploy").click()
    wait(driver, lambda d: d.find_elements(By.ID, "live-run"), 30, "the run page")

    def mid_run():  # a screenshot while tasks run (or at the end, if the run is that quick)
        wait(
            driver,
            lambda d: (
                d.find_elements(By.CSS_SELECTOR, "#live-run[data-done='1']")
                or (
                    d.find_elements(By.CSS_SELECTOR, "#tasks tr[data-status=changed]")
                    and d.find_elements(By.CSS_SELECTOR, "#tasks tr[data-status=pending]")
                )
            ),
            60,
            "tasks running",
        )
        shots.append(shot(driver, screenshots, "run-live"))

    deployed = follow_run(driver, "deploy", mid_run)
    assert deployed["result"] == "done", driver.find_element(By.ID, "log").text[-3000:]
    assert deployed["changes"], "no task row changed state in place"
    assert any(task == "nixops4.apply" for task, _, _ in deployed["changes"])
    assert (
        set(deployed["statuses"].values()) <= {"ok", "changed"}
        and "nixops4.apply" in deployed["statuses"]
    )
    assert (
        "nixops4 stand-in (fedi-run tests): would run `nixops4 apply fediversity"
        in deployed["apply_output"]
    ), deployed
    for host in ("garage", "mastodon", "pixelfed"):
        assert host in deployed["recap"]
    shots.append(shot(driver, screenshots, "run"))
    assert ADMIN_PASSWORD not in driver.page_source

    # The hosts, as the cli check checks them.
    run_id = panel_row(
        panel,
        "SELECT engine_run_id FROM fedi_panel_run WHERE deployment_id = ? ORDER BY id DESC",
        pk,
    )[0]
    step, playbook = engine_step(panel, key, run_id, 0)
    check_step(lab, type("Deploy", (), {"playbook": playbook}), step, {"mastodon", "pixelfed"})
    user = json.loads(lab.read_file("mastodon", f"{SECRETS}/mastodon/initial-user"))
    assert user == {
        "username": "admin",
        "displayName": "Admin",
        "email": "admin@fediversity.net",
        "password": ADMIN_PASSWORD,
    }
    assert [c["argv"][:2] for c in step["calls"]] == [["apply", "fediversity"]]
    assert_readable_member(step["calls"])

    # The history: the run, its recap, its masked log.
    driver.find_element(By.LINK_TEXT, "History").click()
    wait(driver, lambda d: d.find_elements(By.ID, "runs"), 30, "the history")
    row = driver.find_element(By.CSS_SELECTOR, "#runs tbody tr")
    assert "deploy" in row.text and "done" in row.text and "mastodon" in row.text
    shots.append(shot(driver, screenshots, "history"))
    driver.get(url)
    assert "fediversity" in driver.find_element(By.ID, "deployments").text

    # Tear down, after the confirmation.
    driver.find_element(By.LINK_TEXT, "fediversity").click()
    driver.find_element(By.ID, "teardown").click()
    driver.find_element(By.ID, "id_confirm").send_keys("fediversity")
    driver.find_element(By.ID, "confirm-teardown").click()
    wait(driver, lambda d: d.find_elements(By.ID, "live-run"), 30, "the teardown's page")
    removed = follow_run(driver, "teardown")
    assert removed["result"] == "done", driver.find_element(By.ID, "log").text[-3000:]
    left = {
        host: secret_files(lab, host) for host in ("garage", "mastodon", "peertube", "pixelfed")
    }
    assert left == {"garage": {}, "mastodon": {}, "peertube": {}, "pixelfed": {}}
    calls = [json.loads(line) for line in panel.standin_log.read_text().splitlines()]
    assert [c["argv"] for c in calls] == [
        ["apply", "fediversity", "--no-interactive", "--show-trace"]
    ] * 2
    assert_readable_member(calls)
    assert ADMIN_PASSWORD not in driver.page_source
    assert ADMIN_PASSWORD.encode() not in (panel.data / "panel.sqlite3").read_bytes()
    assert expected_files(set()) == {h: {} for h in ("garage", "mastodon", "peertube", "pixelfed")}

    for path in shots:
        assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    print(
        f"\npanel check: {time.monotonic() - started:.1f}s in the browser; "
        f"screenshots in {screenshots}"
    )
    assert "Traceback" not in panel.server_log.read_text(), panel.server_log.read_text()[-3000:]
