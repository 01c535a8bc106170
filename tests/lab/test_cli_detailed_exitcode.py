"""`--detailed-exitcode` on a real lab host, through the real `fedi-run` process: 0 when
nothing changes (or would), 4 when something does, a failure's status kept."""

from __future__ import annotations

import pytest
from lab_helpers import fedi_run

pytestmark = pytest.mark.lab

PLAYBOOK = """
[deployment]
name = "exitcodes"
domain = "exitcodes.example.org"

[hosts.hello]
address = "192.0.2.1"

[tasks.greeting]
host = "hello"
file = { path = "/srv/greeting", content = "hello\\n" }
"""

UNREACHABLE = """
[hosts.ghost]
address = "127.0.0.1"
port = 1

[tasks.haunt]
host = "ghost"
run = "true"
"""


@pytest.fixture(scope="module")
def hello(tmp_path_factory):
    from fedi_run.engine.lab.pytest_plugin import LabFactory

    factory = LabFactory(lambda: tmp_path_factory.mktemp("fedi-lab"))
    try:
        yield factory(["hello"])
    finally:
        factory.close()


def _greeting(lab) -> str:
    return lab.run("hello", "cat /srv/greeting 2>/dev/null || echo absent").stdout


def test_check_exits_4_while_changes_are_pending_and_0_once_there_are_none(hello, tmp_path):
    playbook = tmp_path / "site.toml"
    playbook.write_text(PLAYBOOK)
    common = [str(playbook), "-i", str(hello.inventory_path), "--no-apply"]

    pending = fedi_run(*common, "--check", "--detailed-exitcode")
    assert pending.returncode == 4, pending.stderr
    assert "would change tasks.greeting" in pending.stderr
    assert _greeting(hello) == "absent\n"  # a check changes nothing
    plain = fedi_run(*common, "--check")
    assert plain.returncode == 0, plain.stderr  # without the flag, as before

    applied = fedi_run(*common, "--detailed-exitcode")  # a real run that changed something
    assert applied.returncode == 4, applied.stderr
    assert _greeting(hello) == "hello\n"

    clean = fedi_run(*common, "--check", "--detailed-exitcode")
    assert clean.returncode == 0, clean.stderr
    again = fedi_run(*common, "--detailed-exitcode")  # idempotent: a second run changes nothing
    assert again.returncode == 0, again.stderr

    undo = fedi_run("teardown", *common, "--check", "--detailed-exitcode")
    assert undo.returncode == 4, undo.stderr
    assert _greeting(hello) == "hello\n"
    done = fedi_run("teardown", *common, "--yes")
    assert done.returncode == 0, done.stderr
    nothing_left = fedi_run("teardown", *common, "--check", "--detailed-exitcode")
    assert nothing_left.returncode == 0, nothing_left.stderr
    assert _greeting(hello) == "absent\n"


def test_the_flag_from_the_environment_and_from_run_table(hello, tmp_path):
    playbook = tmp_path / "site.toml"
    playbook.write_text(PLAYBOOK + "\n[run]\ncheck = true\nno_apply = true\n")
    line = [str(playbook), "-i", str(hello.inventory_path)]
    from_env = fedi_run(*line, env={"FEDI_RUN_DETAILED_EXITCODE": "1"})
    assert from_env.returncode == 4, from_env.stderr
    assert "check mode" in from_env.stderr and _greeting(hello) == "absent\n"
    playbook.write_text(
        PLAYBOOK + "\n[run]\ncheck = true\nno_apply = true\ndetailed_exitcode = true\n"
    )
    from_table = fedi_run(*line)
    assert from_table.returncode == 4, from_table.stderr
    switched_off = fedi_run(*line, env={"FEDI_RUN_DETAILED_EXITCODE": "no"})
    assert switched_off.returncode == 0, switched_off.stderr
    assert fedi_run(*line, "--no-detailed-exitcode").returncode == 0


def test_a_failure_keeps_its_status_although_changes_are_pending(hello, tmp_path):
    playbook = tmp_path / "site.toml"
    playbook.write_text(PLAYBOOK + UNREACHABLE)
    done = fedi_run(
        str(playbook),
        "-i",
        str(hello.inventory_path),
        "--no-apply",
        "--check",
        "--detailed-exitcode",
        "--retries",
        "0",
        "--connect-timeout",
        "2",
    )
    assert done.returncode == 1, done.stderr
    assert "would change tasks.greeting" in done.stderr and "unreachable" in done.stderr
