"""The panel's tests: Django is configured by ``panel_helpers`` (imported here first), on a
data directory of its own. The CLI and the browser test run the panel in subprocesses with
data directories of their own."""

from __future__ import annotations

import shutil

import pytest
from panel_helpers import (
    DATA_DIR,
    HOSTS,
    NUMBERS,
    PASSWORD,
    make_environment,
    stop_left_runs,
    stop_test_worker,
)


def pytest_sessionfinish(session, exitstatus):
    stop_test_worker()
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _stop_left_runs():
    """After each test, what it left queued or running is stopped (the workers are shared)."""
    yield
    stop_left_runs()


@pytest.fixture
def operator():
    """``operator()`` → a new Django user (a unique name each time)."""
    from django.contrib.auth import get_user_model

    def make(name: str | None = None, password: str = "operator password 42"):
        name = name or f"op{next(NUMBERS)}"
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
    path.write_text(
        "".join(f'[hosts.{name}]\naddress = "127.0.0.{2 + i}"\n\n' for i, name in enumerate(HOSTS))
    )
    return path


@pytest.fixture
def hostless(tmp_path):
    """An inventory whose one host runs no service: a deploy with no service touches no host
    (it only renders the NixOps4 deployment)."""
    path = tmp_path / "hostless.toml"
    path.write_text('[hosts.web]\naddress = "127.0.0.2"\n')
    return str(path)


@pytest.fixture
def environment_of():
    """``environment_of(inventory, users=None)`` → an Environment whose hosts are imported from
    the inventory file (each host may carry the service of its own name), open to ``users``
    (default: every user there is so far)."""
    return make_environment


@pytest.fixture
def form_data(inventory):
    """``form_data(**changes)`` → a valid deployment form's POST data. ``inventory=PATH``: the
    deployment goes into an environment imported from that file (open to every user so far)."""

    def make(**changes):
        source = changes.pop("inventory", inventory)
        if "environment" not in changes:
            changes["environment"] = str(make_environment(source).pk)
        data = {
            "name": f"site{next(NUMBERS)}",
            "domain": "fedi-test.org",
            "services": ["mastodon", "pixelfed"],
            "acme_email": "ops@fedi-test.org",
            "acme_accept_terms": "on",
            "initial_username": "admin",
            "initial_display_name": "Admin",
            "initial_email": "admin@fedi-test.org",
            "password": PASSWORD,
            "apply": "on",
        }
        data.update(changes)
        return {k: v for k, v in data.items() if v is not None}

    return make
