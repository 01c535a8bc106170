"""Each host's platform, state version and base configuration in the rendered deployment; the
pinned inputs and their overrides; what the run checks before any host is contacted (a base
configuration for every host the deployment configures, git on PATH)."""

from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner
from render_helpers import load

from fedi_run.engine.cli.main import cli
from fedi_run.engine.errors import ActionFailed, MissingTool, PlaybookError
from fedi_run.engine.execute.context import Context
from fedi_run.engine.execute.perform import perform
from fedi_run.engine.execute.scheduler import ExecutionOptions
from fedi_run.engine.nixops import pins
from fedi_run.engine.nixops.render import RENDER_ID, render_deployment
from fedi_run.engine.preflight import preflight
from fedi_run.engine.report.masking import Masker

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIADZBxL6FLRwDVPCTx1WXm4w5Y+F78twRpMSlxhK27c6"
PLAYBOOK = f"""\
[deployment]
name = "site"
domain = "example.org"

[hosts.garage]
address = "192.0.2.1"
host_key = "{KEY}"
{{garage}}

[hosts.mastodon]
address = "192.0.2.2"
host_key = "{KEY}"
{{mastodon}}

[hosts.spare]                  # only the operator's own tasks could use it: not rendered
address = "192.0.2.3"

[services.mastodon]
enable = true
"""


def site(tmp_path, garage="", mastodon="", deployment=""):
    text = PLAYBOOK.format(garage=garage, mastodon=mastodon)
    if deployment:
        text = text.replace('domain = "example.org"\n', f'domain = "example.org"\n{deployment}\n')
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def machine(tmp_path, host, files=None):
    folder = tmp_path / "machines" / host
    folder.mkdir(parents=True)
    for name, text in (files or {"configuration.nix": "{ ... }: { }\n"}).items():
        (folder / name).write_text(text)
    return f'nixos = "machines/{host}/configuration.nix"'


def context(check=False):
    return Context(connection=None, masker=Masker(), check=check)


def test_the_host_module_sets_platform_and_state_version_and_imports_the_base(tmp_path):
    path = site(
        tmp_path,
        garage=machine(tmp_path, "garage") + '\nsystem = "aarch64-linux"\nstate_version = "24.05"',
        mastodon=machine(tmp_path, "mastodon"),
    )
    project = load(path)
    files = render_deployment(project.playbook, project.plugins)

    garage, mastodon = files["hosts/garage.nix"], files["hosts/mastodon.nix"]
    assert "./garage/base/configuration.nix\n" in garage
    assert "nixpkgs.hostPlatform = host.system;" in garage  # set in the playbook: as given
    assert "system.stateVersion = host.stateVersion;" in garage
    # defaults yield to the operator's base configuration (nixos-generate-config sets both)
    assert "nixpkgs.hostPlatform = lib.mkDefault host.system;" in mastodon
    assert "system.stateVersion = lib.mkDefault host.stateVersion;" in mastodon
    assert "hosts/spare.nix" not in files
    data = files["data.nix"]
    assert 'system = "aarch64-linux";' in data and 'stateVersion = "24.05";' in data
    assert 'system = "x86_64-linux";' in data and 'stateVersion = "25.05";' in data
    assert 'base = "configuration.nix";' in data

    project = load(site(tmp_path, deployment='state_version = "23.11"'))
    files = render_deployment(project.playbook, project.plugins)
    assert "system.stateVersion = host.stateVersion;" in files["hosts/mastodon.nix"]
    assert 'stateVersion = "23.11";' in files["data.nix"]
    assert "base/" not in files["hosts/mastodon.nix"]  # none given: the run refuses (below)


def test_the_base_configuration_is_copied_with_the_nix_files_beside_it(tmp_path):
    nixos = machine(
        tmp_path,
        "garage",
        {
            "configuration.nix": "{ ... }: { imports = [ ./hardware-configuration.nix ]; }\n",
            "hardware-configuration.nix": "{ ... }: { }\n",
            "README.md": "not Nix\n",
            ".hidden.nix": "an editor's\n",
        },
    )
    (tmp_path / "machines" / "garage" / "sub").mkdir()
    (tmp_path / "machines" / "garage" / "sub" / "deeper.nix").write_text("{ }\n")
    path = site(tmp_path, garage=nixos, mastodon=machine(tmp_path, "mastodon"))
    project = load(path)
    task = project.graph.tasks[RENDER_ID]
    directory = tmp_path / ".fedi-run" / "site"

    assert task.reads == ("hosts.garage.nixos", "hosts.mastodon.nixos")
    changes = perform(task.actions, context()).changes
    assert "hosts/garage/base/configuration.nix" in changes
    assert "hosts/garage/base/hardware-configuration.nix" in changes
    base = directory / "hosts" / "garage" / "base"
    assert sorted(p.name for p in base.iterdir()) == [
        "configuration.nix",
        "hardware-configuration.nix",
    ]
    assert stat.S_IMODE((base / "configuration.nix").stat().st_mode) == 0o600
    assert perform(task.actions, context()).changes == ()

    # read when the task runs: an edit is picked up, a removed sibling removed
    (tmp_path / "machines" / "garage" / "hardware-configuration.nix").unlink()
    (tmp_path / "machines" / "garage" / "configuration.nix").write_text("{ ... }: { }\n")
    changes = perform(task.actions, context()).changes
    assert "hosts/garage/base/configuration.nix" in changes
    assert "removed hosts/garage/base/hardware-configuration.nix" in changes
    # the teardown's switched-off rendering carries the base configurations too
    off = perform(task.undo, context()).changes
    assert (base / "configuration.nix").exists() and "data.nix" in off

    (tmp_path / "machines" / "garage" / "bad name.nix").write_text("{ }\n")
    with pytest.raises(ActionFailed, match=r"bad name\.nix \(beside hosts\.garage\.nixos\)"):
        perform(task.actions, context())


def test_a_host_without_base_configuration_is_refused_before_any_host(tmp_path):
    path = site(tmp_path, garage=machine(tmp_path, "garage"))
    project = load(path)
    for check in (False, True):
        with pytest.raises(PlaybookError) as raised:
            preflight(project, project.select(), ExecutionOptions(check=check))
        [problem] = raised.value.problems
        assert problem.key == "hosts.mastodon.nixos"
        assert "missing; every host the NixOps4 deployment configures" in problem.message

    result = CliRunner().invoke(cli, ["run", str(path), "--no-apply"])
    assert result.exit_code == 2, result.output
    assert "hosts.mastodon.nixos: missing" in result.output
    assert "192.0.2" not in result.output  # no host was contacted

    (tmp_path / "machines" / "garage" / "configuration.nix").unlink()
    with pytest.raises(PlaybookError) as raised:
        preflight(project, project.select(), ExecutionOptions())
    assert [p.key for p in raised.value.problems] == ["hosts.mastodon.nixos", "hosts.garage.nixos"]
    assert "not a readable file" in raised.value.problems[1].message


def test_git_is_needed_to_render_unless_checking(tmp_path, monkeypatch):
    path = site(
        tmp_path, garage=machine(tmp_path, "garage"), mastodon=machine(tmp_path, "mastodon")
    )
    project = load(path)
    import fedi_run.engine.preflight as run

    which = run.shutil.which
    monkeypatch.setattr(run.shutil, "which", lambda name: None if name == "git" else which(name))
    with pytest.raises(MissingTool, match="git is not on PATH"):
        preflight(project, project.select(), ExecutionOptions())
    preflight(project, project.select(), ExecutionOptions(check=True))


def test_the_inputs_are_pinned_and_an_operator_overrides_them(tmp_path):
    for reference in pins.FLAKE_INPUTS.values():
        assert reference.rsplit("/", 1)[1] in (
            pins.NIXPKGS_REV,
            pins.NIXOPS4_REV,
            pins.NIXOPS4_NIXOS_REV,
        )
        assert len(reference.rsplit("/", 1)[1]) == 40
    project = load(site(tmp_path))
    flake = render_deployment(project.playbook, project.plugins)["flake.nix"]
    for name, reference in pins.FLAKE_INPUTS.items():
        assert f'{name}.url = "{reference}";' in flake
    assert 'nixops4.inputs.nixpkgs.follows = "nixpkgs";' in flake
    assert 'nixops4-nixos.inputs.nixpkgs.follows = "nixpkgs";' in flake
    assert "fediversity" not in flake.replace("fedi-run", "")

    mine = "github:NixOS/nixpkgs/0123456789abcdef0123456789abcdef01234567"
    project = load(site(tmp_path, deployment=f'inputs = {{ nixpkgs = "{mine}" }}'))
    flake = render_deployment(project.playbook, project.plugins)["flake.nix"]
    assert f'nixpkgs.url = "{mine}";' in flake
    assert f'nixops4.url = "{pins.FLAKE_INPUTS["nixops4"]}";' in flake

    with pytest.raises(PlaybookError) as raised:
        load(site(tmp_path, deployment='inputs = { nixos = "github:NixOS/nixpkgs" }'))
    [problem] = raised.value.problems
    assert problem.key == "deployment.inputs.nixos"
    assert "expected one of nixops4, nixops4-nixos, nixpkgs" in problem.message
    with pytest.raises(PlaybookError, match=r"deployment\.inputs\.nixpkgs: .*flake reference"):
        load(site(tmp_path, deployment='inputs = { nixpkgs = "not a reference" }'))
