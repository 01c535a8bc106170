"""The run pages in a real browser (Selenium, Debian's headless Chromium, ``fedi-run panel
serve`` on loopback with its own worker; lab hosts): a deploy made to fail on a lab host, its
failed task's output opened from its row, the host fixed, Resume continuing it; one task
re-run alone; the results' colours read from the computed styles on the run page, History
and the deployments list; and every page without horizontal overflow at 390 px.

Screenshots of the run page (desktop and 390 px) go to ``docs/screenshots/`` with
``FEDI_RUN_SCREENSHOTS=1``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import test_panel_browser as base

pytestmark = pytest.mark.lab

# The seed's browser test's fixtures and helpers: the served panel, the browser, screenshots.
panel, browser, screenshots = base.panel, base.browser, base.screenshots
OPERATOR, OPERATOR_PASSWORD, shot, wait = (
    base.OPERATOR,
    base.OPERATOR_PASSWORD,
    base.shot,
    base.wait,
)

NAME = "runpages"
BROKEN_PATH = f"/var/lib/fedi-run/{NAME}/secrets"
COLOURS = {  # panel.css's variables, as the browser computes them
    "ok": "rgba(31, 138, 76, 1)",
    "failed": "rgba(198, 40, 40, 1)",
    "interrupted": "rgba(217, 119, 6, 1)",
    "broken": "rgba(95, 102, 117, 1)",
    "queued": "rgba(107, 115, 133, 1)",
}
PHONE = 390


def in_panel(panel, code: str, *args) -> object:
    """Run ``code`` in the panel's own data directory (its database and broker) in a process
    of its own; what it prints (JSON) is returned."""
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from fedi_run.panel import site
        site.configure(Path(sys.argv[1]))
        from django.contrib.auth import get_user_model
        from fedi_run.panel import deployment_files, initial_password, runs
        from fedi_run.panel.models import Deployment, Run
        args = json.loads(sys.argv[2])
        """
    ) + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script, str(panel.data), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None


CREATE = """
owner = get_user_model().objects.get(username=args[0])
deployment = Deployment.objects.create(
    owner=owner, name=args[1], domain="fediversity.net", inventory=args[2],
    services=args[3], acme_email="ops@fedi-test.org", acme_accept_terms=True,
    initial_username="admin", initial_display_name="Admin",
    initial_email="admin@fediversity.net", apply=True)
initial_password.set_password(deployment, "a long and secret admin password")
deployment_files.write_playbook(deployment)
print(json.dumps(deployment.pk))
"""

START = """
deployment = Deployment.objects.get(pk=args[0])
print(json.dumps(runs.start(deployment, args[1]).pk))
"""

ROWS = """
deployment = Deployment.objects.get(pk=args[0])
made = {}
for tone, fields in args[1].items():
    made[tone] = Run.objects.create(deployment=deployment, kind="run", **fields).pk
print(json.dumps(made))
"""


def log_in(driver, url):
    from selenium.webdriver.common.by import By

    driver.get(url + "login/")
    driver.find_element(By.ID, "id_username").send_keys(OPERATOR)
    driver.find_element(By.ID, "id_password").send_keys(OPERATOR_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait(driver, lambda d: d.current_url == url, 30, "the deployments page")


def run_url(panel, deployment_pk: int, run_pk: int) -> str:
    return f"{panel.url}deployments/{deployment_pk}/runs/{run_pk}/"


def until_done(driver, what: str) -> str:
    wait(
        driver,
        lambda d: (
            d.execute_script("return document.getElementById('live-run').dataset.done") == "1"
        ),
        what=what,
    )
    return driver.find_element("id", "run-result").text


def colour(driver, selector: str, prop: str = "color") -> str:
    return driver.find_element("css selector", selector).value_of_css_property(prop)


def statuses(driver) -> dict[str, str]:
    return {
        row.get_attribute("data-task"): row.get_attribute("data-status")
        for row in driver.find_elements("css selector", "#tasks tbody tr[data-task]")
    }


def phone(driver, on: bool) -> None:
    """The viewport of a 390 px wide phone (device metrics, as DevTools' device mode)."""
    if on:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": PHONE, "height": 844, "deviceScaleFactor": 1, "mobile": True},
        )
    else:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def overflow(driver) -> tuple[int, int, list[str]]:
    """The page's scroll width and client width, and the elements reaching past the latter."""
    return tuple(
        driver.execute_script(
            """
            var root = document.documentElement, wide = [];
            document.querySelectorAll("body *").forEach(function (e) {
              var box = e.getBoundingClientRect();
              if (box.right > root.clientWidth + 0.5 && wide.length < 12)
                wide.push(e.tagName + "#" + e.id + "." + e.className + " " + Math.round(box.right));
            });
            return [root.scrollWidth, root.clientWidth, wide];
            """
        )
    )


def test_resume_task_output_rerun_colours_and_phones(lab, panel, browser, screenshots):
    from selenium.webdriver.common.by import By

    driver, url = browser, panel.url
    pk = in_panel(panel, CREATE, OPERATOR, NAME, str(lab.inventory_path), ["pixelfed"])
    # A failing step on a lab host: a file where the deployment's secrets directory goes.
    lab.run("pixelfed", f"mkdir -p /var/lib/fedi-run/{NAME} && touch {BROKEN_PATH}", check=True)
    log_in(driver, url)

    # The deploy fails on pixelfed: red, the failed task's output opened from its row, Resume.
    first = in_panel(panel, START, pk, "run")
    driver.get(run_url(panel, pk, first))
    assert until_done(driver, "the failing deploy").startswith("failed (exit 1)")
    assert colour(driver, "#run-result") == COLOURS["failed"]
    first_statuses = statuses(driver)
    failed = sorted(t for t, s in first_statuses.items() if s == "failed")
    assert failed and all(t.endswith("@pixelfed") or "pixelfed" in t for t in failed), failed
    assert colour(driver, f'#tasks tr[data-task="{failed[0]}"] .task-status') == COLOURS["failed"]
    assert driver.find_element(By.ID, "resume").is_displayed()
    link = driver.find_element(By.CSS_SELECTOR, f'#tasks tr[data-task="{failed[0]}"] a.task-link')
    link.click()
    detail = f'#tasks tr.task-detail[data-detail-of="{failed[0]}"]'
    wait(
        driver,
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, detail)
            and d.find_element(By.CSS_SELECTOR, detail + " .task-output-note").text
            != "Loading its output…"
        ),
        30,
        "the task's output below its row",
    )
    shown = driver.find_element(By.CSS_SELECTOR, detail).text
    message = driver.find_element(
        By.CSS_SELECTOR, f'#tasks tr[data-task="{failed[0]}"] .task-message'
    ).text
    assert BROKEN_PATH in message or BROKEN_PATH in shown, (message, shown)
    assert driver.current_url == run_url(panel, pk, first)  # opened in place
    shot(driver, screenshots, "run-failed")

    # Fixed, then Resume continues it: only what was left runs, and it ends done (green).
    lab.run("pixelfed", f"rm -f {BROKEN_PATH}", check=True)
    driver.find_element(By.ID, "resume").click()
    wait(driver, lambda d: d.current_url != run_url(panel, pk, first), 30, "the resumed run")
    assert until_done(driver, "the resumed deploy") == "done"
    assert colour(driver, "#run-result") == COLOURS["ok"]
    resumed = statuses(driver)
    left = {t for t, s in first_statuses.items() if s not in ("ok", "changed")}
    assert set(resumed) == left and set(resumed.values()) <= {"ok", "changed"}, resumed
    assert not driver.find_element(By.ID, "resume-form").is_displayed()
    assert driver.find_element(By.ID, "apply-box").is_displayed()  # the apply ran: its output
    resumed_url = driver.current_url
    apply_row = '#tasks tr[data-task="nixops4.apply"]'
    driver.find_element(By.CSS_SELECTOR, apply_row + " a.task-link").click()
    apply_detail = '#tasks tr.task-detail[data-detail-of="nixops4.apply"] pre'
    wait(
        driver,
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, apply_detail)
            and d.find_element(By.CSS_SELECTOR, apply_detail).is_displayed()
        ),
        30,
        "nixops4.apply's output below its row",
    )
    text = driver.find_element(By.CSS_SELECTOR, apply_detail).text
    assert "nixops4 stand-in (fedi-run tests): would run `nixops4 apply" in text, text
    assert driver.current_url == resumed_url  # opened in place
    shot(driver, screenshots, "run-resumed")
    driver.find_element(By.CSS_SELECTOR, apply_row + " a.task-link").click()  # closed again
    assert not driver.find_elements(By.CSS_SELECTOR, "#tasks tr.task-detail")

    # One task re-run alone: its page lists what that runs, and exactly that runs.
    task = failed[0]
    driver.find_element(By.CSS_SELECTOR, f'#tasks tr[data-task="{task}"] a.task-link').click()
    wait(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, "tr.task-detail a.task-rerun:not([hidden])"),
        30,
        "the re-run link below the row",
    )
    driver.find_element(By.CSS_SELECTOR, "tr.task-detail a.task-rerun").click()
    wait(driver, lambda d: d.find_elements(By.ID, "rerun-plan"), 30, "the task's page")
    planned = [
        r.get_attribute("data-task")
        for r in driver.find_elements(By.CSS_SELECTOR, "#rerun-plan tbody tr")
    ]
    assert planned[-1] == task and "nixops4.apply" not in planned
    driver.find_element(By.ID, "rerun-confirm").click()
    wait(driver, lambda d: d.find_elements(By.ID, "live-run"), 30, "the re-run's page")
    assert until_done(driver, "the re-run") == "done"
    assert sorted(statuses(driver)) == sorted(planned)
    assert driver.current_url != resumed_url

    # Colours by meaning on History, the deployments list and each run page.
    rows = in_panel(
        panel,
        ROWS,
        pk,
        {
            "interrupted": {"state": "finished", "exit_status": 130, "engine_run_id": 900},
            "broken": {"state": "broken", "error": "broken off: its worker is gone"},
        },
    )
    driver.get(f"{url}deployments/{pk}/runs/")
    for tone, run_pk in rows.items():
        assert colour(driver, f'#runs tr[data-run="{run_pk}"] .result') == COLOURS[tone], tone
        assert colour(driver, f'#runs tr[data-run="{run_pk}"] .result') != COLOURS["ok"]
    assert colour(driver, f'#runs tr[data-run="{first}"] .result') == COLOURS["failed"]
    numbers = [
        r.get_attribute("data-number")
        for r in driver.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    ]
    assert "900" in numbers and all(n.isdigit() or n == "—" for n in numbers), numbers
    shot(driver, screenshots, "history-results")
    for tone, run_pk in rows.items():
        driver.get(run_url(panel, pk, run_pk))
        assert colour(driver, "#run-result") == COLOURS[tone], tone
    driver.get(url)
    last = colour(driver, f'#deployments tr[data-deployment="{NAME}"] .result')
    assert last == COLOURS["broken"]  # the newest run of the deployment: broken off

    # At 390 px, no page overflows sideways; the run page's status column is on screen.
    phone(driver, True)
    try:
        pages = {
            "deployments": url,
            "form": f"{url}deployments/new/",
            "deployment": f"{url}deployments/{pk}/",
            "edit": f"{url}deployments/{pk}/edit/",
            "run": resumed_url,
            "history": f"{url}deployments/{pk}/runs/",
            "teardown": f"{url}deployments/{pk}/teardown/",
            "task": f"{resumed_url}tasks/{task}/",
        }
        for name, page in pages.items():
            driver.get(page)
            width, screen, wide = overflow(driver)
            assert width <= screen, (name, width, wide)
        driver.get(resumed_url)
        status = driver.find_element(By.CSS_SELECTOR, "#tasks tbody tr .task-status")
        right = driver.execute_script("return arguments[0].getBoundingClientRect().right", status)
        assert right <= PHONE, right
        path = screenshots / "run-390.png"
        assert driver.save_screenshot(str(path))
        driver.delete_all_cookies()
        driver.get(url + "login/")
        width, screen, wide = overflow(driver)
        assert width <= screen, ("login", width, wide)
        assert driver.find_element(By.ID, "version").text.startswith("fedi-run ")
    finally:
        phone(driver, False)

    # Leave the lab as it was: the deployment torn down.
    down = in_panel(panel, START, pk, "teardown")
    log_in(driver, url)
    driver.get(run_url(panel, pk, down))
    assert until_done(driver, "the teardown") == "done"
    time.sleep(0)  # (the teardown's record is stored before data-done is set)
    assert "Traceback" not in panel.server_log.read_text(), panel.server_log.read_text()[-3000:]
