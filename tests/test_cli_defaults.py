"""Defaults of the command line: the command line > FEDI_RUN_<OPTION> > the playbook's [run]
table > the built-in default; a bad [run] table is exit 2 naming run.<key>; a mistyped command
gets a "did you mean"."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from helpers import MINIMAL

from fedi_run.engine.cli.main import cli
from fedi_run.engine.cli.params import ENV_PREFIX, run_key
from fedi_run.engine.cli.run import run
from fedi_run.engine.model.playbook import RunSection

ENV_CLEAN = {
    name: None
    for name in (
        "FEDI_RUN_NO_APPLY",
        "FEDI_RUN_JSON",
        "FEDI_RUN_INVENTORY",
        "FEDI_RUN_FORKS",
        "FEDI_RUN_TIMEOUT",
        "FEDI_RUN_STATE",
        "FEDI_RUN_CHECK",
    )
}
"""Variables a developer's own shell may set: every invocation here starts without them."""


def invoke(*args, env=None):
    result = CliRunner().invoke(
        cli, [str(a) for a in args], env={**ENV_CLEAN, **(env or {})}, prog_name="fedi-run"
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def plan_ids(*args, env=None) -> list[str]:
    result = invoke("plan", *args, "--json", env=env)
    assert result.exit_code == 0, result.output
    return [task["id"] for task in json.loads(result.stdout)["tasks"]]


@pytest.fixture
def project(tmp_path):
    """``project(run_table)`` writes a new playbook (MINIMAL, one task on `web`) with this
    [run] table into tmp_path/project, and returns its path."""

    written = []

    def write(run_table: str = "") -> Path:
        path = tmp_path / "project" / f"playbook{len(written)}.toml"
        written.append(path)
        path.parent.mkdir(exist_ok=True)
        task = '\n[tasks.hello]\nhost = "web"\nrun = "true"\n'
        path.write_text(MINIMAL + task + (f"\n[run]\n{run_table}\n" if run_table else ""))
        return path

    return write


def test_no_apply_precedence_flag_over_env_over_run_table_over_default(project):
    plain = project()
    assert "nixops4.apply" in plan_ids(plain)  # built-in default: apply
    with_table = project("no_apply = true")
    assert "nixops4.apply" not in plan_ids(with_table)
    assert "nixops4.apply" in plan_ids(with_table, env={"FEDI_RUN_NO_APPLY": "0"})
    assert "nixops4.apply" not in plan_ids(plain, env={"FEDI_RUN_NO_APPLY": "yes"})
    assert "nixops4.apply" in plan_ids(plain, "--apply", env={"FEDI_RUN_NO_APPLY": "true"})
    assert "nixops4.apply" not in plan_ids(with_table, "--no-apply", env={"FEDI_RUN_NO_APPLY": "0"})


def test_json_from_the_run_table_and_the_environment(project):
    with_table = project("json = true")
    assert json.loads(invoke("plan", with_table).stdout)["deployment"] == "test"
    text = invoke("plan", with_table, "--no-json").stdout
    assert text.startswith("Plan for test")
    assert invoke("plan", with_table, env={"FEDI_RUN_JSON": "off"}).stdout.startswith("Plan for")
    from_env = invoke("plan", project(), env={"FEDI_RUN_JSON": "1"}).stdout
    assert json.loads(from_env)["deployment"] == "test"


def _values(*args: str) -> dict:
    """The values `fedi-run run ARGS` would run with, as click resolves them."""
    with run.make_context("run", list(args)) as ctx:
        return ctx.params


def test_every_source_of_a_value_in_order(project, monkeypatch):
    for name in ENV_CLEAN:
        monkeypatch.delenv(name, raising=False)
    plain = project()
    with_table = project("forks = 3\ntimeout = 30.5\nretries = 0\nconnect_timeout = 4")
    assert (_values(str(plain))["forks"], _values(str(plain))["timeout"]) == (10, 600.0)
    values = _values(str(with_table))
    assert (values["forks"], values["timeout"], values["retries"]) == (3, 30.5, 0)
    assert values["connect_timeout"] == 4.0
    monkeypatch.setenv("FEDI_RUN_FORKS", "5")
    monkeypatch.setenv("FEDI_RUN_TIMEOUT", "7")
    values = _values(str(with_table))
    assert (values["forks"], values["timeout"], values["retries"]) == (5, 7.0, 0)
    assert _values(str(with_table), "--forks", "8")["forks"] == 8


def test_paths_in_the_run_table_are_relative_to_the_playbook(project, monkeypatch, tmp_path):
    playbook = project(
        'state = "db/state.db"\nknown_hosts = "~/hosts"\njunit = "/abs/report.xml"\n'
        'inventory = ["inventory.toml", "more/extra.toml"]\nconfiguration = "c.json"'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for name in ENV_CLEAN:
        monkeypatch.delenv(name, raising=False)
    values = _values(os.path.relpath(playbook, elsewhere))
    here = playbook.parent
    assert values["state_path"] == here / "db" / "state.db"
    assert values["known_hosts"] == Path(os.path.expanduser("~/hosts"))
    assert values["junit"] == Path("/abs/report.xml")
    assert values["inventories"] == (here / "inventory.toml", here / "more" / "extra.toml")
    assert values["configuration"] == here / "c.json"
    monkeypatch.setenv("FEDI_RUN_INVENTORY", os.pathsep.join(["a.toml", "b.toml"]))
    assert _values(str(playbook))["inventories"] == (Path("a.toml"), Path("b.toml"))


def test_the_inventory_from_the_run_table_is_read(project, tmp_path, monkeypatch):
    playbook = project()
    playbook.write_text(playbook.read_text() + '\n[tasks.extra]\nhost = "extra"\nrun = "true"\n')
    (playbook.parent / "inventory.toml").write_text('[hosts.extra]\naddress = "127.0.0.3"\n')
    monkeypatch.chdir(tmp_path)  # not the playbook's directory
    missing = invoke("validate", playbook)
    assert missing.exit_code == 2 and "tasks.extra.host: found 'extra'" in missing.output
    playbook.write_text(playbook.read_text() + '\n[run]\ninventory = ["inventory.toml"]\n')
    found = invoke("validate", playbook)
    assert found.exit_code == 0, found.output
    assert "2 host(s)" in found.output
    (tmp_path / "empty.toml").write_text("")
    overridden = invoke("validate", playbook, env={"FEDI_RUN_INVENTORY": "empty.toml"})
    assert overridden.exit_code == 2 and "tasks.extra.host" in overridden.output


def test_the_state_of_the_run_table_is_the_one_history_reads(project):
    playbook = project('state = "db/runs.db"')
    result = invoke("history", playbook)
    assert result.exit_code == 0, result.output
    assert f"recorded in {playbook.parent / 'db' / 'runs.db'}" in result.output


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('forks = "x"', "run.forks: found 'x', expected an integer"),
        ("forks = 0", "run.forks: found 0, expected a number >= 1"),
        ("timeout = -1", "run.timeout: found -1, expected a number > 0"),
        # the loader shows a path as it resolved it: relative to the playbook
        ('inventory = "a.toml"', ("run.inventory: found '", "a.toml', expected an array")),
        ("no_apply = 1", "run.no_apply: found 1, expected true or false"),
        ("forkz = 3", "run.forkz: unknown key (did you mean 'forks'?)"),
        ('format = "png"', "run.format: found 'png'"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "plan", "run", "history", "verify"])
def test_a_bad_run_table_is_exit_2_naming_the_file_and_key(project, command, table, expected):
    playbook = project(table)
    result = invoke(command, playbook)
    assert result.exit_code == 2, result.output
    first, *rest = (expected,) if isinstance(expected, str) else expected
    assert f"error: {playbook}: {first}" in result.output
    assert all(part in result.output for part in rest), result.output
    assert "Traceback" not in result.output and "Usage:" not in result.output


def test_a_bad_value_in_the_environment_names_the_variable(project):
    result = invoke("plan", project(), env={"FEDI_RUN_NO_APPLY": "maybe"})
    assert result.exit_code == 2
    assert (
        "FEDI_RUN_NO_APPLY" in result.output and "'maybe' is not a valid boolean" in result.output
    )


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _default(param: click.Parameter):
    """The option's built-in default; None for none (click's own sentinel)."""
    value = param.default
    return value if isinstance(value, (bool, int, float, str, tuple, type(None))) else None


def test_every_run_key_is_an_option_and_every_option_default_matches_the_model():
    keys: dict[str, list] = {}
    for path, command in _commands():
        for param in command.params:
            key = run_key(param)
            if key is not None and path[0] not in ("lab", "panel"):
                keys.setdefault(key, []).append(param)
    fields = {field.alias or name: field for name, field in RunSection.model_fields.items()}
    assert set(keys) == set(fields) - {"dns"}
    for key, params in keys.items():
        for param in params:
            expected = fields[key].default
            if param.multiple:
                assert tuple(_default(param) or ()) == expected, key
            else:
                assert _default(param) == expected, (key, param.default, expected)
            assert param.envvar == ENV_PREFIX + key.upper()
            assert param.show_envvar, key


def test_options_that_act_once_have_no_default(project):
    for _, command in _commands():
        for param in command.params:
            if param.name in {
                "yes",
                "resume",
                "rotate_secrets",
                "restore_secrets",
                "change_domain",
                "only",
                "start",
            }:
                assert run_key(param) is None and not param.envvar, param.name
    result = invoke("validate", project("yes = true"))
    assert result.exit_code == 2 and "run.yes: unknown key" in result.output


def test_a_mistyped_command_gets_did_you_mean():
    result = invoke("histroy", "site.toml")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: no command 'histroy' (did you mean 'history'?); a playbook is a .toml file: "
        "fedi-run PLAYBOOK.toml runs it"
    )
    assert "did you mean 'validate'" in invoke("valdate").output


def test_a_playbook_that_is_not_there_keeps_the_file_error(tmp_path):
    result = invoke(tmp_path / "nosuchfile.toml")
    assert result.exit_code == 2
    assert "nosuchfile.toml: cannot read the file" in result.output
    assert "did you mean" not in invoke("histroy.toml").output


def test_a_file_named_like_a_command_is_a_playbook(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("histroy").write_text("[deployment\n")
    result = invoke("histroy")
    assert result.exit_code == 2
    assert result.output.startswith("error: histroy: not valid TOML"), result.output


def test_a_run_option_first_runs_the_playbook(tmp_path):
    for first in (["--check"], ["-i", str(tmp_path / "inv.toml")], ["--forks=3"]):
        result = invoke(*first, tmp_path / "nosuch.toml")
        assert result.exit_code == 2
        assert "nosuch.toml: cannot read the file" in result.output, result.output
    assert "No such option '--bogus'" in invoke("--bogus").output
    assert invoke("--version").output.startswith("fedi-run, version")


def test_a_postgresql_state_in_the_run_table_is_a_url_not_a_path(project):
    """``[run] state = "postgresql://…"`` reaches the state as the URL it is (not made a path
    relative to the playbook): nothing listens on port 1, so the state's own error names the
    URL, without its password."""
    playbook = project('state = "postgresql://fedi:sekrit@127.0.0.1:1/fedi"')
    for command in ("history", "plan", "validate"):
        result = invoke(command, playbook)
        assert "project/postgresql:" not in result.output, (command, result.output)
        assert "sekrit" not in result.output, (command, result.output)
    history = invoke("history", playbook)
    assert history.exit_code == 2, history.output
    assert "postgresql://fedi@127.0.0.1:1/fedi" in history.output, history.output
