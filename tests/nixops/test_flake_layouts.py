"""Nix reads the rendered deployment — with the real ``nix`` (Debian's nix 2.8), offline.

A flake in a git tree is read through git, and Nix sees only the files git tracks. fedi-run makes
the deployment directory ``.fedi-run/<name>/`` a git repository of its own and commits what it
renders there, so the flake reads the same in both usual layouts: a playbook in a git checkout
with ``.fedi-run/`` git-ignored, and a playbook in no repository at all. Each layout is rendered
by the ``nixops4.render`` task itself; then ``nix flake metadata`` and ``nix eval`` of
``outputs.nixops4`` must succeed with every input overridden by a small local test double of
the interface the flake uses (tests/nixops/flakes/: nixops4's ``lib.mkRoot`` and local provider,
nixops4-nixos's NixOS component and its options, nixpkgs' ``lib.nixosSystem``). What they
evaluate to is checked: the one member named after the deployment, one member per host with its
ssh settings and pinned key, and each host's NixOS modules — its platform, its state version and
its base configuration, copied with the file beside it.

Negative controls show the checks can fail: the same files in the ignored checkout without a
repository of their own are unreadable (the error of issue 11), an option nixops4-nixos does
not declare and a host module without ``nixpkgs.hostPlatform`` are refused by the doubles, and
the nixops4 stand-in refuses a directory Nix cannot read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fedi_run.engine.execute.context import Context
from fedi_run.engine.execute.perform import perform
from fedi_run.engine.nixops.apply import apply_task, deployment_directory
from fedi_run.engine.nixops.pins import FLAKE_INPUTS
from fedi_run.engine.nixops.render import RENDER_ID
from fedi_run.engine.project import load_project
from fedi_run.engine.report.masking import Masker

ROOT = Path(__file__).resolve().parents[2]
DOUBLES = Path(__file__).resolve().parent / "flakes"
STANDIN = ROOT / "tests" / "standin" / "nixops4"
GARAGE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIADZBxL6FLRwDVPCTx1WXm4w5Y+F78twRpMSlxhK27c6"
MASTODON_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINrzFex9Ym2pqJEG0kBi/IwRhJ79TQBIwY9MvdtEZ57y"

PLAYBOOK = f"""\
[deployment]
name = "site"
domain = "example.org"
state_version = "24.11"

[hosts.garage]
address = "203.0.113.10"
port = 2222
host_key = "{GARAGE_KEY}"
system = "aarch64-linux"

[hosts.mastodon]
address = "203.0.113.11"
user = "deploy"
host_key = "{MASTODON_KEY}"

[services.mastodon]
enable = true
"""
INVENTORY = """\
[hosts.garage]
nixos = "../machines/garage/configuration.nix"   # relative to this file

[hosts.mastodon]
nixos = "../machines/mastodon/configuration.nix"
"""
BASE = """\
{ ... }:
{
  imports = [ ./hardware-configuration.nix ];
  networking.hostName = "%s";
}
"""
HARDWARE = """\
{ lib, ... }:
{
  fileSystems."/".device = "/dev/disk/by-label/nixos";
  nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
}
"""

MEMBERS = """
root:
let
  tree = root.rootFunction { };
  host = member: {
    inherit (member) settings;
    module = map toString member.settings."nixos.module".imports;
    knownHosts = member.built.knownHosts;
    sudo = member.built.sudo;
    config = {
      inherit (member.built.nixos.configuration.config.nixpkgs) hostPlatform;
      inherit (member.built.nixos.configuration.config.system) stateVersion;
    };
    imports = member.built.nixos.configuration.imports;
    args = member.resource.inputs.args;
    type = member.resource.type;
  };
in
{
  root = builtins.attrNames tree.members;
  deployment = builtins.mapAttrs (_: host) tree.members.site.members;
}
"""


def nix(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    """The real ``nix`` with flakes, offline (no substituter); a loud failure when missing."""
    executable = shutil.which("nix")
    assert executable, "nix is not installed: apt-get install nix-bin"
    return subprocess.run(
        [
            executable,
            "--extra-experimental-features",
            "nix-command flakes",
            "--option",
            "substituters",
            "",
            *args,
        ],
        cwd=cwd,
        env={**os.environ, "XDG_CACHE_HOME": str(cache), "NIX_CONFIG": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def overrides() -> list[str]:
    """``--override-input <name> path:<double>`` for every input of the rendered flake."""
    assert sorted(p.name for p in DOUBLES.iterdir() if (p / "flake.nix").is_file()) == sorted(
        FLAKE_INPUTS
    ), "a test double per input of the rendered flake"
    found = []
    for name in FLAKE_INPUTS:
        found += ["--override-input", name, f"path:{DOUBLES / name}"]
    return found


def git(directory: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def make_site(site: Path, layout: str) -> Path:
    """The playbook, an inventory naming each host's base configuration, and the base
    configurations, in ``site`` — a git checkout ignoring ``.fedi-run/``, or no repository."""
    (site / "inventory").mkdir(parents=True)
    (site / "site.toml").write_text(PLAYBOOK)
    (site / "inventory" / "hosts.toml").write_text(INVENTORY)
    for host in ("garage", "mastodon"):
        machine = site / "machines" / host
        machine.mkdir(parents=True)
        (machine / "configuration.nix").write_text(BASE % host)
        (machine / "hardware-configuration.nix").write_text(HARDWARE)
        (machine / "notes.txt").write_text("not a .nix file: not copied\n")
        (machine / "old").mkdir()
        (machine / "old" / "previous.nix").write_text("{ }\n")  # a subdirectory: not copied
    if layout == "git checkout":
        assert git(site, "init", "-q").returncode == 0
        (site / ".gitignore").write_text(".fedi-run/\n")
        assert git(site, "add", "-A").returncode == 0
        assert git(site, "commit", "-q", "-m", "the site").returncode == 0
    else:
        assert git(site, "rev-parse", "--show-toplevel").returncode != 0, (
            f"{site} must be in no git repository for this layout"
        )
    return site / "site.toml"


def render(playbook: Path, inventories=()):
    """Load the project and run the ``nixops4.render`` task's action, as a run does."""
    project = load_project(playbook, inventories, apply=False)
    task = project.graph.tasks[RENDER_ID]
    outcome = perform(task.actions, Context(connection=None, masker=Masker()))
    return project, task, outcome


@pytest.mark.parametrize("layout", ["git checkout", "plain directory"])
def test_nix_reads_the_rendered_deployment_in_either_layout(tmp_path, layout):
    playbook = make_site(tmp_path / "site", layout)
    project, task, outcome = render(playbook, [tmp_path / "site" / "inventory" / "hosts.toml"])
    directory = deployment_directory(project.playbook)
    cache = tmp_path / "cache"

    assert task.reads == ("hosts.garage.nixos", "hosts.mastodon.nixos")
    assert [c.split()[0:2] for c in outcome.changes if c.startswith("git ")] == [
        ["git", "init"],
        ["git", "commit"],
    ]
    if layout == "git checkout":  # the operator's checkout is left as it was
        assert git(tmp_path / "site", "status", "--porcelain").stdout == ""

    metadata = nix("flake", "metadata", "--json", ".", *overrides(), cwd=directory, cache=cache)
    assert metadata.returncode == 0, metadata.stderr
    meta = json.loads(metadata.stdout)
    head = git(directory, "rev-parse", "HEAD").stdout.strip()
    assert (meta["locked"]["type"], meta["locked"]["rev"]) == ("git", head)
    assert meta["originalUrl"] == f"git+file://{directory}"  # its own repository, not the site's
    nodes = meta["locks"]["nodes"]
    for name, reference in FLAKE_INPUTS.items():  # each input pinned to an exact revision
        original = nodes[name]["original"]
        assert reference == f"github:{original['owner']}/{original['repo']}/{original['rev']}"
        assert nodes[name]["locked"]["path"] == str(DOUBLES / name)
    for name in ("nixops4", "nixops4-nixos"):
        assert nodes[name]["inputs"]["nixpkgs"] == ["nixpkgs"]  # one nixpkgs for everything

    source = Path(meta["path"])  # what Nix copied: exactly what git tracks
    for host in ("garage", "mastodon"):
        base = source / "hosts" / host / "base"
        assert sorted(p.name for p in base.iterdir()) == [
            "configuration.nix",
            "hardware-configuration.nix",
        ]
        assert (base / "configuration.nix").read_text() == BASE % host
        assert (base / "hardware-configuration.nix").read_text() == HARDWARE

    evaluated = nix(
        "eval", "--json", ".#nixops4", *overrides(), "--apply", MEMBERS, cwd=directory, cache=cache
    )
    assert evaluated.returncode == 0, evaluated.stderr
    tree = json.loads(evaluated.stdout)
    assert tree["root"] == ["site"]  # `nixops4 apply site` applies exactly this deployment
    members = tree["deployment"]
    assert sorted(members) == ["garage", "mastodon"]

    garage, mastodon = members["garage"], members["mastodon"]
    assert garage["type"] == mastodon["type"] == "exec"
    assert {k: v for k, v in garage["settings"].items() if k.startswith("ssh.")} == {
        "ssh.host": "203.0.113.10",
        "ssh.user": "root",
        "ssh.opts": "-o Port=2222 -o HostKeyAlias=203.0.113.10",
        "ssh.hostPublicKey": GARAGE_KEY,
    }
    # the pinned key is looked up under the bare address, which HostKeyAlias makes ssh use
    assert garage["knownHosts"] == f"203.0.113.10 {GARAGE_KEY}\n"
    assert garage["args"][2] == "root@203.0.113.10"
    assert garage["sudo"] is False
    assert mastodon["settings"]["ssh.opts"] == ""
    assert mastodon["settings"]["ssh.user"] == "deploy"
    assert mastodon["sudo"] is True
    assert mastodon["knownHosts"] == f"203.0.113.11 {MASTODON_KEY}\n"

    for name, member in members.items():
        assert member["module"] == [f"{source}/hosts/{name}.nix"]
        assert member["imports"][:2] == [
            f"{source}/hosts/{name}.nix",
            f"{source}/hosts/{name}/base/configuration.nix",
        ]
        assert all(Path(p).is_file() for p in member["imports"])
    assert garage["config"] == {"hostPlatform": "aarch64-linux", "stateVersion": "24.11"}
    assert mastodon["config"] == {"hostPlatform": "x86_64-linux", "stateVersion": "24.11"}

    # the apply fedi-run runs is the one the nixops4 stand-in accepts there
    command = apply_task(project.playbook, [RENDER_ID]).actions[0]
    done = subprocess.run(
        [str(STANDIN), *command.argv[1:]],
        cwd=command.cwd,
        env={**os.environ, "NIXOPS4_STANDIN_LOG": str(tmp_path / "log")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [record] = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert record["memberPath"] == "site"
    assert record["git"]["clean"] is True
    assert record["git"]["toplevel"] == str(directory)


def test_without_a_repository_of_its_own_nix_cannot_read_it(tmp_path):
    playbook = make_site(tmp_path / "site", "git checkout")
    project, _, _ = render(playbook, [tmp_path / "site" / "inventory" / "hosts.toml"])
    rendered = deployment_directory(project.playbook)
    bare = rendered.parent / "bare"
    shutil.copytree(rendered, bare, ignore=shutil.ignore_patterns(".git"))

    done = nix("flake", "metadata", ".", *overrides(), cwd=bare, cache=tmp_path / "cache")
    assert done.returncode != 0
    assert "No such file or directory" in done.stderr  # the error of issue 11

    standin = subprocess.run(
        [str(STANDIN), "apply", "bare", "--no-interactive", "--show-trace"],
        cwd=bare,
        env={**os.environ, "NIXOPS4_STANDIN_LOG": str(tmp_path / "log")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert standin.returncode == 2
    assert "is not a git repository of its own" in standin.stderr
    [record] = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert record["problems"] and record["git"]["clean"] is False


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            ("opts = host.sshOpts;", "opts = host.sshOpts;\n            port = 2222;"),
            "no option declares ssh.port (the option does not exist)",
        ),
        (
            ("nixpkgs = inputs.nixpkgs;", ""),
            "nixpkgs: is used but not defined (a required option)",
        ),
        (
            ("imports = [ module ];", "imports = [ ];"),
            "neither nixpkgs.hostPlatform nor nixpkgs.system is set",
        ),
        (
            (
                "providers.local = inputs.nixops4.modules.nixops4Provider.local;",
                "providers.local = inputs.nixops4.modules.nixops4Provider.local;\n"
                "              members.site.type = 1;",
            ),
            "is not a resource type of a provider",
        ),
    ],
    ids=["undeclared-option", "required-option-unset", "no-host-platform", "not-a-resource"],
)
def test_the_test_doubles_refuse_what_upstream_refuses(tmp_path, change, error):
    """Negative controls: the doubles fail where NixOps4 and nixpkgs would."""
    playbook = make_site(tmp_path / "site", "plain directory")
    project, _, _ = render(playbook, [tmp_path / "site" / "inventory" / "hosts.toml"])
    directory = deployment_directory(project.playbook)
    flake = directory / "flake.nix"
    old, new = change
    assert old in flake.read_text()
    flake.write_text(flake.read_text().replace(old, new))
    assert git(directory, "commit", "-q", "-a", "-m", "broken").returncode == 0

    done = nix(
        "eval", "--json", ".#nixops4", *overrides(), "--apply", MEMBERS, cwd=directory,
        cache=tmp_path / "cache",
    )  # fmt: skip
    assert done.returncode != 0
    assert error in done.stderr, done.stderr
