"""The lab's inventory (TOML for ``fedi-run -i``) and ``known_hosts`` file, rendered from state.

The inventory has exactly these keys::

    [hosts.<name>]          # one table per lab host
    address = "127.0.0.2"
    port = 22
    user = "root"
    host_key = "ssh-ed25519 AAAA…"        # pinned public host key
    identity = "/abs/.fedi-lab/deployer/id_ed25519"
    nixos = "/abs/.fedi-lab/nixos/<name>/configuration.nix"   # the host's base configuration

    [acme]                  # only when the lab runs Pebble
    server = "https://127.0.0.1:14000/dir"
    ca_file = "/abs/.fedi-lab/acme/ca.pem"

Strings are written as JSON strings, which are valid TOML basic strings (every control
character and non-ASCII character escaped); host names are valid bare keys by construction.

Each host's ``nixos`` is the base NixOS configuration the rendered NixOps4 deployment imports
for it (docs/nixops.md): the lab writes one per host (:func:`render_base_configuration`), in a
directory of its own, since the deployment copies every ``.nix`` file beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from fedi_run.engine.lab.state import LabState

BASE_DIR = "nixos"
"""``DIR/nixos/<name>/configuration.nix``: each lab host's base NixOS configuration."""


def _string(value: object) -> str:
    return json.dumps(str(value), ensure_ascii=True)


def render(state: LabState) -> str:
    """The inventory TOML for ``state``."""
    lines = [f"# fedi-run lab inventory ({state.dir}); pass it with -i"]
    for host in state.hosts:
        lines += [
            "",
            f"[hosts.{host.name}]",
            f"address = {_string(host.address)}",
            f"port = {int(host.port)}",
            f"user = {_string(host.user)}",
            f"host_key = {_string(host.host_key)}",
            f"identity = {_string(state.identity)}",
            f"nixos = {_string(base_configuration_path(state, host.name))}",
        ]
    if state.acme is not None:
        lines += [
            "",
            "[acme]",
            f"server = {_string(state.acme.server)}",
            f"ca_file = {_string(state.acme.ca_file)}",
        ]
    return "\n".join(lines) + "\n"


def base_configuration_path(state: LabState, name: str) -> Path:
    """Where the lab writes the base NixOS configuration of its host ``name``."""
    return state.dir / BASE_DIR / name / "configuration.nix"


def render_base_configuration(name: str) -> str:
    """The base NixOS configuration of the lab host ``name``: the least that makes a NixOS
    configuration complete without hardware (a container: no boot loader, no file systems),
    and the host's name. A lab host is not a NixOS machine; this is only ever rendered."""
    return (
        f"# The base NixOS configuration of the lab host {name}, written by `fedi-run lab up`.\n"
        "# A lab host is an sshd in namespaces of its own, not a NixOS machine: this is the least\n"
        "# a NixOS configuration needs without hardware, so the rendered deployment is complete.\n"
        "# A real host names its own (hardware, boot, file systems, networking): docs/nixops.md.\n"
        "{ ... }:\n"
        "{\n"
        "  boot.isContainer = true;\n"
        f"  networking.hostName = {_string(name)};\n"
        "}\n"
    )


def render_known_hosts(state: LabState) -> str:
    """An OpenSSH ``known_hosts`` file pinning each host's key to its address."""
    lines = []
    for host in state.hosts:
        name = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
        lines.append(f"{name} {host.host_key}")
    return "".join(f"{line}\n" for line in lines)
