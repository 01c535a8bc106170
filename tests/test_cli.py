"""The command line, through click's CliRunner and, where start-up matters, a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import jsonschema
from click.testing import CliRunner
from helpers import EXAMPLES, MINIMAL

from fedi_run.engine.cli.main import cli

FEDIVERSITY = str(EXAMPLES / "fediversity.toml")
BASIC = str(EXAMPLES / "basic.toml")


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_help_lists_every_command_with_a_line():
    result = invoke("--help")
    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1].strip().splitlines()
    names = {line.split()[0] for line in commands}
    assert {"validate", "plan", "graph", "plugins", "schema", "lab"} <= names
    assert all(len(line.split(None, 1)) == 2 for line in commands)


def test_help_imports_nothing_heavy():
    """`fedi-run --help` must stay fast: the heavy libraries load only when a command runs."""
    code = (
        "import sys\n"
        "from fedi_run.engine.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pydantic', 'networkx', 'jinja2', 'pluggy', 'fabric', 'paramiko') "
        "if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stderr.strip() == "[]"


def ready_fediversity(tmp_path) -> str:
    """The Fediversity example beside the deployer files a run of it reads (the initial
    user's password, each host's base NixOS configuration): what `validate` checks too."""
    import tomli_w

    playbook = tomllib.loads((EXAMPLES / "fediversity.toml").read_text())
    (tmp_path / "machine.nix").write_text("{ }\n")
    for table in playbook["hosts"].values():
        table["nixos"] = "machine.nix"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "admin-password").write_text("a long enough password\n")
    path = tmp_path / "fediversity.toml"
    path.write_text(tomli_w.dumps(playbook))
    return str(path)


def test_validate_ok(tmp_path):
    result = invoke("validate", ready_fediversity(tmp_path))
    assert result.exit_code == 0, result.output
    assert (
        "valid" in result.output
        and "garage (needed by mastodon, peertube, pixelfed)" in result.output
    )


def test_validate_prints_every_error_with_exit_2(write):
    path = write("p.toml", MINIMAL.replace('"example.org"', '"bad domain"') + "port = 0\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "2 problems found" in result.output
    assert f"{path}: deployment.domain: found 'bad domain'" in result.output
    assert f"{path}: hosts.web.port: found 0" in result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )


def test_a_missing_playbook_is_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["plan", str(tmp_path / "none.toml")])
    assert result.exit_code == 2
    assert "cannot read the file" in result.output


def test_plan_text_groups_steps():
    result = invoke("plan", BASIC)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "Plan for basic: 6 task(s) in 4 step(s) on 3 host(s)"
    assert "step 1 (2 in parallel)" in lines and "step 3" in lines
    assert any(line.split()[:3] == ["tasks.hello", "hello", "all"] for line in lines)


def test_plan_json_is_in_execution_order_with_reasons():
    result = invoke("plan", FEDIVERSITY, "--json", "--only", "pixelfed.s3")
    data = json.loads(result.output)
    ids = [t["id"] for t in data["tasks"]]
    seen = set()
    for task in data["tasks"]:
        assert set(task) >= {"id", "host", "requires", "tags", "selected_by"}
        assert all(r in seen for r in task["requires"])
        seen.add(task["id"])
    assert ids[-1] == "pixelfed.s3"
    by_id = {t["id"]: t for t in data["tasks"]}
    assert by_id["pixelfed.s3"]["selected_by"] == "--only pixelfed.s3"
    assert by_id["garage.key.pixelfed"]["selected_by"] == "required by pixelfed.s3"
    assert by_id["garage.key.pixelfed"]["host"] == "garage"


def test_plan_selection_flags():
    data = json.loads(
        invoke(
            "plan",
            FEDIVERSITY,
            "--json",
            "--tags",
            "secrets,s3",
            "--skip-tags",
            "garage",
            "--no-deps",
        ).output
    )
    assert {t["id"] for t in data["tasks"]} == {
        "mastodon.secrets",
        "peertube.secrets",
        "pixelfed.secrets",
    }
    data = json.loads(invoke("plan", BASIC, "--json", "--limit", "cowsay", "--no-deps").output)
    assert {t["id"] for t in data["tasks"]} == {"tasks.cowsay", "tasks.motd@cowsay"}
    data = json.loads(
        invoke("plan", BASIC, "--json", "--from", "tasks.motd@hello", "--no-deps").output
    )
    assert [t["id"] for t in data["tasks"]] == [
        "tasks.motd@hello",
        "nixops4.render",
        "nixops4.apply",
    ]


def test_no_apply_renders_and_stops():
    data = json.loads(invoke("plan", BASIC, "--json", "--no-apply").output)
    ids = [t["id"] for t in data["tasks"]]
    assert "nixops4.apply" not in ids and ids[-1] == "nixops4.render"


def test_selection_error_is_exit_2():
    result = CliRunner().invoke(cli, ["plan", BASIC, "--only", "tasks.hallo"])
    assert result.exit_code == 2
    assert (
        "error: --only 'tasks.hallo' matches no task (did you mean 'tasks.hello'?)" in result.output
    )


def test_graph_mermaid():
    out = invoke("graph", BASIC, "--format", "mermaid").output
    lines = out.splitlines()
    assert lines[0] == "flowchart LR"
    labels = {line.split("[")[0].strip(): line for line in lines if "[" in line}
    ids = {label.split('"')[1].split("<br>")[0]: node for node, label in labels.items()}
    assert f"  {ids['tasks.hello']} --> {ids['tasks.motd@hello']}" in lines
    assert f"  {ids['tasks.motd@hello']} --> {ids['nixops4.render']}" in lines
    assert f"  {ids['nixops4.render']} --> {ids['nixops4.apply']}" in lines
    assert len([line for line in lines if "-->" in line]) == 7


def test_graph_dot():
    out = invoke("graph", BASIC, "--format", "dot").output
    assert out.startswith('digraph "basic" {')
    assert '  "tasks.cowsay" -> "tasks.motd@cowsay";' in out
    assert out.rstrip().endswith("}")


def test_graph_json_nodes_and_edges():
    data = json.loads(invoke("graph", FEDIVERSITY, "--format", "json").output)
    nodes = {n["id"] for n in data["nodes"]}
    assert "nixops4.apply" in nodes and len(nodes) == len(data["nodes"])
    assert {"from": "garage.key.mastodon", "to": "mastodon.s3"} in data["edges"]
    assert all(e["from"] in nodes and e["to"] in nodes for e in data["edges"])


def test_plugins_lists_name_version_and_origin():
    lines = invoke("plugins").output.splitlines()
    rows = {line.split()[0]: line.split(None, 2) for line in lines}
    assert {"acme", "garage", "mastodon", "peertube", "pixelfed"} <= set(rows)
    assert rows["mastodon"][1] == "0.1.0" and rows["mastodon"][2] == "built in"


def test_plugins_with_a_module_and_json():
    data = json.loads(invoke("plugins", "--plugin", "extra_service", "--json").output)
    matrix = [p for p in data if p["name"] == "matrix"][0]
    assert matrix["origin"] == "module extra_service (--plugin)"


def test_disabled_plugins_do_not_load():
    out = invoke("plugins", env={"FEDI_RUN_DISABLE_PLUGINS": "mastodon,acme"}).output
    assert "mastodon" not in out and "acme" not in out and "garage" in out


def test_plugin_clash_is_exit_2():
    result = CliRunner().invoke(cli, ["plugins", "--plugin", "clashing_plugin"])
    assert result.exit_code == 2 and "two plugins are named 'mastodon'" in result.output


def test_schema_validates_the_examples_and_rejects_bad_input():
    schema = json.loads(invoke("schema").output)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for example in (FEDIVERSITY, BASIC):
        with open(example, "rb") as handle:
            document = tomllib.load(handle)
        assert list(validator.iter_errors(document)) == []
    assert list(
        validator.iter_errors(
            {"deployment": {"name": "x", "domain": "y.z"}, "hosts": {"a": {"port": "x"}}}
        )
    )
    assert "mastodon" in schema["$defs"]["Services"]["properties"]
    assert "acme" in schema["properties"]


def test_schema_includes_a_plugins_section():
    schema = json.loads(invoke("schema", "--plugin", "extra_service").output)
    assert "federation" in schema["$defs"]["MatrixConfig"]["properties"]


def test_configuration_flag(write, tmp_path):
    config = write(
        "c.json", json.dumps({"domain": "other.example.net", "peertube": {"enable": False}})
    )
    result = invoke("validate", ready_fediversity(tmp_path), "--configuration", str(config))
    assert result.exit_code == 0 and "at other.example.net" in result.output
    assert "peertube (" not in result.output


def test_inventory_flag(write):
    inventory = write("inv.toml", '[hosts.hello]\naddress = "127.0.0.5"\nport = 2200\n')
    result = invoke("validate", BASIC, "-i", str(inventory))
    assert result.exit_code == 0


def test_console_script_runs(tmp_path):
    """The installed `fedi-run` executable works from any directory."""
    result = subprocess.run(
        ["fedi-run", "plan", FEDIVERSITY, "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "FEDI_RUN_DISABLE_PLUGINS": ""},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deployment"] == "fediversity"


def test_a_short_initial_password_stops_the_run_before_any_host(tmp_path):
    """Too short for the apps, and for the masker: refused by name and length, never shown."""
    import tomli_w

    playbook = tomllib.loads((EXAMPLES / "fediversity.toml").read_text())
    for table in playbook["hosts"].values():
        table.update(address="127.0.0.1", port=1)  # nothing listens; it must not get that far
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "admin-password").write_text("hunter\n")
    path = tmp_path / "fediversity.toml"
    path.write_text(tomli_w.dumps(playbook))
    result = CliRunner().invoke(cli, ["run", str(path), "--no-apply"])
    assert result.exit_code == 2, result.output
    assert "initial_user.password_file" in result.stderr
    assert (
        "found a password of 6 characters" in result.stderr
        and "expected at least 8" in result.stderr
    )
    assert "hunter" not in result.output and "Traceback" not in result.output
