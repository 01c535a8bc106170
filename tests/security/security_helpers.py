"""Helpers for the security tests (imported as ``security_helpers``): the CLI in a subprocess
under a chosen umask, mode walks, a sampler of command lines and file modes, and the leak scan.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import helpers
from helpers import CliResult

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fediversity.toml"
STANDIN = ROOT / "tests" / "standin"
HOST_ROOT = "/var/lib/fedi-run"


def secrets_root(deployment: str) -> str:
    """Where ``deployment``'s secrets are on a host: each deployment has its own."""
    return f"{HOST_ROOT}/{deployment}/secrets"


SECRETS_ROOT = secrets_root("fediversity")
"""The secrets root of the example's deployment (:data:`EXAMPLE`, ``fediversity``)."""


# --- the command line, as a user runs it --------------------------------------------------------


Result = CliResult


def cli(
    *args: object,
    umask: int | None = None,
    env: dict | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> Result:
    """``fedi-run ARGS`` in a subprocess of its own (``umask`` set in it before it starts)."""
    done = subprocess.run(
        [sys.executable, "-m", "fedi_run.engine.cli.main", *(str(a) for a in args)],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        umask=-1 if umask is None else umask,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def standin_env(log: Path) -> dict[str, str]:
    """The recording nixops4 stand-in on PATH, recording into ``log``."""
    return {"PATH": f"{STANDIN}:{os.environ['PATH']}", "NIXOPS4_STANDIN_LOG": str(log)}


def with_enabled(
    target: Path, enabled: set[str], source: Path = EXAMPLE, **replacements: str
) -> Path:
    """A copy of the playbook ``source`` at ``target`` enabling exactly ``enabled``."""
    return helpers.with_enabled(source, target, enabled, **replacements)


# --- modes ----------------------------------------------------------------------------------------


def loose_entries(root: Path) -> list[str]:
    """Every entry under ``root`` (itself included) that is not private: a directory not
    0700, a file with any group/other bit (0600 or stricter is private), or anything else
    (a symlink, a socket). Empty when all is private."""
    found = []
    for path in [root, *root.rglob("*")]:
        try:
            info = path.lstat()
        except FileNotFoundError:  # removed while walking (a temporary file)
            continue
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            if mode != 0o700:
                found.append(f"{path} is a directory of mode {mode:04o}, expected 0700")
        elif stat.S_ISREG(info.st_mode):
            if mode & 0o077:
                found.append(f"{path} is a file of mode {mode:04o}, expected 0600 or stricter")
        else:
            found.append(f"{path} is neither a file nor a directory")
    return found


def target_secret_modes(lab, host: str) -> dict[str, str]:
    """Every entry under the host's secrets roots (every deployment's): path → ``<d|f> <mode>``."""
    listing = lab.run(
        host, f"find {HOST_ROOT}/*/secrets -printf '%y %m %p\\n' 2>/dev/null; true", check=True
    ).stdout
    return {
        line.split(" ", 2)[2]: " ".join(line.split(" ", 2)[:2]) for line in listing.splitlines()
    }


# --- sampling while a run goes on --------------------------------------------------------------


class Sampler:
    """A thread that, until stopped, reads the command line of every process on the machine
    (the lab hosts' processes included: they share its process table) and the modes of
    everything under ``watch`` (the deployer's state directory), as fast as it can.

    ``cmdlines`` holds each distinct command line seen (``in_namespaces`` those of processes
    in the given mount namespaces); ``loose`` each non-private entry seen under ``watch``;
    ``sweeps`` how many passes were made."""

    def __init__(
        self,
        watch: Path | None = None,
        pause: float = 0.004,
        namespaces: frozenset[str] = frozenset(),
    ):
        self.watch = watch
        self.pause = pause
        self.namespaces = namespaces
        self.cmdlines: set[bytes] = set()
        self.in_namespaces: set[bytes] = set()
        """The command lines seen of processes in ``namespaces`` (``mnt:[…]``: lab hosts)."""
        self.loose: set[str] = set()
        self.sweeps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._own = str(os.getpid())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == self._own:
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        line = handle.read()
                except OSError:
                    continue
                if line:
                    self.cmdlines.add(line)
                    if self.namespaces:
                        try:
                            if os.readlink(f"/proc/{pid}/ns/mnt") in self.namespaces:
                                self.in_namespaces.add(line)
                        except OSError:
                            pass
            if self.watch is not None and self.sweeps % 4 == 0 and self.watch.exists():
                self.loose.update(loose_entries(self.watch))
            self.sweeps += 1
            self._stop.wait(self.pause)  # leave the run a core of its own


# --- the leak scan --------------------------------------------------------------------------


def variants(value: str) -> dict[str, bytes]:
    """The forms a secret could leak in: as it is, base64 of it (how read_secret_files carries
    it), and for hex or base64 values the same bytes in the other encoding."""
    forms = {"raw": value.encode(), "base64": base64.b64encode(value.encode())}
    core = value.removeprefix("base64:")
    if core != value:
        forms["without base64: prefix"] = core.encode()
    if re.fullmatch(r"(?:[0-9a-f]{2}){8,}", core):
        raw = bytes.fromhex(core)
        forms["hex as base64"] = base64.b64encode(raw).rstrip(b"=")
    elif re.fullmatch(r"[A-Za-z0-9+/]{16,}={0,2}", core):
        try:
            forms["base64 as hex"] = base64.b64decode(core, validate=True).hex().encode()
        except (binascii.Error, ValueError):
            pass
    elif re.fullmatch(r"[A-Za-z0-9_-]{16,}", core):
        try:
            decoded = base64.urlsafe_b64decode(core + "=" * (-len(core) % 4))
            forms["url-safe base64 as hex"] = decoded.hex().encode()
        except (binascii.Error, ValueError):
            pass
    return forms


@dataclass
class LeakScan:
    """Searches every secret (``name → value``), in each of its :func:`variants`, in files
    and texts; counts what it searched, by category, and records each hit."""

    secrets: dict[str, str]
    files: dict[str, int] = field(default_factory=dict)
    bytes_scanned: int = 0
    hits: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._needles = [
            (name, form, needle)
            for name, value in self.secrets.items()
            for form, needle in variants(value).items()
        ]

    @property
    def needles(self) -> int:
        return len(self._needles)

    def data(self, category: str, where: str, data: bytes) -> None:
        self.files[category] = self.files.get(category, 0) + 1
        self.bytes_scanned += len(data)
        for name, form, needle in self._needles:
            if needle in data:
                self.hits.append(f"{name} ({form}) in {category}: {where}")

    def text(self, category: str, where: str, text: str) -> None:
        self.data(category, where, text.encode("utf-8", "surrogateescape"))

    def file(self, category: str, path: Path) -> None:
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return
        self.data(category, str(path), data)

    def tree(self, category: str, root: Path, skip: tuple[Path, ...] = ()) -> None:
        """Every regular file under ``root`` (symlinks not followed), but those under ``skip``."""
        for directory, dirs, names in os.walk(root):
            here = Path(directory)
            dirs[:] = [d for d in dirs if here / d not in skip]
            for name in names:
                path = here / name
                if path.is_symlink() or not path.is_file():
                    continue
                self.file(category, path)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
