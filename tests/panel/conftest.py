"""The panel's tests: Django configured once for this test session, on a data directory of its
own, with the test environment (test client host, captured templates).

Django's settings are process-wide, so the in-process tests share this one data directory;
each test makes its own operators (:func:`operator`). The CLI and the browser test run the
panel in subprocesses with data directories of their own. Django missing is a loud failure
here, never a skip: `pip install -e '.[test,panel]'`.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from pathlib import Path

import pytest

try:
    import django  # noqa: F401
except ImportError as error:  # pragma: no cover - a broken environment
    raise RuntimeError("the panel's tests need Django: pip install -e '.[test,panel]'") from error

from django.test.utils import setup_test_environment
from fedi_run.panel import site

DATA_DIR = Path(tempfile.mkdtemp(prefix="fedi-run-panel-tests-"))
site.configure(DATA_DIR)
setup_test_environment()
site.migrate()

_numbers = itertools.count(1)
HOSTS = ("garage", "mastodon", "peertube", "pixelfed")
PASSWORD = "an initial password 7f3a9c"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@pytest.fixture
def operator():
    """``operator()`` → a new Django user (a unique name each time)."""
    from django.contrib.auth import get_user_model

    def make(name: str | None = None, password: str = "operator password 42"):
        name = name or f"op{next(_numbers)}"
        return get_user_model().objects.create_user(name, password=password)

    return make


@pytest.fixture
def client_for():
    """``client_for(user)`` → a logged-in test client."""
    from django.test import Client

    def make(user, **kwargs):
        client = Client(**kwargs)
        client.force_login(user)
        return client

    return make


@pytest.fixture
def inventory(tmp_path):
    """An inventory with the four Fediversity hosts (addresses only: nothing listens)."""
    path = tmp_path / "inventory.toml"
    path.write_text("".join(f'[hosts.{name}]\naddress = "127.0.0.{2 + i}"\n\n'
                            for i, name in enumerate(HOSTS)))
    return path


@pytest.fixture
def hostless(tmp_path):
    """An inventory whose one host runs no service: a deploy with no service touches no host
    (it only renders the NixOps4 deployment)."""
    path = tmp_path / "hostless.toml"
    path.write_text('[hosts.web]\naddress = "127.0.0.2"\n')
    return str(path)


@pytest.fixture
def form_data(inventory):
    """``form_data(**changes)`` → a valid deployment form's POST data."""

    def make(**changes):
        data = {
            "name": f"site{next(_numbers)}", "domain": "fedi-test.org",
            "inventory": str(inventory), "services": ["mastodon", "pixelfed"],
            "acme_email": "ops@fedi-test.org", "acme_accept_terms": "on",
            "initial_username": "admin", "initial_display_name": "Admin",
            "initial_email": "admin@fedi-test.org", "password": PASSWORD, "apply": "on",
        }
        data.update(changes)
        return {k: v for k, v in data.items() if v is not None}

    return make


def wait_for_run(run_pk: int, timeout: float = 60.0):
    """The Run row once its thread has stored it (fails the test after ``timeout``)."""
    from fedi_run.panel.live import BOARD
    from fedi_run.panel.models import Run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.get(pk=run_pk)
        live = BOARD.get(run_pk)
        if run.state != Run.RUNNING and (live is None or live.stored):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_pk} did not end within {timeout}s")
