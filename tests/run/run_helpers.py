"""Helpers for the tests that run playbooks on real lab hosts (imported as ``run_helpers``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner
from helpers import CliResult

from fedi_run.engine.cli.main import cli

STANDIN = Path(__file__).resolve().parent.parent / "standin"
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


Result = CliResult


def fedi(*args: object, env: dict | None = None) -> Result:
    """Run the fedi-run CLI in this process (as a user would type it)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


def copy_example(name: str, directory: Path) -> Path:
    target = directory / name
    shutil.copy(EXAMPLES / name, target)
    return target
