"""The panel as a provider runs it: a real PostgreSQL and a real Redis (Debian's ``postgresql``
and ``redis-server``, started here as plain processes on loopback and ended by pid), web
processes (``fedi-run panel serve --broker …``) and worker processes (``fedi-run panel
worker``) sharing them, each in a data directory of its own. A missing package fails loudly,
naming it.

Nothing here configures Django in the test process: the panel runs in subprocesses, the tests
read its database with psycopg.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedi_run.engine.errors import LabError
from fedi_run.engine.lab.servers import end, free_port, postgres_server, redis_server

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "tests" / "standin" / "nixops4"
OPERATOR, OPERATOR_PASSWORD = "provider-op", "the operator's own long password"
INITIAL_PASSWORD = "an initial password 7f3a9c"

HOLDING_NIXOPS4 = f"""#!/bin/sh
# nixops4 for these tests: records its pid, waits while $NIXOPS4_HOLD exists, then is the
# recording stand-in.
echo $$ >> "$NIXOPS4_PIDS"
echo "applying (stand-in: held while $NIXOPS4_HOLD exists)"
while [ -e "$NIXOPS4_HOLD" ]; do sleep 0.1; done
exec {sys.executable} {STANDIN} "$@"
"""


def wait_listening(port: int, process: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what} exited:\n{log.read_text()[-3000:]}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} is not listening on 127.0.0.1:{port}:\n{log.read_text()}")


@pytest.fixture(scope="module")
def postgres():
    """The lab's PostgreSQL (trust on loopback only) with a database ``panel`` owned by the
    role ``panel``; yields its URL."""
    try:
        with postgres_server() as server:
            server.admin("CREATE ROLE panel LOGIN SUPERUSER")
            server.admin("CREATE DATABASE panel OWNER panel")
            yield server.url("panel", "panel")
    except LabError as error:
        pytest.fail(f"the panel's provider tests need a PostgreSQL: {error}", pytrace=False)


@pytest.fixture(scope="module")
def redis():
    """The lab's Redis, nothing saved; yields its URL."""
    try:
        with redis_server() as server:
            yield server.url
    except LabError as error:
        pytest.fail(f"the panel's provider tests need a Redis: {error}", pytrace=False)


class Cluster:
    """The database and broker given, web and worker processes started by :meth:`serve` and
    :meth:`worker` (ended by pid by :meth:`close`), sharing one secret key; with a database
    server, each worker in a data directory of its own (they share no file with the web
    process). A benchmark may use it the same way."""

    def __init__(self, base: Path, database: str | None, broker: str | None):
        self.base, self.database, self.broker = base, database, broker
        self.data = base / "panel-data"
        bin_dir = base / "bin"
        bin_dir.mkdir()
        (bin_dir / "nixops4").write_text(HOLDING_NIXOPS4)
        (bin_dir / "nixops4").chmod(0o755)
        self.hold = base / "hold-apply"
        self.pids = base / "nixops4.pids"
        self.standin_log = base / "nixops4.log"
        self.env = {
            **os.environ,
            # One secret key for every process (each may have its own data directory).
            "FEDI_RUN_PANEL_SECRET_KEY": secrets.token_urlsafe(64),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FEDI_RUN_PANEL_DIR": str(self.data),
            "NIXOPS4_HOLD": str(self.hold),
            "NIXOPS4_PIDS": str(self.pids),
            "NIXOPS4_STANDIN_LOG": str(self.standin_log),
        }
        for variable, value in (
            ("FEDI_RUN_PANEL_DATABASE", database),
            ("FEDI_RUN_PANEL_BROKER", broker),
        ):
            if value:
                self.env[variable] = value
            else:
                self.env.pop(variable, None)
        self.port = free_port()
        self.web: subprocess.Popen | None = None
        self.workers: list = []
        self.logs: list[Path] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def panel(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "fedi_run.engine.cli.main", "panel", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            **kwargs,
        )

    def serve(self) -> subprocess.Popen:
        """``panel serve`` on this cluster's port (the same after a restart), with a lifeline
        (:mod:`fedi_run.panel.lifeline`) whose write end this process keeps (``.lifeline`` on
        the process; closed here once that process has ended and another is started): it stops
        as on SIGTERM if the tests' process dies without ending it, SIGKILLed too."""
        from fedi_run.panel import lifeline

        ended = self.web is not None and self.web.poll() is not None
        if ended and getattr(self.web, "lifeline", None) is not None:
            os.close(self.web.lifeline)
            self.web.lifeline = None
        log = self.base / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        read_end, kept = lifeline.pipe()
        try:
            with open(log, "w") as errors:
                self.web = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "fedi_run.engine.cli.main",
                        "panel",
                        "serve",
                        "--port",
                        str(self.port),
                    ],
                    env=lifeline.child_environment(self.env, read_end),
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    pass_fds=(read_end,),
                )
        except BaseException:
            os.close(kept)
            raise
        finally:
            os.close(read_end)
        self.web.lifeline = kept
        deadline = time.monotonic() + 60
        while "serving http://" not in log.read_text():
            assert self.web.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        return self.web

    def worker(self, data_dir: Path | None = None):
        """One more ``panel worker`` (:func:`fedi_run.panel.embedded.spawn`, with a lifeline:
        it stops if the tests' process dies without stopping it); with a database server, in
        a data directory of its own (``data_dir``, default a new one), as on another machine;
        else in the web's. Its ``data_dir`` is kept on it."""
        from fedi_run.panel import embedded

        log = self.base / f"worker-{len(self.workers)}.log"
        self.logs.append(log)
        out = open(log, "w")
        if data_dir is None:
            data_dir = (
                self.base / f"worker-{len(self.workers)}-data" if self.database else self.data
            )
        worker = embedded.spawn(
            data_dir,
            self.database,
            self.broker,
            env=self.env,
            stdout=out,
            stderr=out,
            lifeline=True,
        )
        worker.data_dir = data_dir
        deadline = time.monotonic() + 60
        while "taking runs from" not in log.read_text():
            assert worker.alive() and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(1.0)  # connected to the broker
        self.workers.append(worker)
        return worker

    def make_deployment(self, name: str, inventory: Path, services: list[str]) -> dict:
        """A deployment of the operator in an environment whose hosts are imported from the
        ``inventory`` file (as staff import them; one environment per file), made with the
        panel's own models as its forms save them: ``{"pk", "key"}``."""
        script = f"""
import json, sys
from pathlib import Path
from fedi_run.panel import site
site.configure({str(self.data)!r}, database={self.database!r}); site.migrate()
from django.contrib.auth import get_user_model
from fedi_run.panel import initial_password
from fedi_run.panel.catalog import catalog
from fedi_run.panel.environments import import_inventory
from fedi_run.panel.models import Deployment, Environment, EnvironmentHost
owner = get_user_model().objects.get(username={OPERATOR!r})
imported = import_inventory(
    Path({str(inventory)!r}).read_text(), site.current().data_dir, catalog().service_names())
assert not imported.problems, imported.problems
env, made = Environment.objects.get_or_create(
    name={inventory.stem!r}, defaults={{"extra": imported.extra}})
for row in imported.hosts if made else ():
    EnvironmentHost.objects.create(
        environment=env, name=row.name, address=row.address, port=row.port, user=row.user,
        host_key=row.host_key, identity=row.identity, nixos=row.nixos,
        services=list(row.services))
env.users.add(owner)
d = Deployment.objects.create(
    owner=owner, name={name!r}, domain="fediversity.net", environment=env,
    services={services!r}, acme_email="ops@fedi-test.org", acme_accept_terms=True,
    initial_username="admin", initial_display_name="Admin",
    initial_email="admin@fediversity.net", apply=True)
initial_password.set_password(d, {INITIAL_PASSWORD!r})
print(json.dumps({{"pk": d.pk, "key": d.key}}))
"""
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    def resume(self, deployment_pk: int) -> int:
        """``runs.start(deployment, "run", resume=True)`` — what the Resume button calls."""
        script = f"""
from fedi_run.panel import site
site.configure({str(self.data)!r}, database={self.database!r})
from fedi_run.panel import runs
from fedi_run.panel.models import Deployment
print(runs.start(Deployment.objects.get(pk={deployment_pk}), "run", resume=True).pk)
"""
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip().splitlines()[-1])

    def row(self, query: str, *args):
        import psycopg

        with psycopg.connect(self.database) as db:
            return db.execute(query, args).fetchone()

    def orphans(self) -> list[int]:
        return [int(p) for p in self.pids.read_text().split()] if self.pids.exists() else []

    def close(self) -> None:
        if self.web is not None:
            end(self.web)
        for worker in self.workers:
            worker.stop(30)
        for pid in self.orphans():  # nixops4 stand-ins a killed worker left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def tracebacks(self) -> str:
        return "\n".join(
            log.read_text()[-3000:] for log in self.logs if "Traceback" in log.read_text()
        )


def browser_driver(profile: Path):
    """Headless Chromium driven by chromedriver; a failure, never a skip, without them."""
    chromium, chromedriver = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    missing = [str(p) for p in (chromium, chromedriver) if not p.exists()]
    assert not missing, f"missing {missing}: apt-get install chromium chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(chromedriver)), options=options)
    driver.set_page_load_timeout(60)
    return driver


def run_page_id(url: str) -> tuple[int, int]:
    found = re.search(r"/deployments/(\d+)/runs/(\d+)/", url)
    assert found, url
    return int(found[1]), int(found[2])
