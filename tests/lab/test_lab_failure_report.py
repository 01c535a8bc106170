"""A failed task as the operator sees it from the real ``fedi-run`` against a lab host: the
command whole, its stdout and stderr labelled, its log named (and holding the whole output),
and the recap ending with the failures and the ``--resume`` command — which works as printed."""

from __future__ import annotations

import re
import shlex

import pytest
from lab_helpers import fedi_run

pytestmark = pytest.mark.lab

PADDING = " ".join(f"--option-{i}=value-{i}" for i in range(12))
COMMAND = (
    f"true {PADDING} && echo compiling && echo 'fatal: the key is wrong' >&2 && "
    "echo 'second complaint' >&2 && echo 'half done' && exit 4"
)
PLAYBOOK = f"""\
[deployment]
name = "report"
domain = "report.example.org"

[tasks.broken]
host = "web"
run = "{COMMAND}"

[tasks.after]
host = "web"
run = "echo after"
requires = ["tasks.broken"]

[tasks.fine]
host = "web"
file = {{ path = "/srv/fine", content = "fine\\n" }}
"""


def _block(lines: list[str], label: str) -> list[str]:
    start = lines.index(f"    {label}:") + 1
    end = start
    while end < len(lines) and lines[end].startswith("      "):
        end += 1
    return [line.strip() for line in lines[start:end]]


def test_a_failed_task_reports_command_streams_log_and_how_to_resume(lab_factory, tmp_path):
    lab = lab_factory(["web"])
    directory = tmp_path / "my deploy"
    directory.mkdir()
    playbook = directory / "playbook.toml"
    playbook.write_text(PLAYBOOK)
    argv = ("run", str(playbook), "-i", str(lab.inventory_path), "--no-apply")

    done = fedi_run(*argv)

    assert done.returncode == 1, done.stderr
    report = done.stderr
    lines = report.splitlines()
    assert "Traceback" not in report
    [task_line] = [line for line in lines if line.startswith("failed ")]
    assert "tasks.broken" in task_line and task_line.endswith("…: exited with status 4")
    first = lines.index(next(line for line in lines if line.startswith("    command: ")))
    rows = [lines[first]]
    rows += [line for line in lines[first + 1 : first + 10] if line.startswith(" " * 15)]
    assert len(rows) >= 2 and all(len(row) <= 100 for row in rows)
    assert " ".join(row.strip() for row in rows).removeprefix("command: ") == COMMAND
    assert _block(lines, "stdout") == ["compiling", "half done"]
    assert _block(lines, "stderr") == ["fatal: the key is wrong", "second complaint"]
    [log_line] = [line for line in lines if line.startswith("    log: ")]
    log = log_line.removeprefix("    log: ")
    with open(log) as whole:
        assert sorted(whole.read().splitlines()) == sorted(
            ["compiling", "half done", "fatal: the key is wrong", "second complaint"]
        )

    after = report.split("wall time ", 1)[1].splitlines()[1:]
    assert after[:2] == ["", "Failures (1):"]
    assert after[2].split() == [
        "failed",
        "tasks.broken",
        "@web",
        *re.search(r"\ds  (.*)$", task_line)[1].split(),
    ]
    assert len(after) == 4 and after[3].startswith("to continue: ")
    resume = shlex.split(after[3].removeprefix("to continue: "))
    assert resume == ["fedi-run", *argv, "--resume"]

    run_id = log.rsplit("/", 2)[-2]  # <state dir>/logs/<run id>/<task>.log
    shown = fedi_run("show-run", str(playbook), run_id)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[-3:] == after[1:]  # the same failures, the same command

    again = fedi_run(*resume[1:])  # the command as printed: only what was left runs
    assert again.returncode == 1, again.stderr
    statuses = ("failed ", "ok ", "changed ", "skipped ")
    ran = [line.split()[1] for line in again.stderr.splitlines() if line.startswith(statuses)]
    assert "tasks.broken" in ran and "tasks.fine" not in ran
    assert again.stderr.rstrip().endswith(shlex.join(resume))  # --resume not added twice
    older = fedi_run("show-run", str(playbook), run_id).stdout
    assert (
        "Failures (1):" in older and "to continue" not in older
    )  # --resume goes on from the latest
