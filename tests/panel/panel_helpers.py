"""Django configured once for the panel's tests (on importing this module), on a data
directory of its own, with the test environment; and what the tests share (imported as
``panel_helpers``: a module name of its own, where ``conftest`` would be ambiguous).

Django's settings are process-wide, so the in-process tests share this one data directory;
each test makes its own operators. Django missing is a loud failure, never a skip:
`pip install -e '.[test,panel]'`.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

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

NUMBERS = itertools.count(1)
HOSTS = ("garage", "mastodon", "peertube", "pixelfed")
PASSWORD = "an initial password 7f3a9c"


_WORKER = []


TEST_WORKERS = 2


def test_worker():
    """The ``fedi-run panel worker`` processes of the in-process tests (their data directory,
    its own broker), started the first time a test needs a run carried out; stopped (by pid) at
    the end of the session (``stop_test_worker``)."""
    from fedi_run.panel import embedded

    _WORKER[:] = [w for w in _WORKER if w.alive()]
    while len(_WORKER) < TEST_WORKERS:
        log = open(DATA_DIR.parent / f"{DATA_DIR.name}-worker.log", "a")
        _WORKER.append(embedded.spawn(DATA_DIR, stderr=log, stdout=log))
    return _WORKER[0]


def stop_left_runs() -> None:
    """Stop the runs a test left queued or running (its unreachable hosts would keep a worker
    busy), as their Stop button does."""
    from fedi_run.panel import runs
    from fedi_run.panel.models import Run

    for run in Run.objects.filter(state__in=Run.ACTIVE):
        runs.request_stop(run, "the test's end")


def stop_test_worker() -> None:
    for worker in _WORKER:
        worker.stop()
    _WORKER.clear()


def wait_for_run(run_pk: int, timeout: float = 60.0):
    """The Run row once a worker has carried it out and stored it (fails the test after
    ``timeout``); starts the tests' worker if it is not running."""
    from fedi_run.panel.models import Run

    test_worker()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.get(pk=run_pk)
        if run.state not in Run.ACTIVE:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_pk} did not end within {timeout}s")


def make_environment(inventory, users=None, name: str | None = None):
    """An Environment whose hosts are imported from the ``inventory`` file as staff import
    them (each host may carry the service of its own name), each process writes its inventory
    from its rows; open to ``users`` (default: every user there is so far)."""
    from django.contrib.auth import get_user_model

    from fedi_run.panel.catalog import catalog
    from fedi_run.panel.environments import import_inventory
    from fedi_run.panel.models import Environment, EnvironmentHost

    imported = import_inventory(Path(inventory).read_text(), DATA_DIR, catalog().service_names())
    assert not imported.problems, imported.problems
    environment = Environment.objects.create(
        name=name or f"env{next(NUMBERS)}", extra=imported.extra
    )
    for row in imported.hosts:
        EnvironmentHost.objects.create(
            environment=environment,
            name=row.name,
            address=row.address,
            port=row.port,
            user=row.user,
            host_key=row.host_key,
            identity=row.identity,
            nixos=row.nixos,
            services=list(row.services),
        )
    environment.users.set(get_user_model().objects.all() if users is None else users)
    return environment


def wait_for_health(deployment, timeout: float = 60.0):
    """The deployment once a worker has stored the health check asked for (fails the test
    after ``timeout``); starts the tests' worker if it is not running."""
    from fedi_run.panel.deployment_views import health_pending

    test_worker()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment.refresh_from_db()
        if deployment.health_checked_at is not None and not health_pending(deployment):
            return deployment
        time.sleep(0.05)
    raise AssertionError(f"the health check of {deployment.name} did not end within {timeout}s")
