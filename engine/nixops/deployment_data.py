"""``data.nix``: what the rendered deployment's files read, as one pure attribute set.

:func:`deployment_data` is the content of ``data.nix`` as plain data — no function, no import,
no ``lib``; its docstring is the layout, versioned by :data:`DATA_SCHEMA`. It holds the
engine's keys (:data:`ENGINE_KEYS`: the deployment, each rendered host's SSH address, options
and platform, each service's host, domain and secret paths, the initial user without its
password), then each plugin's plain data (hook ``fedi_run_nix_data``, :func:`plugin_data`).
Secrets are named by the path of their file on the host, never by value. ``engine.nixops
.render`` writes it with :data:`DATA_HEADER` above it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedi_run.engine.errors import PlaybookError, Problem
from fedi_run.engine.model.playbook import DEFAULT_PLATFORM, DEFAULT_STATE_VERSION
from fedi_run.engine.nixops.nix import NixModule

if TYPE_CHECKING:
    from fedi_run.engine.model.playbook import HostSection, Playbook
    from fedi_run.engine.plugin.manager import Plugins

DATA_SCHEMA = 1
"""Version of the layout of ``data.nix`` (:func:`deployment_data`)."""

UNSAFE_IN_SSH_OPTIONS = frozenset("'\"`$;&|<>()*?[]{}\\!#\x00")
"""Characters an identity path may not hold: ``sshOpts`` is one string that NixOps4 (and
``NIX_SSHOPTS`` users such as nixos-rebuild) split into words, and a shell may see it."""


def ssh_options(playbook: Playbook, name: str, host: HostSection) -> str:
    """The ``ssh.opts`` of ``host``: its port as ``-o Port=N`` (nixops4-nixos has no port
    option), with ``HostKeyAlias`` so the pinned key — which nixops4-nixos writes into its
    known_hosts file under the bare ``ssh.host``, where ssh would look up ``[address]:port`` —
    still matches; and its identity file."""
    options: list[str] = []
    if host.port != 22:
        options += ["-o", f"Port={host.port}", "-o", f"HostKeyAlias={host.address}"]
    if host.identity:
        if any(character.isspace() for character in host.identity):
            raise PlaybookError(
                [
                    Problem(
                        playbook.origin("hosts", name, "identity"),
                        f"hosts.{name}.identity",
                        f"{host.identity!r} contains whitespace, which NixOps4's ssh options "
                        "cannot carry; move the key to a path without spaces",
                    )
                ]
            )
        unsafe = sorted(set(host.identity) & UNSAFE_IN_SSH_OPTIONS)
        if unsafe:
            raise PlaybookError(
                [
                    Problem(
                        playbook.origin("hosts", name, "identity"),
                        f"hosts.{name}.identity",
                        f"{host.identity!r} contains {' '.join(unsafe)}, which NixOps4's ssh "
                        "options would hand to a shell; move the key to a path of letters, digits "
                        "and '/._-+@,:=~%'",
                    )
                ]
            )
        options += ["-i", host.identity]
    return " ".join(options)


ENGINE_KEYS = ("schema", "deployment", "hosts", "services", "initialUser")
"""The top-level keys of ``data.nix`` that the engine writes; a plugin's data may not use them."""


def plugin_data(plugins: Plugins, playbook: Playbook) -> dict[str, Any]:
    """Every plugin's data for ``data.nix`` (hook ``fedi_run_nix_data``), merged in plugin
    order; a key of :data:`ENGINE_KEYS` or of two plugins is a PluginError naming them."""
    return plugins.nix_data(playbook, reserved=ENGINE_KEYS)


def deployment_data(
    playbook: Playbook,
    modules: Mapping[str, Sequence[tuple[str, NixModule]]],
    extra: Mapping[str, Any] = {},
) -> dict[str, Any]:
    """The content of ``data.nix``, as plain data (``modules``: each host's, from
    :func:`host_modules`; ``extra``: the plugins' data, from :func:`plugin_data`)::

        {
          schema = 1;                                  # DATA_SCHEMA
          deployment = { name; domain; };
          hosts.<host> = {
            address; port; user;
            hostPublicKey;                             # "ssh-ed25519 AAAA…", or null
            identity;                                  # deployer's key file, or null
            sshOpts;                                   # "-o Port=2222 -o HostKeyAlias=…", or ""
            system;                                    # nixpkgs.hostPlatform: "x86_64-linux"
            stateVersion;                              # system.stateVersion: "25.05"
            base;                                      # hosts/<host>/base/<base>, or null
            services = [ "<service>" … ];              # the enabled services on the host
            modules = [ "<module>" … ];                # hosts/<host>/<module>.nix, in order
          };
          services.<service> = {                       # every service a plugin knows
            enable;                                    # whether it is deployed
            host;                                      # its [hosts] entry, or null when absent
            domain;                                    # "<service>.<domain>"
            secrets = { <name> = "<path on the host>"; … };   # of the module named <service>
          };
          initialUser = { username; displayName; email; } or null;
          <key> = <plain data>;                        # each plugin's, in plugin order
        }

    After the engine's keys come the plugins' (``extra``, hook ``fedi_run_nix_data``): the
    acme plugin's ``acme = { server; email; acceptTerms; }``, or ``null`` without ``[acme]``.

    The initial user's password is only ever in the files on the hosts
    (``services.<app>.secrets.initial-user``, JSON with the password), never here.
    """
    hosts = {}
    for name, host in playbook.hosts.items():
        if name not in modules:
            continue
        hosts[name] = {
            "address": host.address,
            "port": host.port,
            "user": host.user,
            "hostPublicKey": host.host_key,
            "identity": host.identity,
            "sshOpts": ssh_options(playbook, name, host),
            "system": host.system or DEFAULT_PLATFORM,
            "stateVersion": state_version(playbook, host),
            "base": Path(host.nixos).name if host.nixos else None,
            "services": [s for s in playbook.enabled if playbook.service_host(s) == name],
            "modules": [module.name for _, module in modules.get(name, ())],
        }
    services = {}
    for name in playbook.services:
        host = playbook.service_host(name)
        secrets: dict[str, str] = {}
        for _, module in modules.get(host, ()):
            if module.name == name:
                secrets = module.secret_paths
        services[name] = {
            "enable": playbook.is_enabled(name),
            "host": host if host in modules else None,
            "domain": playbook.service_domain(name),
            "secrets": secrets,
        }
    user = playbook.initial_user
    data = {
        "schema": DATA_SCHEMA,
        "deployment": {"name": playbook.name, "domain": playbook.domain},
        "hosts": hosts,
        "services": services,
        "initialUser": None
        if user is None
        else {
            "username": user.username,
            "displayName": user.display_name,
            "email": user.email,
        },
    }
    clash = sorted(data.keys() & extra.keys())
    if clash:  # plugin_data refuses these; a caller passing its own is a bug
        raise ValueError(f"data.nix keys of the engine in the plugins' data: {', '.join(clash)}")
    return data | dict(extra)


DATA_HEADER = """\
# What the deployment's files read, as one pure attribute set: no function, no import.
# Rendered by fedi-run from the playbook; rewritten on every run. Secrets are named by the
# path of their file on the host, never by value.
"""


def state_version(playbook: Playbook, host: HostSection) -> str:
    """``system.stateVersion`` of ``host``: its own, ``[deployment]``'s, or the default."""
    return host.state_version or playbook.deployment.state_version or DEFAULT_STATE_VERSION
