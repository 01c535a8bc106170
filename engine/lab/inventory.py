"""The lab's inventory (TOML for ``fedi-run -i``) and ``known_hosts`` file, rendered from state.

The inventory has exactly these keys::

    [hosts.<name>]          # one table per lab host
    address = "127.0.0.2"
    port = 22
    user = "root"
    host_key = "ssh-ed25519 AAAA…"        # pinned public host key
    identity = "/abs/.fedi-lab/deployer/id_ed25519"

    [acme]                  # only when the lab runs Pebble
    server = "https://127.0.0.1:14000/dir"
    ca_file = "/abs/.fedi-lab/acme/ca.pem"

Strings are written as JSON strings, which are valid TOML basic strings (every control
character and non-ASCII character escaped); host names are valid bare keys by construction.
"""

from __future__ import annotations

import json

from fedi_run.engine.lab.state import LabState


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
        ]
    if state.acme is not None:
        lines += [
            "",
            "[acme]",
            f"server = {_string(state.acme.server)}",
            f"ca_file = {_string(state.acme.ca_file)}",
        ]
    return "\n".join(lines) + "\n"


def render_known_hosts(state: LabState) -> str:
    """An OpenSSH ``known_hosts`` file pinning each host's key to its address."""
    lines = []
    for host in state.hosts:
        name = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
        lines.append(f"{name} {host.host_key}")
    return "".join(f"{line}\n" for line in lines)
