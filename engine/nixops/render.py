"""The NixOps4 deployment: rendered from the playbook, written beside it, applied last.

:func:`render_deployment` is a pure function of the playbook and the plugins (run when the task
graph is built); it returns the deployment's files, path → text:

``flake.nix``
    NixOps4's root, ``outputs.nixops4 = nixops4.lib.mkRoot { … }``, with one member named
    after the deployment (``nixops4 apply <name>`` applies exactly it) whose members are the
    hosts: one nixops4-nixos component (``modules.nixops4Component.nixos``) per host that some
    plugin configures — a service's host, its service enabled or not, so a switched-off service
    is switched off there; a host only the operator's own tasks use is left out, never
    reconfigured — with the host's SSH address, user, options and pinned public key, and the
    NixOS module ``hosts/<host>.nix``. The flake's inputs are :func:`flake_inputs`: the pins of
    :mod:`~fedi_run.engine.nixops.pins`, each replaceable from ``[deployment] inputs``.
``data.nix``
    One pure attribute set — no function, no import, no ``lib`` — holding what the other files
    read (``engine.nixops.deployment_data`` documents it): the engine's keys, then each
    plugin's plain data (hook ``fedi_run_nix_data``). ``nix-instantiate --eval --strict`` of it
    is the playbook's data.
``hosts/<host>.nix``
    The host's NixOS module: imports the operator's base configuration
    (``hosts/<host>/base/``) and each plugin's module for it, and sets ``nixpkgs.hostPlatform``
    and ``system.stateVersion``.
``hosts/<host>/base/*.nix``
    The operator's own base configuration of the host (``[hosts.<host>] nixos``: hardware,
    boot, file systems, networking) and the other ``.nix`` files of its directory, copied when
    the task runs (:func:`write`); not part of :func:`render_deployment`'s result.
``hosts/<host>/<module>.nix``
    Each plugin's :class:`~fedi_run.engine.nixops.nix.NixModule` for the host (hook
    ``fedi_run_nix_modules``).

Secret files are named by their path on the host, never by value: nothing rendered ever sees a
secret, and the directory is copied into the world-readable Nix store by ``nixops4 apply``.

With ``switched_off=True`` the plugins see the playbook with no service enabled, so applying
that rendering switches every service off: a teardown's first step.

:func:`write` is the :class:`~fedi_run.engine.planning.operations.Call` function that puts the
files in place (``.fedi-run/<name>/`` beside the playbook) and commits them to that directory's
own git repository, so Nix can read them (:mod:`~fedi_run.engine.nixops.repository`);
:func:`render_task` is the ``nixops4.render`` task that carries both renderings. docs/nixops.md
describes the layout for operators.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from fedi_run.engine.errors import ActionFailed, PlaybookError, Problem
from fedi_run.engine.nixops import repository
from fedi_run.engine.nixops.deployment_data import DATA_HEADER, deployment_data, plugin_data
from fedi_run.engine.nixops.nix import NixModule, render_template, to_nix
from fedi_run.engine.nixops.pins import FLAKE_INPUTS, FOLLOWS_NIXPKGS
from fedi_run.engine.planning.operations import Call
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.private_files import make_private_dirs, write_atomically

if TYPE_CHECKING:
    from fedi_run.engine.execute.context import Context
    from fedi_run.engine.model.playbook import Playbook
    from fedi_run.engine.plugin.manager import Plugins

RENDER_ID = "nixops4.render"
PACKAGE = "fedi_run.engine.nixops"

BASE_DIR = "base"
"""``hosts/<host>/base/``: where the host's base configuration is copied."""

MANIFEST = ".fedi-run-files.json"
"""The list of files fedi-run wrote into the deployment directory, so a file that is no longer
rendered is removed — and nothing else ever is (``flake.lock`` stays)."""
HOST_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


# --- the hook ---------------------------------------------------------------------------------


def host_modules(plugins: Plugins, playbook: Playbook, host: str) -> list[tuple[str, NixModule]]:
    """Every plugin's modules for ``host``, as ``(plugin, module)``; names unique on the host
    (see :func:`~fedi_run.engine.nixops.nix.collect_modules` for the checks)."""
    return plugins.nix_modules(playbook, host)


# --- rendering --------------------------------------------------------------------------------


def flake_inputs(playbook: Playbook) -> dict[str, str]:
    """The deployment's flake inputs: the pins (:data:`~fedi_run.engine.nixops.pins
    .FLAKE_INPUTS`), each replaced by ``[deployment] inputs.<name>`` when the playbook gives
    one; an input name the deployment does not have is a :class:`PlaybookError` naming it."""
    problems = [
        Problem(
            playbook.origin("deployment", "inputs", name),
            f"deployment.inputs.{name}",
            "not an input of the rendered deployment; expected one of "
            + ", ".join(sorted(FLAKE_INPUTS)),
        )
        for name in playbook.deployment.inputs
        if name not in FLAKE_INPUTS
    ]
    if problems:
        raise PlaybookError(problems)
    return {**FLAKE_INPUTS, **playbook.deployment.inputs}


def rendered_hosts(files: Mapping[str, str]) -> list[str]:
    """The hosts a rendering (:func:`render_deployment`'s result) configures."""
    return [
        path[len("hosts/") : -len(".nix")]
        for path in files
        if path.startswith("hosts/") and path.count("/") == 1
    ]


def base_sources(playbook: Playbook, hosts: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``(host, file)`` for each of ``hosts`` with a base configuration (``nixos``)."""
    return tuple((host, playbook.hosts[host].nixos) for host in hosts if playbook.hosts[host].nixos)


def missing_base_configurations(playbook: Playbook, task: Task) -> list[Problem]:
    """A problem for each host the render ``task`` configures that has no base configuration
    (``hosts.<host>.nixos``, named in ``task.reads``): checked before any host is contacted."""
    problems = []
    for dotted in task.reads:
        key = tuple(dotted.split("."))
        if len(key) == 3 and key[0] == "hosts" and key[2] == "nixos":
            if playbook.hosts[key[1]].nixos is None:
                problems.append(
                    Problem(
                        playbook.origin(*key),
                        dotted,
                        "missing; every host the NixOps4 deployment configures needs its own "
                        "base NixOS configuration (hardware, boot, file systems, networking): "
                        'a .nix file, such as nixos = "machines/'
                        f'{key[1]}/configuration.nix" (see docs/nixops.md)',
                    )
                )
    return problems


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
            inputs=flake_inputs(playbook),
            follows=FOLLOWS_NIXPKGS,
        ),
        "data.nix": DATA_HEADER
        + to_nix(deployment_data(playbook, modules, plugin_data(plugins, playbook)))
        + "\n",
    }
    for host, host_mods in modules.items():
        section = playbook.hosts[host]
        files[f"hosts/{host}.nix"] = render_template(
            PACKAGE,
            "host.nix.j2",
            host=host,
            modules=[module.name for _, module in host_mods],
            base=Path(section.nixos).name if section.nixos else None,
            system_set=section.system is not None,
            state_version_set=bool(section.state_version or playbook.deployment.state_version),
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


def _base_files(host: str, source: str) -> list[tuple[str, bytes]]:
    """``hosts/<host>/base/<name>`` and its content for the base configuration ``source`` of
    ``host`` and every other ``.nix`` file of its directory (not of its subdirectories; hidden
    files are left out): ActionFailed naming ``hosts.<host>.nixos`` when one cannot be read."""
    folder = Path(source).parent
    found = []
    try:
        names = sorted(
            entry.name
            for entry in folder.iterdir()
            if entry.name.endswith(".nix") and not entry.name.startswith(".") and entry.is_file()
        )
        if Path(source).name not in names:
            raise FileNotFoundError(2, "No such file", source)
        for name in names:
            if not PATH_PART.fullmatch(name):
                raise ActionFailed(
                    f"cannot copy {folder / name} (beside hosts.{host}.nixos) into the "
                    "deployment: its name is not letters, digits, '_', '.' and '-'; rename it, "
                    "or give the base configuration a directory of its own"
                )
            found.append((f"hosts/{host}/{BASE_DIR}/{name}", (folder / name).read_bytes()))
    except OSError as error:
        raise ActionFailed(
            f"cannot read the base configuration of host {host} (hosts.{host}.nixos): "
            f"{error.strerror or error} ({error.filename or source})"
        ) from None
    return found


def write(
    context: Context,
    directory: str,
    files: Iterable[tuple[str, str]],
    bases: Iterable[tuple[str, str]] = (),
) -> list[str]:
    """Put the rendered ``files`` (``(relative path, text)`` pairs) and each host's base
    configuration into ``directory``, and commit them to its own git repository.

    ``bases`` holds ``(host, file)`` pairs (:func:`base_sources`): the file and the other
    ``.nix`` files of its directory (not its subdirectories) are copied into
    ``hosts/<host>/base/`` as they are when the task runs. Each changed file is written to a
    temporary name and renamed (directories 0700, files 0600); a ``.nix`` file fedi-run wrote
    earlier (see :data:`MANIFEST`) that is no longer rendered is removed, and nothing else is.
    Then :func:`repository.commit` makes ``HEAD`` hold exactly these files (and
    ``flake.lock``), so Nix can read them. Returns what changed — the relative paths written,
    ``removed <path>``, ``git init`` and ``git commit <hash>`` — empty when the directory and
    its ``HEAD`` already hold exactly these files. With ``context.check`` nothing is written
    or committed, only reported.
    """
    root = Path(directory)
    wanted: dict[str, bytes] = {}
    for relative, text in files:
        try:
            _check_relative(relative)
        except ValueError as error:
            raise ActionFailed(str(error)) from None
        wanted[relative] = text.encode("utf-8")
    for host, source in bases:
        wanted.update(_base_files(host, source))
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
    removed = sorted(previous - wanted.keys())
    if not context.check:
        message = f"fedi-run: the NixOps4 deployment {root.name}"
        return changes + repository.commit(root, [*wanted, MANIFEST], removed, message)
    if not repository.is_repository(root):
        return [*changes, "git init", "git commit"]
    try:
        pending = bool(changes) or repository.pending(root, [*wanted, MANIFEST], removed)
    except ActionFailed:  # no git here: --check does not need it, the run would
        pending = True
    return [*changes, "git commit"] if pending else changes


# --- the task ---------------------------------------------------------------------------------


def write_call(
    directory: Path | str, files: Mapping[str, str], bases: Iterable[tuple[str, str]] = ()
) -> Call:
    """The :class:`Call` that writes ``files`` and copies ``bases`` (:func:`write`) into
    ``directory``."""
    return Call(
        write,
        (
            ("directory", str(directory)),
            ("files", tuple(sorted(files.items()))),
            ("bases", tuple(bases)),
        ),
    )


def render_call(
    playbook: Playbook, plugins: Plugins, directory: Path | str, switched_off: bool = False
) -> Call:
    """The :class:`Call` that writes the deployment (``switched_off``: with every service
    off) into ``directory`` — rendered now, written (with the hosts' base configurations as
    they are then) when the task runs."""
    files = render_deployment(playbook, plugins, switched_off=switched_off)
    return write_call(directory, files, base_sources(playbook, rendered_hosts(files)))


def _hosts_of(call: Call) -> list[str]:
    return rendered_hosts(dict(dict(call.kwargs)["files"]))


def render_task(
    playbook: Playbook,
    plugins: Plugins,
    directory: Path | str,
    requires: Iterable[str] = (),
    switch_off: Call | None = None,
) -> Task:
    """``nixops4.render``: write the deployment into ``directory``; its undo writes the
    switched-off rendering (``switch_off``, rendered here when not given) so the apply after it
    switches every service off. It reads the base configuration of each host either rendering
    configures (``reads``: ``hosts.<host>.nixos``; :func:`missing_base_configurations`)."""
    if switch_off is None:
        switch_off = render_call(playbook, plugins, directory, switched_off=True)
    action = render_call(playbook, plugins, directory)
    hosts = sorted({*_hosts_of(action), *_hosts_of(switch_off)})
    return Task(
        id=RENDER_ID,
        host=None,
        requires=tuple(requires),
        tags=("apply", "render"),
        description=f"render the NixOps4 deployment {playbook.name} into {directory}",
        actions=(action,),
        undo=(switch_off,),
        reads=tuple(f"hosts.{host}.nixos" for host in hosts),
    )
