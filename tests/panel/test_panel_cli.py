"""``fedi-run panel``: createuser, serve's refusals, Django missing, and ``fedi-run --help``
importing no Django. Each runs the CLI in a subprocess with a data directory of its own
(Django's settings are per process)."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

FEDI_RUN = [sys.executable, "-m", "fedi_run.engine.cli.main"]


def fedi_run(*args: str, input: str | None = None, env: dict | None = None, timeout: float = 60):
    return subprocess.run(
        [*FEDI_RUN, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def users(data_dir: Path) -> dict[str, str]:
    with sqlite3.connect(data_dir / "panel.sqlite3") as db:
        return dict(db.execute("SELECT username, password FROM auth_user"))


def test_createuser_from_a_password_file(tmp_path):
    data = tmp_path / "panel"
    secret = tmp_path / "password"
    secret.write_text("a password for alice\n")
    result = fedi_run(
        "panel", "createuser", "alice", "--password-file", str(secret), "--data-dir", str(data)
    )
    assert result.returncode == 0, result.stderr
    assert f"operator 'alice' created in {data}" in result.stdout
    hashed = users(data)["alice"]
    assert hashed.startswith("pbkdf2_sha256$") and "alice" not in hashed
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("panel.sqlite3", "secret-key"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert b"a password for alice" not in (data / "panel.sqlite3").read_bytes()
    again = fedi_run(
        "panel", "createuser", "alice", "--password-file", str(secret), "--data-dir", str(data)
    )
    assert again.returncode == 2 and "the operator 'alice' already exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_createuser_prompts_twice_and_checks_the_password(tmp_path):
    data = tmp_path / "panel"
    result = fedi_run(
        "panel",
        "createuser",
        "bob",
        input="a password for bob\na password for bob\n",
        env={"FEDI_RUN_PANEL_DIR": str(data)},
    )
    assert result.returncode == 0, result.stderr
    prompts = result.stdout + result.stderr  # a hidden prompt goes to the terminal (stderr here)
    assert prompts.count("Password for bob") == 1 and "Repeat for confirmation" in prompts
    assert "a password for bob" not in prompts
    assert "bob" in users(data)
    weak = fedi_run(
        "panel",
        "createuser",
        "eve",
        input="12345678\n12345678\n",
        env={"FEDI_RUN_PANEL_DIR": str(data)},
    )
    assert weak.returncode == 2 and "password refused" in weak.stderr and "eve" not in users(data)
    bad = fedi_run(
        "panel", "createuser", "no way", input="x\nx\n", env={"FEDI_RUN_PANEL_DIR": str(data)}
    )
    assert bad.returncode == 2 and "'no way' is not a valid user name" in bad.stderr


def test_serve_refuses_an_address_other_than_loopback(tmp_path):
    result = fedi_run("panel", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "panel"))
    assert result.returncode == 2 and "not a loopback address" in result.stderr
    assert "--allow-remote" in result.stderr and not (tmp_path / "panel").exists()


def test_without_django_the_panel_names_the_extra_to_install(tmp_path):
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'django' or name.startswith('django.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'django'\", name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from fedi_run.engine.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    for command in (["createuser", "x"], ["serve"]):
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                blocker,
                "panel",
                *command,
                "--data-dir",
                str(tmp_path / "panel"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert "the web panel needs Django, which is not installed here" in result.stderr
        assert "pip install 'fedi-run[panel]'" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1  # one paragraph
    assert not (tmp_path / "panel").exists()


def test_help_imports_no_django():
    code = (
        "import sys\n"
        "from fedi_run.engine.cli.main import main\n"
        "for args in (['--help'], ['panel', '--help']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        "print([m for m in sys.modules if m == 'django' or m.startswith('django.')], "
        "file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stderr.strip() == "[]"
    assert "panel" in result.stdout and "createuser" in result.stdout and "serve" in result.stdout
