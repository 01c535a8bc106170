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
