"""The pytest plugin as a plugin author meets it: in a project of their own, with no import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.lab

CONFTEST = """
import pytest

@pytest.fixture(scope="session")
def lab_hosts():
    return ("web", "db")

@pytest.fixture(scope="session")
def lab_acme():
    return False
"""

TEST_FILE = """
import tomllib
import pytest

@pytest.mark.lab
def test_my_plugin_task_writes_its_config(lab):
    lab.run("web", "mkdir -p /etc/myapp && echo 'port = 8080' > /etc/myapp/app.toml",
            check=True)
    assert lab.read_file("web", "/etc/myapp/app.toml") == b"port = 8080\\n"
    assert lab.run("db", "test -e /etc/myapp/app.toml").exit_status == 1
    inventory = tomllib.loads(lab.inventory_path.read_text())
    assert set(inventory["hosts"]) == {"web", "db"}
    assert lab.acme is None

@pytest.mark.lab
def test_a_lab_of_its_own(lab_factory):
    mine = lab_factory(["solo"], acme=True)
    assert mine.run("solo", "hostname", check=True).stdout == "solo\\n"
    assert mine.acme.server.startswith("https://127.0.0.1:")
"""


def run_pytest(project, env=None):
    (project / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (project / "test_my_plugin.py").write_text(textwrap.dedent(TEST_FILE))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={project / 'tmp'}",
            str(project),
        ],
        cwd=project,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_a_plugin_author_gets_the_fixtures_without_importing_anything(tmp_path):
    done = run_pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_the_fixtures_fail_loudly_and_never_skip_when_the_lab_cannot_start(tmp_path):
    done = run_pytest(tmp_path, env={"FEDI_RUN_LAB_SSHD": "/nonexistent/sshd"})
    assert done.returncode == 1
    assert "1 failed, 1 error" in done.stdout and "skipped" not in done.stdout
    assert "apt-get install openssh-server" in done.stdout
