"""The command fedi-run runs last, `nixops4 apply <deployment> …`, uses only what the pinned
NixOps4 command line declares (engine/nixops/upstream_options.json [cli]), and has a time
limit of its own: a real apply copies closures and switches hosts."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import EXAMPLES

from fedi_run.engine.nixops.apply import APPLY_ID, APPLY_TIMEOUT
from fedi_run.engine.planning.operations import LocalCommand
from fedi_run.engine.project import load_project

FACTS = Path(__file__).resolve().parents[2] / "engine" / "nixops" / "upstream_options.json"


def cli_flags() -> set[str]:
    entries = json.loads(FACTS.read_text())["cli"]
    assert all(e["repository"] and e["commit"] and e["file"] for e in entries)
    return {e["path"] for e in entries if e["path"].startswith("--")}


def apply_commands(project) -> list[LocalCommand]:
    task = project.graph.tasks[APPLY_ID]
    return [op for op in (*task.actions, *task.undo_actions()) if isinstance(op, LocalCommand)]


def test_the_apply_uses_only_flags_the_pinned_nixops4_declares():
    project = load_project(EXAMPLES / "fediversity.toml")
    commands = apply_commands(project)
    assert commands, "the apply task runs nixops4"
    for command in commands:
        program, subcommand, member, *flags = command.argv
        assert (program, subcommand) == ("nixops4", "apply")
        assert member == project.playbook.name  # the deployment's member path
        assert set(flags) <= cli_flags(), f"undeclared flags: {set(flags) - cli_flags()}"


def test_the_flag_check_can_fail():
    assert not {"--no-interactive", "--yes-really"} <= cli_flags()


def test_the_apply_has_its_own_time_limit():
    project = load_project(EXAMPLES / "fediversity.toml")
    assert project.graph.tasks[APPLY_ID].timeout == APPLY_TIMEOUT >= 3600
