"""``fedi-run panel createuser --staff``, ``passwd`` and ``users``, each in a subprocess with a
data directory of its own."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_panel_cli import fedi_run  # noqa: E402 - this folder's helper


def rows(data: Path, query: str) -> list[tuple]:
    with sqlite3.connect(data / "panel.sqlite3") as db:
        return db.execute(query).fetchall()


def test_createuser_staff_passwd_and_users(tmp_path):
    data = tmp_path / "panel"
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("the first long password\n")
    second.write_text("the second long password\n")
    made = fedi_run(
        "panel", "createuser", "carol", "--staff", "--password-file", str(first),
        "--data-dir", str(data),
    )  # fmt: skip
    assert made.returncode == 0 and "staff user 'carol' created" in made.stdout, made.stderr
    fedi_run("panel", "createuser", "dave", "--password-file", str(first), "--data-dir", str(data))
    assert rows(data, "SELECT username, is_staff FROM auth_user ORDER BY username") == [
        ("carol", 1),
        ("dave", 0),
    ]
    before = rows(data, "SELECT password FROM auth_user WHERE username = 'dave'")
    changed = fedi_run(
        "panel", "passwd", "dave", "--password-file", str(second), "--data-dir", str(data)
    )
    assert changed.returncode == 0 and "password of 'dave' changed" in changed.stdout
    after = rows(data, "SELECT password FROM auth_user WHERE username = 'dave'")
    assert after != before and after[0][0].startswith("pbkdf2_sha256$")
    assert b"the second long password" not in (data / "panel.sqlite3").read_bytes()
    prompted = fedi_run(
        "panel", "passwd", "dave", "--data-dir", str(data),
        input="a third long password\na third long password\n",
    )  # fmt: skip
    assert prompted.returncode == 0, prompted.stderr
    assert "Repeat for confirmation" in prompted.stdout + prompted.stderr
    weak = fedi_run("panel", "passwd", "dave", "--data-dir", str(data), input="1234\n1234\n")
    assert weak.returncode == 2 and "password refused" in weak.stderr
    assert "Traceback" not in weak.stderr
    nobody = fedi_run("panel", "passwd", "erin", "--data-dir", str(data), input="x\nx\n")
    assert nobody.returncode == 2 and "there is no user 'erin'" in nobody.stderr
    assert "fedi-run panel users" in nobody.stderr
    listed = fedi_run("panel", "users", "--data-dir", str(data))
    assert listed.returncode == 0, listed.stderr
    lines = [line.split() for line in listed.stdout.splitlines()]
    assert lines == [
        ["NAME", "ROLE", "LAST", "LOGIN", "DEPLOYMENTS"],
        ["carol", "staff", "never", "0"],
        ["dave", "operator", "never", "0"],
    ]
