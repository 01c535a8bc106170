"""The panel run the way a provider runs it (issue 16), in the browser: PostgreSQL and Redis,
``panel serve`` and two ``panel worker`` processes, each in a data directory of its own (they
share only the database, the broker and the secret key); two deployments deployed at once go to
different workers; a deploy of a running deployment is refused with the running run's link;
the web server restarted during a run changes nothing for the run, and the page — never
reloaded — shows its end; a worker SIGKILLed during a run leaves it broken off, and Resume
continues it on the other worker with nothing done twice on the hosts (what the killed worker
made in its own data directory is made again); no file is left holding the initial password,
and the database holds it only sealed. And the embedded default: ``serve``
alone, no Redis, no PostgreSQL, still deploys (through a worker of its own, which it stops).

The nixops4 stand-in is held (it waits while a file exists) so that runs are live while the
test acts; the lab's hosts carry the run that is killed and resumed."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time

import pytest
import requests
from workers_helpers import (
    INITIAL_PASSWORD,
    OPERATOR,
    OPERATOR_PASSWORD,
    ROOT,
    Cluster,
    browser_driver,
    end,
    run_page_id,
)

sys.path.insert(0, str(ROOT / "tests" / "services"))
from test_cli_check import expected_files, secret_files  # noqa: E402

pytestmark = pytest.mark.lab
TIMEOUT = 180


def wait(what: str, condition, timeout: float = TIMEOUT, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"waited {timeout}s for {what}")


def browser_wait(driver, condition, what: str, timeout: float = TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, what)


def log_in(driver, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    driver.find_element(By.ID, "id_username").send_keys(OPERATOR)
    driver.find_element(By.ID, "id_password").send_keys(OPERATOR_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    browser_wait(driver, lambda d: d.current_url == url, "the deployments page", 30)


def deploy_in_browser(driver, cluster: Cluster, deployment_pk: int) -> int:
    """Confirm a deploy on the deployment's deploy page (the confirmation is offered after a
    check; the check is not this test's subject: the button is enabled by the test); the run's
    pk, from the run page it goes to."""
    from selenium.webdriver.common.by import By

    driver.get(f"{cluster.url}deployments/{deployment_pk}/deploy/")
    driver.execute_script("document.getElementById('confirm-deploy').disabled = false;")
    driver.find_element(By.ID, "confirm-deploy").click()
    browser_wait(driver, lambda d: "/runs/" in d.current_url, "the run page", 30)
    return run_page_id(driver.current_url)[1]


def run_row(cluster: Cluster, run_pk: int) -> dict:
    names = ("state", "worker", "worker_pid", "exit_status", "error", "engine_run_id", "tasks")
    values = cluster.row(f"SELECT {', '.join(names)} FROM fedi_panel_run WHERE id = %s", run_pk)
    return dict(zip(names, values))


def applying(cluster: Cluster, run_pk: int) -> bool:
    row = run_row(cluster, run_pk)
    return row["state"] == "running" and any(
        t["id"] == "nixops4.apply" and t["status"] == "running" for t in row["tasks"] or []
    )


def mark_page(driver) -> str:
    marker = secrets.token_hex(8)
    driver.execute_script("window.__panelMarker = arguments[0];", marker)
    return marker


def follow_to_the_end(driver, marker: str) -> str:
    """The page reaches its end in place (never reloaded); its result."""
    browser_wait(
        driver,
        lambda d: (
            d.execute_script("return document.getElementById('live-run').dataset.done") == "1"
        ),
        "the run's end on its page",
    )
    assert driver.execute_script("return window.__panelMarker") == marker  # never reloaded
    return driver.find_element("id", "run-result").text


@pytest.fixture
def cluster(postgres, redis, tmp_path):
    made = Cluster(tmp_path, postgres, redis)
    try:
        yield made
    finally:
        made.close()


def test_the_panel_on_postgresql_and_redis_with_two_workers(lab, cluster, tmp_path):
    created = cluster.panel(
        "createuser", OPERATOR, input=f"{OPERATOR_PASSWORD}\n{OPERATOR_PASSWORD}\n"
    )
    assert created.returncode == 0, created.stderr
    cluster.serve()
    workers = [cluster.worker(), cluster.worker()]
    hostless = tmp_path / "hostless.toml"
    hostless.write_text('[hosts.web]\naddress = "127.0.0.2"\n')
    alpha = cluster.make_deployment("alpha", hostless, [])
    beta = cluster.make_deployment("beta", hostless, [])
    driver = browser_driver(tmp_path / "chromium-profile")
    try:
        log_in(driver, cluster.url)

        # Two deployments at once, on different workers.
        cluster.hold.touch()
        run_a = deploy_in_browser(driver, cluster, alpha["pk"])
        wait("alpha's apply", lambda: applying(cluster, run_a))
        run_b = deploy_in_browser(driver, cluster, beta["pk"])
        wait("beta's apply", lambda: applying(cluster, run_b))
        busy = {run_row(cluster, run_a)["worker"], run_row(cluster, run_b)["worker"]}
        assert len(busy) == 2 and all(busy), busy

        # Deploy while it runs: refused, with the running run's link.
        assert deploy_in_browser(driver, cluster, alpha["pk"]) == run_a
        assert f"alpha is already being deployed (run {run_a} is in progress)" in (
            driver.page_source
        )
        count = cluster.row(
            "SELECT count(*) FROM fedi_panel_run WHERE deployment_id = %s", alpha["pk"]
        )
        assert count == (1,)

        # The web server restarted during the runs: they go on; the page shows their end.
        marker = mark_page(driver)
        end(cluster.web)
        assert cluster.web.returncode == 0
        assert run_row(cluster, run_a)["state"] == "running"
        cluster.serve()
        cluster.hold.unlink()
        assert follow_to_the_end(driver, marker) == "done"
        for run in (run_a, run_b):
            wait("the run's end", lambda run=run: run_row(cluster, run)["state"] != "running")
            row = run_row(cluster, run)
            assert (row["state"], row["exit_status"]) == ("finished", 0), row

        # A worker SIGKILLed during a run: broken off, resumed on the other worker.
        site = cluster.make_deployment("fediversity", lab.inventory_path, ["mastodon", "pixelfed"])
        cluster.hold.touch()
        killed_pk = deploy_in_browser(driver, cluster, site["pk"])
        marker = mark_page(driver)
        wait("the apply after the hosts' tasks", lambda: applying(cluster, killed_pk), 300)
        killed = run_row(cluster, killed_pk)
        [victim] = [w for w in workers if w.pid == killed["worker_pid"]]
        [survivor] = [w for w in workers if w is not victim]

        def running(pid: int) -> bool:  # a zombie (not reaped by whoever inherited it) ended
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
            except FileNotFoundError:
                return False

        standin = cluster.orphans()[-1]  # the killed run's nixops4 apply, held
        assert running(standin)
        victim.kill()
        # The engine runs nixops4 as a local job, which ends when its deployer process does
        # (engine/execute/jobs.py, LOCAL): the killed worker's apply ends by itself.
        wait("the killed worker's nixops4 to end", lambda: not running(standin), 10)
        assert follow_to_the_end(driver, marker) == "broken off"
        row = run_row(cluster, killed_pk)
        assert row["state"] == "broken" and "is gone" in row["error"], row
        deploy_url = f"{cluster.url}deployments/{site['pk']}/"
        driver.get(deploy_url)
        assert "A run is in progress" not in driver.page_source  # the lock is released
        cluster.hold.unlink()
        driver.get(f"{cluster.url}deployments/{site['pk']}/runs/{killed_pk}/")
        if driver.find_element("id", "resume-form").is_displayed():  # the Resume button
            driver.find_element("id", "resume").click()
            browser_wait(driver, lambda d: f"/runs/{killed_pk}/" not in d.current_url, "resume")
            resumed_pk = run_page_id(driver.current_url)[1]
        else:  # what the button calls
            resumed_pk = cluster.resume(site["pk"])
            driver.get(f"{cluster.url}deployments/{site['pk']}/runs/{resumed_pk}/")
        assert follow_to_the_end(driver, mark_page(driver)) == "done"
        resumed = run_row(cluster, resumed_pk)
        assert resumed["worker_pid"] == survivor.pid and resumed["exit_status"] == 0, resumed

        # A task's output, shown by the web process from what the worker stored in the
        # database (the worker's files are in its own data directory).
        driver.get(
            f"{cluster.url}deployments/{site['pk']}/runs/{resumed_pk}/tasks/nixops4.apply/output"
        )
        shown = json.loads(driver.find_element("tag name", "body").text)
        assert shown["source"] == "log" and "applying (stand-in" in shown["text"], shown
    finally:
        driver.quit()

    # The processes shared only the database and the broker: the web's data directory holds
    # no deployment's engine state, and no file holds the initial password, but the one the
    # killed worker was using — removed when a worker starts on that data directory again.
    web_files = {p.name for p in (cluster.data / "deployments").rglob("*")}
    assert not web_files & {"state.db", "initial-user-password"}, web_files
    left = sorted(cluster.base.rglob("initial-user-password"))
    assert left == [victim.data_dir / "deployments" / site["key"] / "initial-user-password"]
    cluster.worker(victim.data_dir)
    assert not list(cluster.base.rglob("initial-user-password"))
    dump = subprocess.run(
        ["pg_dump", "--dbname", cluster.database], capture_output=True, text=True, check=True
    ).stdout
    assert INITIAL_PASSWORD not in dump and "fedi_run_engine_" in dump

    # What the resume ran: what the killed run had not done, and the tasks on the deployer.
    from fedi_run.engine.report.state import StateStore

    # The engine's state is in the panel's database, in the deployment's own schema.
    state = f"{cluster.database}?options=-csearch_path%3Dfedi_run_engine_{site['key']}"
    with StateStore.open(state) as store:
        first = store.get_run(killed["engine_run_id"])
        second = store.get_run(resumed["engine_run_id"])
    done_first = {t.task_id for t in first.tasks if t.outcome in ("ok", "changed")}
    ran_second = {t.task_id for t in second.tasks if t.started_at is not None}
    everything = {t.task_id for t in first.tasks}
    on_the_deployer = {t.task_id for t in first.tasks if t.host == "local"}
    # Nothing done twice on a host; what the killed worker made in its own data directory
    # (the rendering, the ACME account) is made again by the other one, which has none of it.
    assert "nixops4.apply" in ran_second and not (done_first - on_the_deployer) & ran_second
    assert on_the_deployer <= ran_second and done_first | ran_second == everything
    assert first.deployer != second.deployer  # two deployers: two data directories
    calls = [line for line in cluster.standin_log.read_text().splitlines() if "fediversity" in line]
    assert len(calls) == 1  # one apply of the deployment reached nixops4
    assert {h: secret_files(lab, h) for h in ("mastodon", "pixelfed")} == {
        h: f
        for h, f in expected_files({"mastodon", "pixelfed"}).items()
        if h in ("mastodon", "pixelfed")
    }
    assert not cluster.tracebacks(), cluster.tracebacks()


def test_the_embedded_default_needs_no_database_or_broker_server(tmp_path):
    """``panel serve`` alone: SQLite, the data directory's own broker, and a worker of its own
    that it starts and stops."""
    cluster = Cluster(tmp_path, None, None)
    try:
        created = cluster.panel(
            "createuser", OPERATOR, input=f"{OPERATOR_PASSWORD}\n{OPERATOR_PASSWORD}\n"
        )
        assert created.returncode == 0, created.stderr
        web = cluster.serve()
        assert "runs by its own worker (pid" in cluster.logs[-1].read_text()
        hostless = tmp_path / "hostless.toml"
        hostless.write_text('[hosts.web]\naddress = "127.0.0.2"\n')
        deployment = cluster.make_deployment("solo", hostless, [])
        session = requests.Session()
        session.get(cluster.url + "login/", timeout=30)
        token = session.cookies["fedi_run_panel_csrf"]
        login = {"csrfmiddlewaretoken": token, "username": OPERATOR, "password": OPERATOR_PASSWORD}
        assert (
            session.post(cluster.url + "login/", data=login, allow_redirects=False).status_code
            == 302
        )
        response = session.post(
            f"{cluster.url}deployments/{deployment['pk']}/deploy/confirm/",
            data={"csrfmiddlewaretoken": session.cookies["fedi_run_panel_csrf"]},
            allow_redirects=False,
            timeout=30,
        )
        assert response.status_code == 302, response.text[:2000]
        progress = cluster.url + response.headers["Location"].lstrip("/") + "progress"
        data = wait(
            "the run's end",
            lambda: (d := progress_of(session, progress))["finished"] and d,
            60,
        )
        assert (data["state"], data["result"]) == ("finished", "done"), data
        assert data["worker"].startswith("fedi-run@")
        worker_pid = int(data["worker"].rsplit(":", 1)[1])
        web.send_signal(signal.SIGTERM)
        assert web.wait(40) == 0
        assert subprocess.run(["kill", "-0", str(worker_pid)], capture_output=True).returncode
    finally:
        cluster.close()


def progress_of(session: requests.Session, url: str) -> dict:
    response = session.get(url, timeout=30)
    assert response.headers.get("Content-Type", "").startswith("application/json"), (
        url,
        response.status_code,
        response.text[:3000],
    )
    return response.json()
