"""What `--help` and docs/cli.md tell, and shell completion through the real program."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from helpers import EXAMPLES

from fedi_run.engine import errors
from fedi_run.engine.cli.main import cli
from fedi_run.engine.cli.params import run_key
from fedi_run.engine.cli.statuses import CHANGES, EXIT_STATUSES
from fedi_run.engine.report.recap import exit_status_for

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
BASIC = str(EXAMPLES / "basic.toml")
FEDIVERSITY = str(EXAMPLES / "fediversity.toml")


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = [path for path, _ in _commands()]


def help_of(*path: str) -> str:
    result = CliRunner().invoke(
        cli, [*path, "--help"], prog_name="fedi-run", env={"COLUMNS": "100"}
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "fedi-run" for p in COMMANDS])
def test_every_help_has_examples_of_its_own_command(path):
    text = help_of(*path)
    examples = text.split("Examples:", 1)[1]
    lines = [line.strip() for line in examples.splitlines() if line.strip()]
    assert any(line.startswith(("fedi-run", "sudo fedi-run")) for line in lines), text
    assert any(" ".join(path) in line for line in lines if "fedi-run" in line) or path in (
        (),
        ("run",),
    ), text


def test_the_group_help_says_a_playbook_runs_and_lists_the_exit_statuses():
    text = help_of()
    assert "fedi-run PLAYBOOK [OPTIONS]" in text and "runs the playbook" in text
    assert "or: fedi-run PLAYBOOK [OPTIONS]" in text  # the usage line
    flat = " ".join(text.split())
    for status in EXIT_STATUSES:
        assert re.search(rf"\b{status} [a-z]", flat), status
    assert "docs/cli.md" in flat


@pytest.mark.parametrize("path", [p for p, c in _commands() if not isinstance(c, click.Group)])
def test_every_environment_variable_is_in_help(path):
    command = cli
    for name in path:
        command = command.commands[name]
    flat = " ".join(help_of(*path).split())
    for param in command.params:
        if getattr(param, "envvar", None):
            assert f"env var: {param.envvar}" in flat.replace("- ", "-"), (path, param.name)


def _documented_statuses() -> set[int]:
    section = DOCS.read_text().split("## Exit statuses", 1)[1].split("\n## ", 1)[0]
    return {int(m) for m in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}


def test_docs_list_every_exit_status_fedi_run_uses():
    of_errors = {
        cls.exit_status
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.FediRunError)
    }
    of_runs = {exit_status_for({}, True), exit_status_for({"h": {"failed": 1}}, False)}
    assert CHANGES not in of_errors | of_runs  # 4 means --detailed-exitcode's changes only
    used = of_errors | of_runs | {0, 2, CHANGES}  # success, click's usage errors
    assert used == set(EXIT_STATUSES)
    assert _documented_statuses() == set(EXIT_STATUSES)


def test_docs_table_lists_every_option_with_its_variable_and_key():
    text = DOCS.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    for path, command in _commands():
        for param in command.params:
            if not getattr(param, "envvar", None):
                continue
            row = next((r for r in rows if f"`{param.envvar}`" in r), None)
            assert row is not None, param.envvar
            long_name = next(o for o in param.opts if o.startswith("--"))
            assert f"`{long_name}" in row or f"{long_name} " in row, (param.envvar, row)
            key = run_key(param)
            if path[0] not in ("lab", "panel"):
                assert f"`{key}`" in row, (param.envvar, row)
    for shell in ("bash_source", "zsh_source", "fish_source"):
        assert f"_FEDI_RUN_COMPLETE={shell} fedi-run" in text


# --- completion, through the real program -------------------------------------------------


def complete(*words: str, cwd=None) -> tuple[list[str], str]:
    """What bash completion offers for the last of ``words`` (the word being typed)."""
    line = ["fedi-run", *words]
    env = {
        **os.environ,
        "_FEDI_RUN_COMPLETE": "bash_complete",
        "COMP_WORDS": " ".join(line),
        "COMP_CWORD": str(len(line) - 1),
    }
    done = subprocess.run(
        [sys.executable, "-m", "fedi_run.engine.cli.main"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines(), done.stderr


def values(lines: list[str]) -> list[str]:
    return [line.split(",", 1)[1] for line in lines if line.startswith("plain,")]


def test_completion_of_commands_and_files():
    lines, _ = complete("hi")
    assert "plain,history" in lines and "file,hi" in lines
    assert values(complete("lab", "st")[0]) == ["status"]


def test_completion_of_task_ids_and_families():
    lines, errors_ = complete("plan", BASIC, "--only", "")
    assert set(values(lines)) == {
        "tasks.hello",
        "tasks.cowsay",
        "tasks.motd",
        "tasks.motd@hello",
        "tasks.motd@cowsay",
        "nixops4.render",
        "nixops4.apply",
    }
    assert errors_ == ""
    shorthand = values(complete(BASIC, "--from", "tasks.m")[0])  # fedi-run PLAYBOOK ...
    assert set(shorthand) == {"tasks.motd", "tasks.motd@cowsay", "tasks.motd@hello"}
    no_apply = values(complete("plan", BASIC, "--no-apply", "--only", "nixops4.")[0])
    assert no_apply == ["nixops4.render"]


def test_completion_of_tags_after_a_comma():
    offered = values(complete("run", FEDIVERSITY, "--tags", "secrets,ga")[0])
    assert offered == ["secrets,garage"]
    everything = values(complete("plan", FEDIVERSITY, "--skip-tags", "")[0])
    assert {"secrets", "garage", "mastodon", "apply"} <= set(everything)


def test_completion_of_hosts_from_the_playbook_and_its_inventories(tmp_path):
    inventory = tmp_path / "inv.toml"
    inventory.write_text('[hosts.extra]\naddress = "127.0.0.3"\n')
    offered = values(complete("plan", BASIC, "-i", str(inventory), "--limit", "")[0])
    assert offered == ["hello", "cowsay", "extra", "local"]


def test_completion_is_silent_on_a_bad_or_missing_playbook(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[deployment\n[run]\nforks = "x"\n')
    for words in (
        ("plan", str(bad), "--only", ""),
        ("plan", str(tmp_path / "none.toml"), "--tags", ""),
        ("plan", "--only", ""),
    ):
        lines, stderr = complete(*words)
        assert (values(lines), stderr) == ([], ""), words
    wrong_run = tmp_path / "wrong.toml"
    wrong_run.write_text(Path(BASIC).read_text() + '\n[run]\nforks = "x"\n')
    lines, stderr = complete("plan", str(wrong_run), "--limit", "")
    assert stderr == "" and "hello" in values(lines)
