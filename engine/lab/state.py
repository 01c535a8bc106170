"""The lab's state: what ``lab up`` started, as typed values, and the ``lab.json`` that holds it.

A lab directory (default ``./.fedi-lab``) contains only what the lab wrote there:

====================  ============================================================
``lab.json``          this state (hosts, processes, keys, ACME server)
``inventory.toml``    the inventory for ``fedi-run -i``
``known_hosts``       the pinned host keys, for the system ``ssh``
``deployer/``         the deployer key pair (``id_ed25519``, mode 0600, and ``.pub``)
``hosts/<name>/``     one host's overlays, private directories and ``sshd.log``
``nixos/<name>/``     one host's base NixOS configuration (the inventory's ``nixos``)
``acme/``             Pebble's config, the lab CA (``ca.pem``) and ``pebble.log``
====================  ============================================================

``lab down`` removes exactly these entries (:data:`LAB_ENTRIES`), then the directory if it is
empty, so ``--dir .`` never deletes anything the lab did not create.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fedi_run.engine.errors import LabError

STATE_VERSION = 1
DEFAULT_DIR = Path(".fedi-lab")
LAB_ENTRIES = (
    "lab.json",
    "inventory.toml",
    "known_hosts",
    "deployer",
    "hosts",
    "nixos",
    "acme",
    ".lock",
)
HOST_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def validate_host_names(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Return ``names`` as a tuple, or raise :class:`LabError` naming every bad or repeated one.

    A host name is a DNS label in lower case: a letter, then letters, digits and ``-``, not
    ending in ``-``, at most 63 characters (it becomes the host's hostname and a TOML key).
    """
    bad = [n for n in names if not HOST_NAME.match(n)]
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    problems = []
    if bad:
        problems.append(
            "invalid host name(s): "
            + ", ".join(repr(n) for n in bad)
            + " (use a lower-case letter, then letters, digits or '-', e.g. 'mastodon')"
        )
    if repeated:
        problems.append("host name(s) given twice: " + ", ".join(repeated))
    if problems:
        raise LabError("error: " + "; ".join(problems))
    return tuple(names)


@dataclass(frozen=True)
class Proc:
    """A process the lab started, identified by PID *and* start time (so a reused PID is
    never mistaken for it). ``start_time`` is field 22 of ``/proc/PID/stat``."""

    pid: int
    start_time: int


@dataclass(frozen=True)
class HostInfo:
    """One lab host: an sshd on ``address:port`` in its own mount and UTS namespace.

    ``host_key`` is its pinned public key (``ssh-ed25519 AAAA…``), ``root`` the directory
    under the lab dir holding its overlays and private directories, ``mnt_ns`` the
    ``mnt:[inode]`` of its mount namespace (empty until it was seen running).
    """

    name: str
    address: str
    port: int
    user: str
    host_key: str
    root: Path
    process: Proc | None = None
    mnt_ns: str = ""


@dataclass(frozen=True)
class AcmeInfo:
    """The lab's Pebble ACME server: ``server`` is its directory URL, ``ca_file`` the lab CA
    that signed its HTTPS certificate, ``management`` its management API base URL."""

    server: str
    ca_file: Path
    management: str
    process: Proc | None = None


@dataclass(frozen=True)
class LabState:
    """Everything one ``lab up`` started. All paths are absolute."""

    dir: Path
    identity: Path
    public_key: str
    hosts: tuple[HostInfo, ...] = ()
    acme: AcmeInfo | None = None
    version: int = field(default=STATE_VERSION)

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.toml"

    @property
    def known_hosts_path(self) -> Path:
        return self.dir / "known_hosts"

    def host(self, name: str) -> HostInfo:
        """The host called ``name``; :class:`LabError` listing the known names otherwise."""
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts) or "none"
        raise LabError(f"error: the lab in {self.dir} has no host {name!r} (hosts: {known})")


def state_path(directory: Path) -> Path:
    return Path(directory) / "lab.json"


def _proc(data: dict | None) -> Proc | None:
    return Proc(**data) if data else None


def to_json(state: LabState) -> str:
    """Serialise ``state`` (paths as strings)."""
    return json.dumps(asdict(state), default=str, indent=2) + "\n"


def from_json(text: str) -> LabState:
    """Parse what :func:`to_json` wrote; :class:`LabError` if it is not a lab state."""
    try:
        data = json.loads(text)
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state version {data.get('version')!r}")
        hosts = tuple(
            HostInfo(**{**h, "root": Path(h["root"]), "process": _proc(h.get("process"))})
            for h in data["hosts"]
        )
        acme = data.get("acme")
        if acme:
            acme = AcmeInfo(
                **{**acme, "ca_file": Path(acme["ca_file"]), "process": _proc(acme.get("process"))}
            )
        return LabState(
            dir=Path(data["dir"]),
            identity=Path(data["identity"]),
            public_key=data["public_key"],
            hosts=hosts,
            acme=acme,
        )
    except (ValueError, KeyError, TypeError) as error:
        raise LabError(f"error: the lab state file is unreadable: {error}") from error


def save(state: LabState) -> None:
    """Write ``lab.json`` atomically (mode 0600)."""
    path = state_path(state.dir)
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(to_json(state))
    os.replace(tmp, path)


def load(directory: Path) -> LabState | None:
    """The state in ``directory``, or None when no lab was started there."""
    path = state_path(directory)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return from_json(text)


def require(directory: Path) -> LabState:
    """The state in ``directory``; :class:`LabError` saying how to start a lab otherwise."""
    state = load(directory)
    if state is None:
        raise LabError(
            f"error: no lab in {Path(directory).absolute()}; "
            "start one with `fedi-run lab up --hosts NAME[,NAME...]`"
        )
    return state
