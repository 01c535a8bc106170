"""The panel's secret key, which every web and worker process of one panel must share (it
signs sessions and seals the initial users' passwords in the database): given by
``FEDI_RUN_PANEL_SECRET_KEY`` or the data directory's ``secret-key`` file; a process given
another key than the one the database was sealed under is refused at its start — exit 2, one
paragraph naming the variable, no traceback — before it serves a page or takes a run."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path


def panel(data_dir: Path, key: str | None, *args: str, input: str | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDI_RUN_PANEL_")}
    env["FEDI_RUN_PANEL_DIR"] = str(data_dir)
    if key is not None:
        env["FEDI_RUN_PANEL_SECRET_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "fedi_run.engine.cli.main", "panel", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_process_with_another_secret_key_is_refused_at_its_start(tmp_path):
    first = secrets.token_urlsafe(64)
    made = panel(tmp_path, first, "createuser", "alice", input="a long password 1\n" * 2)
    assert made.returncode == 0, made.stderr
    assert not (tmp_path / "secret-key").exists()  # the variable's key is the key
    same = panel(tmp_path, first, "users")
    assert same.returncode == 0 and "alice" in same.stdout, same.stderr
    other = panel(tmp_path, secrets.token_urlsafe(64), "users")
    assert other.returncode == 2, other.stderr
    assert "FEDI_RUN_PANEL_SECRET_KEY" in other.stderr and "Traceback" not in other.stderr
    assert "cannot be unsealed with this process's secret key" in other.stderr
    assert "alice" not in other.stdout
    # The data directory's own key file is another key too: refused the same way.
    own_file = panel(tmp_path, None, "users")
    assert own_file.returncode == 2 and "FEDI_RUN_PANEL_SECRET_KEY" in own_file.stderr


def test_a_short_secret_key_is_refused(tmp_path):
    done = panel(tmp_path, "too short", "users")
    assert done.returncode == 2, done.stderr
    assert "FEDI_RUN_PANEL_SECRET_KEY holds 9 characters" in done.stderr
    assert "50 characters or more" in done.stderr and "Traceback" not in done.stderr
