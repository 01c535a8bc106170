"""A third-party plugin, installed as its own distribution (examples/akkoma-plugin), adds a
service with its own section, tasks, template and Nix module, and uses every other extension
point the built-in plugins use — a table an inventory may hold, data for data.nix, a preflight
read of a deployer file, the systemd unit verify checks, a secret generator and a
configuration.json key; and the plugin author's guide documents every hook with its exact
signature."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from render_helpers import nix_instantiate

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
        "stat -c '%n %a' /var/lib/fedi-run/akkoma/secrets/akkoma/* "
        "/var/lib/fedi-run/akkoma/secrets/akkoma/s3/*",
        check=True,
    ).stdout
    assert "/var/lib/fedi-run/akkoma/secrets/akkoma/signing-salt 400" in modes
    assert "/var/lib/fedi-run/akkoma/secrets/akkoma/s3/secret 400" in modes
    assert lab.read_file(
        "social", "/var/lib/fedi-run/akkoma/secrets/akkoma/s3/key-id"
    ) == lab.read_file("garage", "/var/lib/fedi-run/akkoma/secrets/garage/keys/akkoma/key-id")
    user = json.loads(
        lab.read_file("social", "/var/lib/fedi-run/akkoma/secrets/akkoma/initial-user")
    )
    assert user["password"] == "correct horse battery staple" and user["displayName"] == "Admin"
    assert "correct horse battery staple" not in run.stdout + run.stderr

    again = fedi(
        installed, "run", tmp_path / "p.toml", "-i", lab.inventory_path, "--json", "--no-apply"
    )
    recap = [json.loads(x) for x in again.stdout.splitlines() if '"run_finished"' in x][0]["recap"]
    assert sum(h["changed"] for h in recap.values()) == 0

    down = fedi(
        installed,
        "teardown",
        tmp_path / "p.toml",
        "-i",
        lab.inventory_path,
        "--json",
        "--no-apply",
        "--yes",
    )
    assert down.returncode == 0, down.stdout + down.stderr
    assert lab.run("social", "test -e /var/lib/fedi-run/akkoma/secrets/akkoma").exit_status != 0
    assert lab.run("social", "test -e /var/lib/akkoma-fedi-run/settings.json").exit_status != 0


# --- every extension point --------------------------------------------------------------------

HOSTS = """
[hosts.social]
address = "192.0.2.10"

[hosts.garage]
address = "192.0.2.11"
"""
"""Hosts in TEST-NET-1: nothing answers there, so a run that reached a host would fail with
exit status 1 (unreachable), never 2."""

MAIL = """
[akkoma-mail]
relay = "smtp.akkoma.example.org"
port = 2525
sender = "noreply@akkoma.example.org"
"""
TERMS = "<h1>Be excellent to each other</h1>\n<p>And party on.</p>\n"
SALT = re.compile(r"[A-Za-z0-9_-]{40}")
"""The format of the plugin's own generator ``akkoma-signing-salt`` (alnum32 makes 32)."""


def with_terms(playbook: str, terms: str = "terms.html") -> str:
    return playbook.replace(
        "registrations_open = true", f'registrations_open = true\nterms_file = "{terms}"'
    )


def test_its_mail_table_may_come_from_an_inventory(installed, tmp_path):
    (tmp_path / "machine.nix").write_text("{ }\n")  # the files a run reads: validate checks them
    (tmp_path / "password").write_text("a long enough password\n")
    hosts = HOSTS.replace('"\n', '"\nnixos = "machine.nix"\n')
    (tmp_path / "p.toml").write_text(PLAYBOOK + hosts)
    (tmp_path / "mail.toml").write_text(MAIL)
    ok = fedi(installed, "validate", tmp_path / "p.toml", "-i", tmp_path / "mail.toml")
    assert ok.returncode == 0, ok.stderr

    (tmp_path / "bad-mail.toml").write_text(MAIL.replace("noreply@akkoma.example.org", "nobody"))
    bad = fedi(installed, "validate", tmp_path / "p.toml", "-i", tmp_path / "bad-mail.toml")
    assert bad.returncode == 2
    assert "bad-mail.toml: akkoma-mail.sender: " in bad.stderr, bad.stderr

    # a table not declared for inventories is refused, and the message lists the declared ones
    (tmp_path / "services.toml").write_text("[services.akkoma]\nenable = false\n")
    refused = fedi(installed, "validate", tmp_path / "p.toml", "-i", tmp_path / "services.toml")
    assert refused.returncode == 2
    assert (
        "services.toml: services: an inventory may hold only [hosts.*], [vars], [acme] and "
        "[akkoma-mail] tables"
    ) in refused.stderr, refused.stderr


def test_a_configuration_json_key_switches_it_on(installed, tmp_path):
    (tmp_path / "p.toml").write_text(PLAYBOOK.replace("enable = true\n", "", 1) + HOSTS)
    (tmp_path / "configuration.json").write_text(json.dumps({"akkoma": {"enable": True}}))

    def plan(*args):
        done = fedi(installed, "plan", tmp_path / "p.toml", "--json", "--no-apply", *args)
        assert done.returncode == 0, done.stderr
        return {t["id"] for t in json.loads(done.stdout)["tasks"]}

    assert "akkoma.secrets" not in plan()
    assert {"akkoma.secrets", "akkoma.s3", "garage.key.akkoma"} <= plan(
        "--configuration", tmp_path / "configuration.json"
    )
    (tmp_path / "typo.json").write_text(json.dumps({"akoma": {"enable": True}}))
    typo = fedi(installed, "plan", tmp_path / "p.toml", "--configuration", tmp_path / "typo.json")
    assert typo.returncode == 2
    assert (
        "expected one of: $schema, domain, initialUser, akkoma, mastodon, peertube, pixelfed"
    ) in typo.stderr, typo.stderr


def test_a_missing_terms_file_stops_the_run_before_any_host(installed, tmp_path):
    (tmp_path / "p.toml").write_text(with_terms(PLAYBOOK) + HOSTS)
    (tmp_path / "password").write_text("correct horse battery staple\n")
    run = fedi(installed, "run", tmp_path / "p.toml", "--no-apply", "--json")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "services.akkoma.terms_file: found " in run.stderr, run.stderr
    assert f"{tmp_path / 'terms.html'}" in run.stderr
    assert "not a readable file" in run.stderr
    assert "task_started" not in run.stdout and "unreachable" not in run.stdout + run.stderr


@pytest.mark.lab
def test_its_extension_points_on_the_lab(installed, lab_factory, tmp_path):
    lab = lab_factory(["garage", "social"])
    (tmp_path / "p.toml").write_text(with_terms(PLAYBOOK))
    (tmp_path / "password").write_text("correct horse battery staple\n")
    (tmp_path / "terms.html").write_text(TERMS)
    (tmp_path / "mail.toml").write_text(MAIL)
    inventories = ("-i", lab.inventory_path, "-i", tmp_path / "mail.toml")

    run = fedi(installed, "run", tmp_path / "p.toml", *inventories, "--json", "--no-apply")
    assert run.returncode == 0, run.stdout + run.stderr

    # its own secret generator made the signing salt; the terms came from the deployer's file
    salt = lab.read_file("social", "/var/lib/fedi-run/akkoma/secrets/akkoma/signing-salt").decode()
    assert SALT.fullmatch(salt), "the salt is not akkoma-signing-salt's format"
    assert salt not in run.stdout + run.stderr
    terms = lab.read_file("social", "/var/lib/fedi-run/akkoma/secrets/akkoma/terms.html").decode()
    assert terms == TERMS

    # its data, from the inventory's [akkoma-mail], in the rendered data.nix
    data_nix = tmp_path / ".fedi-run" / "akkoma" / "data.nix"
    evaluated = nix_instantiate("--eval", "--strict", "--json", str(data_nix))
    assert evaluated.returncode == 0, evaluated.stderr
    data = json.loads(evaluated.stdout)
    assert data["akkoma"] == {
        "instanceName": 'Our "Akkoma"',
        "registrationsOpen": True,
        "mail": {
            "relay": "smtp.akkoma.example.org",
            "port": 2525,
            "sender": "noreply@akkoma.example.org",
        },
    }
    assert data["services"]["akkoma"]["enable"] is True
    assert data["services"]["akkoma"]["secrets"]["terms"] == (
        "/var/lib/fedi-run/akkoma/secrets/akkoma/terms.html"
    )
    module = (tmp_path / ".fedi-run" / "akkoma" / "hosts" / "social" / "akkoma.nix").read_text()
    assert '"/var/lib/fedi-run/akkoma/secrets/akkoma/terms.html"' in module
    assert '"smtp.akkoma.example.org"' in module

    # verify checks the unit it declares, on its host: the lab has no systemd, so not active
    verify = fedi(installed, "verify", tmp_path / "p.toml", *inventories)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    lines = {line.split()[0]: line for line in verify.stdout.splitlines()[:-1]}
    assert sorted(lines) == ["akkoma", "garage"]
    assert " FAIL  host social: akkoma.service: not active (systemctl: " in lines["akkoma"]
    assert " FAIL  host garage: garage.service: not active (systemctl: " in lines["garage"]
    assert verify.stdout.splitlines()[-1] == "verify: 0 of 2 enabled service(s) pass."
