"""Helpers for the tests that run playbooks on real lab hosts (imported as ``run_helpers``)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from fedi_run.engine.cli import cli

STANDIN = Path(__file__).resolve().parent.parent / "standin"
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def events(self) -> list[dict]:
        """The JSON lines of a --json run."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def finished(self) -> dict[str, dict]:
        """task id -> its task_finished event."""
        return {e["id"]: e for e in self.events() if e["event"] == "task_finished"}

    def started(self) -> list[str]:
        """The ids of the tasks that started, in order."""
        return [e["id"] for e in self.events() if e["event"] == "task_started"]

    def run_finished(self) -> dict:
        return [e for e in self.events() if e["event"] == "run_finished"][-1]


def fedi(*args: object, env: dict | None = None) -> Result:
    """Run the fedi-run CLI in this process (as a user would type it)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def copy_example(name: str, directory: Path) -> Path:
    target = directory / name
    shutil.copy(EXAMPLES / name, target)
    return target
