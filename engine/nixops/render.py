"""The NixOps4 deployment: rendered from the playbook, written beside it, applied last.

:func:`render_deployment` is a pure function of the playbook and the plugins (run when the task
graph is built); it returns the deployment's files, path → text:

``flake.nix``
    NixOps4's form (``outputs.nixops4Deployments.<name>``, built with ``nixops4.lib.mkDeployment``):
    one nixops4-nixos resource per host that some plugin configures — a service's host, its
    service enabled or not, so a switched-off service is switched off there; a host only the
    operator's own tasks use is left out, never reconfigured — with the host's SSH address,
    user, options and pinned public key, and the NixOS module ``hosts/<host>.nix`` (beside the
    Fediversity NixOS modules). The flake's inputs are :data:`FLAKE_INPUTS`.
``data.nix``
    One pure attribute set — no function, no import, no ``lib`` — holding what the other files
    read (:func:`deployment_data` documents it). ``nix-instantiate --eval --strict`` of it is
    the playbook's data.
``hosts/<host>.nix``
    The host's NixOS module: imports each plugin's module for it and sets
    ``fediversity.domain``.
``hosts/<host>/<module>.nix``
    Each plugin's :class:`~fedi_run.engine.nixops.nix.NixModule` for the host (hook
    ``fedi_run_nix_modules``).

Secret files are named by their path on the host, never by value: nothing rendered ever sees a
secret, and the directory is copied into the world-readable Nix store by ``nixops4 apply``.

With ``switched_off=True`` the plugins see the playbook with no service enabled, so applying
that rendering switches every service off: a teardown's first step.

:func:`write` is the :class:`~fedi_run.engine.planning.operations.Call` function that puts the
files in place (``.fedi-run/<name>/`` beside the playbook) and :func:`render_task` the
``nixops4.render`` task that carries both renderings.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedi_run.engine.errors import PlaybookError, Problem
from fedi_run.engine.nixops.nix import NixModule, render_template, to_nix
from fedi_run.engine.planning.operations import Call
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.private_files import make_private_dirs, write_atomically

if TYPE_CHECKING:
    from fedi_run.engine.execute.perform import Context
    from fedi_run.engine.model.playbook import HostSection, Playbook
    from fedi_run.engine.plugin.manager import Plugins

RENDER_ID = "nixops4.render"
PACKAGE = "fedi_run.engine.nixops"
DATA_SCHEMA = 1
"""Version of the layout of ``data.nix`` (:func:`deployment_data`)."""

FLAKE_INPUTS = {
    "nixpkgs": "github:NixOS/nixpkgs/nixos-25.05",
    "nixops4": "github:nixops4/nixops4",
    "nixops4-nixos": "github:nixops4/nixops4-nixos",
    "fediversity": "git+https://git.fediversity.eu/Fediversity/Fediversity",
}
"""The flake inputs of every rendered deployment: NixOS, NixOps4, its NixOS resource, and the
Fediversity NixOS modules (``nixosModules.fediversity``)."""
FLAKE_FOLLOWS = {"nixops4": "nixpkgs", "nixops4-nixos": "nixpkgs"}
"""Inputs whose own ``nixpkgs`` follows the deployment's."""

MANIFEST = ".fedi-run-files.json"
"""The list of files fedi-run wrote into the deployment directory, so a file that is no longer
rendered is removed — and nothing else ever is (``flake.lock`` stays)."""
HOST_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
UNSAFE_IN_SSH_OPTIONS = frozenset("'\"`$;&|<>()*?[]{}\\!#\x00")
"""Characters an identity path may not hold: ``sshOpts`` is one string that NixOps4 (and
``NIX_SSHOPTS`` users such as nixos-rebuild) split into words, and a shell may see it."""
PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


# --- the hook ---------------------------------------------------------------------------------


def host_modules(plugins: Plugins, playbook: Playbook, host: str) -> list[tuple[str, NixModule]]:
    """Every plugin's modules for ``host``, as ``(plugin, module)``; names unique on the host
    (see :func:`~fedi_run.engine.nixops.nix.collect_modules` for the checks)."""
    return plugins.nix_modules(playbook, host)


# --- rendering --------------------------------------------------------------------------------


def ssh_options(playbook: Playbook, name: str, host: HostSection) -> str:
    """The ``ssh.opts`` of ``host``: its port (with ``HostKeyAlias`` so the pinned key, which
    nixops4-nixos records under the bare address, still matches) and its identity file."""
    options: list[str] = []
    if host.port != 22:
        options += ["-p", str(host.port), "-o", f"HostKeyAlias={host.address}"]
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


def deployment_data(
    playbook: Playbook, modules: Mapping[str, Sequence[tuple[str, NixModule]]]
) -> dict[str, Any]:
    """The content of ``data.nix``, as plain data (``modules``: each host's, from
    :func:`host_modules`)::

        {
          schema = 1;                                  # DATA_SCHEMA
          deployment = { name; domain; };
          hosts.<host> = {
            address; port; user;
            hostPublicKey;                             # "ssh-ed25519 AAAA…", or null
            identity;                                  # deployer's key file, or null
            sshOpts;                                   # "-p 2222 -o HostKeyAlias=… -i …", or ""
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
          acme = { server; email; acceptTerms; } or null;
        }

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
    acme = playbook.section("acme")
    return {
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
        "acme": None
        if acme is None
        else {
            "server": acme.server,
            "email": acme.email,
            "acceptTerms": acme.accept_terms,
        },
    }


DATA_HEADER = """\
# What the deployment's files read, as one pure attribute set: no function, no import.
# Rendered by fedi-run from the playbook; rewritten on every run. Secrets are named by the
# path of their file on the host, never by value.
"""


def render_deployment(
    playbook: Playbook, plugins: Plugins, switched_off: bool = False
) -> dict[str, str]:
    """The NixOps4 deployment of ``playbook``: relative path → file text (see the module
    docstring). With ``switched_off`` every service is rendered switched off."""
    if switched_off:
        playbook = replace(playbook, enabled={})
    modules = {}
    for host in playbook.hosts:
        if not HOST_NAME.fullmatch(host):  # guaranteed by the playbook model; paths rely on it
            raise PlaybookError(
                [Problem(playbook.source, f"hosts.{host}", "not a plain host name")]
            )
        found = host_modules(plugins, playbook, host)
        if found:  # a host no plugin configures is not part of the NixOps4 deployment
            modules[host] = found
    files = {
        "flake.nix": render_template(
            PACKAGE,
            "flake.nix.j2",
            name=playbook.name,
            source=str(playbook.source),
            hosts=list(modules),
            inputs=FLAKE_INPUTS,
            follows=FLAKE_FOLLOWS,
        ),
        "data.nix": DATA_HEADER + to_nix(deployment_data(playbook, modules)) + "\n",
    }
    for host, host_mods in modules.items():
        files[f"hosts/{host}.nix"] = render_template(
            PACKAGE,
            "host.nix.j2",
            host=host,
            modules=[module.name for _, module in host_mods],
        )
        for _, module in host_mods:
            text = module.text if module.text.endswith("\n") else module.text + "\n"
            files[f"hosts/{host}/{module.name}.nix"] = text
    return files


# --- writing ----------------------------------------------------------------------------------


def _check_relative(relative: str) -> tuple[str, ...]:
    parts = tuple(relative.split("/"))
    if not relative.endswith(".nix") or not all(PATH_PART.fullmatch(part) for part in parts):
        raise ValueError(f"not a file fedi-run renders: {relative!r}")
    return parts


def _read_manifest(directory: Path) -> set[str]:
    try:
        listed = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(listed, list):
        return set()
    known = set()
    for entry in listed:
        try:
            if isinstance(entry, str):
                _check_relative(entry)
                known.add(entry)
        except ValueError:
            continue
    return known


def write(context: Context, directory: str, files: Iterable[tuple[str, str]]) -> list[str]:
    """Put the rendered ``files`` (``(relative path, text)`` pairs) into ``directory``.

    Each changed file is written to a temporary name and renamed (directories 0700, files
    0600); a ``.nix`` file fedi-run wrote earlier (see :data:`MANIFEST`) that is no longer
    rendered is removed, and nothing else is. Returns what changed — the relative paths
    written and ``removed <path>`` — empty when the directory already holds exactly these
    files. With ``context.check`` nothing is written, only reported.
    """
    from fedi_run.engine.execute.perform import ActionFailed

    root = Path(directory)
    wanted: dict[str, bytes] = {}
    for relative, text in files:
        try:
            _check_relative(relative)
        except ValueError as error:
            raise ActionFailed(str(error)) from None
        wanted[relative] = text.encode("utf-8")
    previous = _read_manifest(root)
    changes: list[str] = []
    try:
        if not context.check:
            make_private_dirs(root.parent, narrow=True)
            make_private_dirs(root, narrow=True)
        for relative, data in wanted.items():
            path = root / relative
            try:  # a symlink is never the same: lstat's mode of one is 0777
                same = stat.S_IMODE(path.lstat().st_mode) == 0o600 and path.read_bytes() == data
            except OSError:
                same = False
            if same:
                continue
            changes.append(relative)
            if not context.check:
                for parent in reversed(path.relative_to(root).parents[:-1]):
                    make_private_dirs(root / parent, narrow=True)
                write_atomically(path, data)
        for relative in sorted(previous - wanted.keys()):
            path = root / relative
            if not (path.is_file() or path.is_symlink()):
                continue
            changes.append(f"removed {relative}")
            if not context.check:
                path.unlink()
                parent = path.parent
                while parent != root and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
        if not context.check and (changes or previous != set(wanted)):
            listing = json.dumps(sorted(wanted), indent=1) + "\n"
            write_atomically(root / MANIFEST, listing.encode())
    except OSError as error:
        raise ActionFailed(
            f"cannot write the deployment into {directory}: {error.strerror or error}"
            + (f" ({error.filename})" if error.filename else "")
        ) from None
    return changes


# --- the task ---------------------------------------------------------------------------------


def write_call(directory: Path | str, files: Mapping[str, str]) -> Call:
    """The :class:`Call` that writes ``files`` into ``directory``."""
    return Call(
        f"{__name__}:write",
        (("directory", str(directory)), ("files", tuple(sorted(files.items())))),
    )


def render_call(
    playbook: Playbook, plugins: Plugins, directory: Path | str, switched_off: bool = False
) -> Call:
    """The :class:`Call` that writes the deployment (``switched_off``: with every service
    off) into ``directory`` — rendered now, written when the task runs."""
    return write_call(directory, render_deployment(playbook, plugins, switched_off=switched_off))


def render_task(
    playbook: Playbook,
    plugins: Plugins,
    directory: Path | str,
    requires: Iterable[str] = (),
    switch_off: Call | None = None,
) -> Task:
    """``nixops4.render``: write the deployment into ``directory``; its undo writes the
    switched-off rendering (``switch_off``, rendered here when not given) so the apply after it
    switches every service off."""
    if switch_off is None:
        switch_off = render_call(playbook, plugins, directory, switched_off=True)
    return Task(
        id=RENDER_ID,
        host=None,
        requires=tuple(requires),
        tags=("apply", "render"),
        description=f"render the NixOps4 deployment {playbook.name} into {directory}",
        actions=(render_call(playbook, plugins, directory),),
        undo=(switch_off,),
    )
