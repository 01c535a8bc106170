"""Helpers for the lab tests (not a conftest: fedi-run's tests/conftest.py is imported by name).

The lab fixtures themselves (``lab``, ``lab_factory``, …) come from the installed pytest plugin
(entry point ``pytest11: fedi_run_lab``), as for any user.
"""

from __future__ import annotations

import os
import subprocess
import sys


def fedi_run(
    *args: str, env: dict[str, str] | None = None, cwd=None, input: bytes | None = None
) -> subprocess.CompletedProcess:
    """Run the real ``fedi-run`` command line in a child process; stdout and stderr are
    returned decoded to str. Without ``input``, stdin is /dev/null."""
    done = subprocess.run(
        [sys.executable, "-m", "fedi_run.engine.cli.main", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    done.stdout = done.stdout.decode(errors="replace")
    done.stderr = done.stderr.decode(errors="replace")
    return done
