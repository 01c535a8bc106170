"""A third-party plugin, installed as its own distribution (examples/akkoma-plugin), adds a
service with its own section, tasks, template and Nix module; and the plugin author's guide
documents every hook with its exact signature."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fedi_run.engine.plugin import hookspecs

ROOT = Path(__file__).resolve().parent.parent.parent
PLUGIN = ROOT / "examples" / "akkoma-plugin"

PLAYBOOK = """
[deployment]
name = "akkoma"
domain = "akkoma.example.org"

[services.akkoma]
enable = true
host = "social"
instance_name = "Our \\"Akkoma\\""
registrations_open = true

[initial_user]
username = "admin"
display_name = "Admin"
email = "admin@akkoma.example.org"
password_file = "password"

[run]
dns = "off"
"""


def test_every_hook_is_documented_with_its_exact_signature():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("fedi_run_")]
    assert len(hooks) >= 3
    for name in hooks:
        signature = str(inspect.signature(getattr(hookspecs, name))).replace("'", "")
        line = f"def {name}{signature}"
        assert line in guide, f"docs/plugins.md lacks `{line}`"
        assert re.search(rf"^### `{name}`$", guide, re.M), (
            f"docs/plugins.md has no section for {name}"
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example plugin installed (with pip, as a user would) into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
    )
    return {**os.environ, "PYTHONPATH": str(target)}


def fedi(env, *args, cwd=None):
    return subprocess.run(
        ["fedi-run", *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True
    )


def test_the_installed_plugin_is_found_through_its_entry_point(installed):
    result = fedi(installed, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    akkoma = [p for p in json.loads(result.stdout) if p["name"] == "akkoma"][0]
    assert akkoma == {
        "name": "akkoma",
        "version": "0.1.0",
        "origin": "distribution fedi-run-akkoma 0.1.0",
        "module": "fedi_run_akkoma",
    }
    schema = json.loads(fedi(installed, "schema").stdout)
    assert set(schema["$defs"]["AkkomaConfig"]["properties"]) >= {
        "enable",
        "host",
        "instance_name",
        "registrations_open",
    }


def test_its_section_is_validated(installed, tmp_path):
    (tmp_path / "p.toml").write_text(
        PLAYBOOK.replace("registrations_open = true", "registrations_open = 1")
    )
    result = fedi(installed, "validate", tmp_path / "p.toml")
    assert result.returncode == 2
    assert "services.akkoma.registrations_open: found 1, expected true or false" in result.stderr


@pytest.mark.lab
def test_it_runs_on_the_lab_and_tears_down(installed, lab_factory, tmp_path):
    lab = lab_factory(["garage", "social"])
    (tmp_path / "p.toml").write_text(PLAYBOOK)
    (tmp_path / "password").write_text("correct horse battery staple\n")
    plan = fedi(
        installed, "plan", tmp_path / "p.toml", "-i", lab.inventory_path, "--json", "--no-apply"
    )
    ids = [t["id"] for t in json.loads(plan.stdout)["tasks"]]
    assert {
        "akkoma.secrets",
        "akkoma.s3",
        "akkoma.settings",
        "akkoma.initial-user",
        "garage.key.akkoma",
    } <= set(ids)
    assert ids.index("garage.key.akkoma") < ids.index("akkoma.s3")

    run = fedi(
        installed, "run", tmp_path / "p.toml", "-i", lab.inventory_path, "--json", "--no-apply"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    settings = json.loads(lab.read_file("social", "/var/lib/akkoma-fedi-run/settings.json"))
    assert settings == {
        "instance": {
            "name": 'Our "Akkoma"',
            "host": "akkoma.akkoma.example.org",
            "registrations_open": True,
        }
    }
    modes = lab.run(
        "social",
        "stat -c '%n %a' /var/lib/fedi-run/secrets/akkoma/* /var/lib/fedi-run/secrets/akkoma/s3/*",
        check=True,
    ).stdout
    assert "/var/lib/fedi-run/secrets/akkoma/signing-salt 400" in modes
    assert "/var/lib/fedi-run/secrets/akkoma/s3/secret 400" in modes
    assert lab.read_file("social", "/var/lib/fedi-run/secrets/akkoma/s3/key-id") == lab.read_file(
        "garage", "/var/lib/fedi-run/secrets/garage/keys/akkoma/key-id"
    )
    user = json.loads(lab.read_file("social", "/var/lib/fedi-run/secrets/akkoma/initial-user"))
    assert user["password"] == "correct horse battery staple" and user["displayName"] == "Admin"
    assert "correct horse battery staple" not in run.stdout + run.stderr

    again = fedi(
        installed, "run", tmp_path / "p.toml", "-i", lab.inventory_path, "--json", "--no-apply"
    )
    recap = [json.loads(x) for x in again.stdout.splitlines() if '"run_finished"' in x][0]["recap"]
    assert sum(h["changed"] for h in recap.values()) == 0

    down = fedi(
        installed, "teardown", tmp_path / "p.toml", "-i", lab.inventory_path, "--json", "--no-apply"
    )
    assert down.returncode == 0, down.stdout + down.stderr
    assert lab.run("social", "test -e /var/lib/fedi-run/secrets/akkoma").exit_status != 0
    assert lab.run("social", "test -e /var/lib/akkoma-fedi-run/settings.json").exit_status != 0
