"""The rendered deployment against upstream: every option the host modules define and every
NixOps4 attribute the flake uses, checked with the real Nix evaluator against the facts in
engine/nixops/upstream_options.json (tests/nixops/upstream_check.py does the checking).

For each playbook — the example, each service alone, all four services on one host, nothing
enabled, and the teardown's switched-off rendering — the engine renders the deployment, one
``nix-instantiate --eval --strict`` evaluates every host module and the flake's outputs, and the
test fails on a definition upstream does not declare, a value of the wrong type, a removed
option, or a required option left unset; each message names the playbook, host, file, option and
what the fact says with its source. The negative controls plant modules and flakes that upstream
rejects and assert the exact failures, so the check is proven able to fail; the positive ones
plant modules written on nixpkgs' own options and flakes on NixOps4's current interface, which
must pass. Nix missing is a failure with the install hint, never a skip.
"""

from __future__ import annotations

import copy
import shutil
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w
import upstream_check as check

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE = EXAMPLES / "fediversity.toml"
APPS = ("mastodon", "peertube", "pixelfed")
BASE_CONFIGURATION = """\
# A host's own base configuration, as an operator keeps one per machine (test stand-in).
{ ... }:
{
  boot.loader.grub.devices = [ "nodev" ];
  fileSystems."/" = { device = "/dev/vda1"; fsType = "ext4"; };
}
"""
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINrzFex9Ym2pqJEG0kBi/IwRhJ79TQBIwY9MvdtEZ57y"


@pytest.fixture(scope="module")
def facts() -> check.Facts:
    return check.load_facts()


def test_nix_is_installed():
    """The check needs the real evaluator: a missing nix-instantiate is a loud failure."""
    assert shutil.which("nix-instantiate"), check.NIX_HINT
    done = check.nix_instantiate("--eval", "--strict", "--json", "-E", "1 + 1")
    assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr


def test_facts_file_is_complete(facts):
    """Every entry parses (its type is of the vocabulary) and names its source; every removed
    entry carries upstream's message; the facts cover what the issue names."""
    for scope, entries in facts.by_scope.items():
        for fact in entries:
            assert fact.repository and len(fact.commit) == 40 and fact.file, (scope, fact.path)
            assert fact.line or fact.anchor, f"{scope} {fact.path}: neither line nor anchor"
            if fact.removed:
                assert fact.message, f"{scope} {fact.path}: removed without upstream's message"
    paths = {f.path for f in facts.by_scope["nixos"]}
    for needed in (
        "services.mastodon.otpSecretFile",
        "services.mastodon.streamingProcesses",
        "services.mastodon.localDomain",
        "services.mastodon.smtp.fromAddress",
        "services.peertube.secrets.secretsFile",
        "services.pixelfed.secretFile",
        "services.garage.package",
        "services.nginx.virtualHosts.<name>.enableACME",
        "services.nginx.virtualHosts.<name>.forceSSL",
        "security.acme.defaults.server",
        "security.pki.certificates",
        "systemd.services.<name>.serviceConfig",
        "nixpkgs.hostPlatform",
        "system.stateVersion",
    ):
        assert needed in paths, needed
    flake = {f.path: f for f in facts.by_scope["flake"]}
    assert flake["outputs.nixops4"].required
    for gone in (
        "outputs.nixops4Deployments",
        "nixops4.lib.mkDeployment",
        "nixops4-nixos.modules.nixops4Resource.nixos",
    ):
        assert flake[gone].removed, gone
    assert {f.path for f in facts.by_scope["component"] if f.removed} == {"resources"}


# --- the playbooks ----------------------------------------------------------------------------


def write_playbook(directory: Path, name: str, data: dict) -> Path:
    """``data`` as ``<directory>/<name>.toml``, every host given a base configuration (a
    playbook's ``[hosts.<host>] nixos``) unless it names one, and the initial user's password
    file in place."""
    data = copy.deepcopy(data)
    for host, table in data.get("hosts", {}).items():
        if "nixos" not in table:
            base = directory / "machines" / host / "configuration.nix"
            base.parent.mkdir(parents=True, exist_ok=True)
            base.write_text(BASE_CONFIGURATION)
            table["nixos"] = str(base.relative_to(directory))
    password = data.get("initial_user", {}).get("password_file")
    if password:
        (directory / password).parent.mkdir(parents=True, exist_ok=True)
        (directory / password).write_text("canary-password-7d1b0f4c2a9e\n")
    path = directory / f"{name}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def with_services(data: dict, enabled: set[str]) -> dict:
    """The playbook ``data`` with exactly ``enabled`` switched on."""
    data = copy.deepcopy(data)
    services = data.setdefault("services", {})
    for name, table in services.items():
        table["enable"] = name in enabled
    for name in enabled:
        services.setdefault(name, {})["enable"] = True
    return data


def one_host(data: dict) -> dict:
    """All four services on one host, ``web``."""
    data = with_services(data, set(APPS))
    first = data["hosts"].get("mastodon") or next(iter(data["hosts"].values()))
    data["hosts"] = {"web": {"address": first["address"], "host_key": first.get("host_key", KEY)}}
    for name in (*APPS, "garage"):
        data["services"].setdefault(name, {})["host"] = "web"
    return data


PLAYBOOKS = {
    "examples/fediversity.toml": (lambda d: d, False),
    "mastodon alone": (lambda d: with_services(d, {"mastodon"}), False),
    "peertube alone": (lambda d: with_services(d, {"peertube"}), False),
    "pixelfed alone": (lambda d: with_services(d, {"pixelfed"}), False),
    "garage alone": (lambda d: with_services(d, {"garage"}), False),
    "all four on one host": (one_host, False),
    "nothing enabled": (lambda d: with_services(d, set()), False),
    "teardown (switched off)": (lambda d: d, True),
}


def render(playbook: Path, switched_off: bool) -> dict[str, str]:
    """The engine's rendering of ``playbook``: relative path → text."""
    from fedi_run.engine.nixops.render import render_deployment
    from fedi_run.engine.plugin.manager import Plugins
    from fedi_run.engine.project import load_project

    project = load_project(playbook, (), plugins=Plugins.load(()), apply=False)
    return render_deployment(project.playbook, project.plugins, switched_off=switched_off)


def base_dir() -> str:
    """The folder of a host's base configuration in the deployment (``hosts/<host>/base/``):
    the operator's own file, copied when the task runs, not checked here."""
    from fedi_run.engine.nixops import render as render_module

    return getattr(render_module, "BASE_DIR", "base")


def write_files(directory: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize("label", list(PLAYBOOKS))
def test_rendered_deployment_matches_upstream(label, tmp_path, facts):
    """The deployment the engine renders for ``label``, against the upstream facts."""
    make, switched_off = PLAYBOOKS[label]
    workdir = tmp_path / "examples"
    shutil.copytree(EXAMPLES, workdir, ignore=shutil.ignore_patterns(".fedi-run", "__pycache__"))
    data = make(tomllib.loads(EXAMPLE.read_text()))
    playbook = write_playbook(workdir, "playbook", data)
    try:
        files = render(playbook, switched_off)
    except Exception as error:  # the rendering itself is part of what is checked
        pytest.fail(f"[{label}] the engine could not render the deployment: {error!r}")
    directory = tmp_path / "deployment"
    write_files(directory, files)
    hosts = sorted(
        p[len("hosts/") : -len(".nix")]
        for p in files
        if p.count("/") == 1 and p.startswith("hosts/")
    )
    assert hosts, f"[{label}] the rendering has no hosts/<host>.nix: {sorted(files)}"
    skip = [f"hosts/{host}/{base_dir()}/" for host in hosts]
    failures = check.check_deployment(label, directory, hosts, facts, skip=skip)
    assert not failures, f"{len(failures)} failure(s):\n\n" + "\n\n".join(failures)


# --- the controls -----------------------------------------------------------------------------

HOST_FILE = """\
{ ... }:
{
  imports = [ ./web/planted.nix ./web/base/configuration.nix ];
  nixpkgs.hostPlatform = "x86_64-linux";
  system.stateVersion = "25.05";
}
"""
MASTODON = """\
{ config, lib, ... }:
{
  services.mastodon = {
    enable = true;
    localDomain = "mastodon.example.org";
    streamingProcesses = 2;
    smtp.fromAddress = "noreply@mastodon.example.org";
    configureNginx = true;
  };
}
"""
MASTODON_SOURCE = "NixOS/nixpkgs@00a3745a nixos/modules/services/web-apps/mastodon.nix"


def planted(tmp_path: Path, facts: check.Facts, module: str, host_file: str = HOST_FILE):
    """The failures of a deployment whose one host ``web`` imports ``module``."""
    directory = tmp_path / "planted"
    write_files(directory, {"hosts/web.nix": host_file, "hosts/web/planted.nix": module})
    return check.check_deployment("planted", directory, ["web"], facts, skip=["hosts/web/base/"])


WHERE = "[planted] host web, hosts/web/planted.nix"


def test_control_removed_option(tmp_path, facts):
    module = MASTODON.replace(
        "configureNginx = true;", 'otpSecretFile = "/var/lib/fedi-run/p/secrets/mastodon/otp";'
    )
    assert planted(tmp_path, facts, module) == [
        f'{WHERE}: services.mastodon.otpSecretFile: removed upstream: "The OTP_SECRET option was '
        f'removed from Mastodon in version 4.4.0" ({MASTODON_SOURCE}:283)'
    ]


def test_control_wrong_type(tmp_path, facts):
    module = MASTODON.replace("streamingProcesses = 2;", 'streamingProcesses = "2";')
    assert planted(tmp_path, facts, module) == [
        f'{WHERE}: services.mastodon.streamingProcesses: the string "2" is not of type '
        "positive-int (upstream: positive-int, required while services.mastodon.enable; "
        f"{MASTODON_SOURCE}:338)"
    ]


def test_control_undeclared_option(tmp_path, facts):
    module = "{ ... }: { fediversity.mastodon.enable = true; }\n"
    assert planted(tmp_path, facts, module) == [
        f"{WHERE}: fediversity.mastodon.enable: upstream declares no such option at the top "
        "level; it declares: _module, assertions, environment, networking, nixpkgs, security, "
        "services, system, systemd, users, warnings. engine/nixops/upstream_options.json "
        "[nixos] lists every option the rendering may define: if upstream declares this one, "
        "add it there with its repository, commit, file and line"
    ]


def test_control_required_option_unset(tmp_path, facts):
    module = MASTODON.replace('    localDomain = "mastodon.example.org";\n', "")
    assert planted(tmp_path, facts, module) == [
        f"{WHERE}: services.mastodon.localDomain: required while services.mastodon.enable is "
        "true, but no module of the host defines it (upstream: str, required while "
        f"services.mastodon.enable; {MASTODON_SOURCE}:458)"
    ]


def test_control_under_false_mkif(tmp_path, facts):
    """Under a false mkIf an option must still exist (as NixOS has it), but its value is not
    used: not type-checked, not a removed option's use, not counted as set."""
    module = """\
{ lib, ... }:
{
  services.mastodon = lib.mkIf false {
    streamingProcesses = "two";
    otpSecretFile = "/x";
    fediversity = true;
  };
}
"""
    failures = planted(tmp_path, facts, module)
    assert len(failures) == 1, failures
    assert failures[0].startswith(
        f"{WHERE}: services.mastodon.fediversity: upstream declares no such option below "
        "services.mastodon; it declares: "
    )
    assert f"({MASTODON_SOURCE})" in failures[0]


GOOD_MODULES = """\
# Written on nixpkgs' own options, as the plugins' modules should be.
{ config, lib, pkgs, ... }:
let
  secrets = "/var/lib/fedi-run/p/secrets";
  credentials = "/run/credentials";
in
{
  services.garage = {
    enable = true;
    package = pkgs.garage_2;
    settings = {
      replication_factor = 1;
      rpc_secret_file = "${credentials}/garage.service/rpc-secret";
      admin.admin_token_file = "${credentials}/garage.service/admin-token";
    };
  };
  systemd.services.garage.serviceConfig.LoadCredential = [
    "rpc-secret:${secrets}/garage/rpc-secret"
    "admin-token:${secrets}/garage/admin-token"
  ];
  systemd.services.fedi-run-garage-keys = {
    description = "fedi-run: Garage keys and buckets";
    after = [ "garage.service" ];
    requires = [ "garage.service" ];
    wantedBy = [ "multi-user.target" ];
    path = [ config.services.garage.package ];
    serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
    script = "garage status";
  };
  services.mastodon = {
    enable = true;
    localDomain = "mastodon.example.org";
    streamingProcesses = 2;
    smtp = { fromAddress = "noreply@mastodon.example.org"; host = "smtp.example.org"; port = 587; };
    configureNginx = true;
    secretKeyBaseFile = "${credentials}/mastodon-init-dirs.service/secret-key-base";
    extraConfig.S3_ENABLED = "true";
    extraEnvFiles = [ "${secrets}/mastodon/s3.env" ];
  };
  services.peertube = {
    enable = true;
    localDomain = "peertube.example.org";
    enableWebHttps = true;
    listenWeb = 443;
    configureNginx = true;
    database.createLocally = true;
    redis.createLocally = true;
    secrets.secretsFile = "${credentials}/peertube.service/secrets";
    settings.object_storage.enabled = true;
  };
  services.pixelfed = {
    enable = true;
    domain = "pixelfed.example.org";
    secretFile = "${secrets}/pixelfed/env";
    nginx = { enableACME = true; forceSSL = true; };
    settings.FILESYSTEM_CLOUD = "s3";
  };
  services.nginx.virtualHosts = lib.genAttrs [ "mastodon.example.org" "peertube.example.org" ] (_: {
    enableACME = lib.mkDefault true;
    forceSSL = true;
  }) // {
    "s3.example.org" = {
      enableACME = true;
      forceSSL = true;
      locations."/".proxyPass = "http://127.0.0.1:3900";
    };
  };
  security.acme = {
    acceptTerms = true;
    defaults = { server = "https://acme.example.org/dir"; email = "ops@example.org"; };
  };
  security.pki.certificates = [ "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----" ];
  users.users.fedi-run = { isSystemUser = true; group = "fedi-run"; };
  users.groups.fedi-run = { };
}
"""


def test_control_modules_on_nixpkgs_options_pass(tmp_path, facts):
    assert planted(tmp_path, facts, GOOD_MODULES) == []


def test_control_host_without_platform(tmp_path, facts):
    host_file = HOST_FILE.replace('  nixpkgs.hostPlatform = "x86_64-linux";\n', "")
    failures = planted(tmp_path, facts, MASTODON, host_file)
    assert failures == [
        "[planted] host web, all modules: nixpkgs.hostPlatform: required, but no module of the "
        "host defines it (upstream: either str attrs, required; NixOS/nixpkgs@026ffb9e "
        "nixos/modules/misc/nixpkgs.nix, at 'hostPlatform = lib.mkOption {')"
    ]


FLAKE_2025 = """\
{
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
    nixops4.url = "github:nixops4/nixops4";
    nixops4-nixos.url = "github:nixops4/nixops4-nixos";
  };
  outputs = inputs: {
    nixops4Deployments.planted = inputs.nixops4.lib.mkDeployment {
      modules = [
        ({ providers, ... }: {
          providers.local = inputs.nixops4.modules.nixops4Provider.local;
          resources.web = {
            type = providers.local.exec;
            imports = [ inputs.nixops4-nixos.modules.nixops4Resource.nixos ];
            nixpkgs = inputs.nixpkgs;
            ssh = { host = "203.0.113.11"; hostPublicKey = "KEY"; };
            nixos.module = { imports = [ ./hosts/web.nix ]; };
          };
        })
      ];
    };
  };
}
""".replace("KEY", KEY)
FLAKE_2026 = """\
{
  inputs = {
    nixops4-nixos.url = "github:nixops4/nixops4-nixos/18e3a695e544524081d6c0bd29cc73f4d540739b";
    nixops4.follows = "nixops4-nixos/nixops4";
    nixpkgs.url = "github:NixOS/nixpkgs/b5aa0fbd538984f6e3d201be0005b4463d8b09f8";
  };
  outputs = inputs: {
    nixops4 = inputs.nixops4.lib.mkRoot {
      modules = [
        ({ providers, ... }: {
          providers.local = inputs.nixops4.modules.nixops4Provider.local;
          members.planted.members.web = {
            type = providers.local.exec;
            imports = [ inputs.nixops4-nixos.modules.nixops4Component.nixos ];
            nixpkgs = inputs.nixpkgs;
            ssh = { host = "203.0.113.11"; opts = "-o Port=2222"; hostPublicKey = "KEY"; };
            nixos.module = { imports = [ ./hosts/web.nix ]; };
          };
        })
      ];
    };
  };
}
""".replace("KEY", KEY)


def planted_flake(tmp_path: Path, facts: check.Facts, flake: str) -> list[str]:
    directory = tmp_path / "planted"
    write_files(
        directory,
        {"flake.nix": flake, "hosts/web.nix": HOST_FILE, "hosts/web/planted.nix": MASTODON},
    )
    return check.check_deployment("planted", directory, ["web"], facts, skip=["hosts/web/base/"])


N4_OLD = "nixops4/nixops4@843db57b"


def test_control_flake_on_the_2025_interface(tmp_path, facts):
    by_path = {f.path: f for f in facts.by_scope["flake"]}
    component = {f.path: f for f in facts.by_scope["component"]}

    def removed(fact):
        return f'removed upstream: "{fact.message}" ({fact.source})'

    where = "[planted] flake.nix"
    pin = (
        "names no revision: the first apply would lock whatever upstream's HEAD is; pin it "
        "(known to work: "
    )
    assert planted_flake(tmp_path, facts, FLAKE_2025) == [
        f"{where}: outputs.nixops4: not defined, but required (upstream: nixops4-root, required; "
        "nixops4/nixops4@548be5db rust/nixops4-eval/src/eval.rs:208)",
        f"{where}: outputs.nixops4Deployments: {removed(by_path['outputs.nixops4Deployments'])}",
        f"{where}: nixops4-nixos.modules.nixops4Resource.nixos: "
        + removed(by_path["nixops4-nixos.modules.nixops4Resource.nixos"]),
        f"{where}: nixops4.lib.mkDeployment: {removed(by_path['nixops4.lib.mkDeployment'])}",
        f"{where} (outputs.nixops4Deployments.planted): resources: "
        + removed(component["resources"]),
        f'{where}: inputs.nixops4: "github:nixops4/nixops4" {pin}'
        "github:nixops4/nixops4/548be5db9291357882141742845f67d72e9d7ab0, "
        "nixops4/nixops4-nixos@18e3a695 dev/flake.lock:444)",
        f'{where}: inputs.nixops4-nixos: "github:nixops4/nixops4-nixos" {pin}'
        "github:nixops4/nixops4-nixos/18e3a695e544524081d6c0bd29cc73f4d540739b, "
        "nixops4/nixops4-nixos@18e3a695 flake.nix)",
        f'{where}: inputs.nixpkgs: "github:NixOS/nixpkgs/nixos-25.05" {pin}'
        "github:NixOS/nixpkgs/b5aa0fbd538984f6e3d201be0005b4463d8b09f8, "
        "nixops4/nixops4-nixos@18e3a695 flake.lock:27)",
    ]
    assert N4_OLD in by_path["nixops4.lib.mkDeployment"].source


def test_control_flake_on_the_current_interface_passes(tmp_path, facts):
    assert planted_flake(tmp_path, facts, FLAKE_2026) == []


def test_control_flake_member_mistakes(tmp_path, facts):
    flake = (
        FLAKE_2026.replace('opts = "-o Port=2222"; ', "port = 2222; ")
        .replace('hostPublicKey = "' + KEY + '"; ', "")
        .replace("./hosts/web.nix", "./hosts/other.nix")
    )
    where = "[planted] flake.nix (outputs.nixops4.members.planted.members.web)"
    source = "nixops4/nixops4-nixos@18e3a695 modules/nixops4Resource/nixos.nix"
    failures = planted_flake(tmp_path, facts, flake)
    assert failures[0].startswith(f"{where}: ssh.port: upstream declares no such option below ssh")
    assert failures[1:] == [
        f"{where}: ssh.hostPublicKey: required by a member that imports "
        "nixops4-nixos.modules.nixops4Component.nixos, but not defined (upstream: str, required; "
        f"{source}:42)",
        "[planted] flake.nix: no nixops4-nixos member's nixos.module imports hosts/web.nix: the "
        "modules checked here would not be deployed",
    ]


def test_the_check_is_fast(tmp_path, facts):
    """One playbook's evaluation is one nix-instantiate call, well under a second."""
    started = time.monotonic()
    planted(tmp_path, facts, GOOD_MODULES)
    assert time.monotonic() - started < 5


def test_control_option_named_in_a_string(tmp_path, facts):
    """The modules are evaluated, not grepped: an option spelled inside a string is no
    definition."""
    module = '{ ... }: { environment.etc."note".text = "services.mastodon.otpSecretFile = 1;"; }\n'
    assert planted(tmp_path, facts, module) == []
