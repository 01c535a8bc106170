"""What ``lab up`` needs from the machine, checked before anything starts.

The lab needs root (namespaces and mounts), Debian's OpenSSH server (``/usr/sbin/sshd``,
package ``openssh-server``) and, with ``--acme``, Debian's ``pebble`` (package ``pebble``).
Everything missing is reported at once, each with the command that installs it.

Two environment variables point the checks (and the lab) at other executables, mainly so the
tests can simulate a missing package: ``FEDI_RUN_LAB_SSHD`` (default ``/usr/sbin/sshd``) and
``FEDI_RUN_LAB_PEBBLE`` (default: ``pebble`` on PATH, else ``/usr/bin/pebble``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from fedi_run.engine.errors import LabError

SSHD_ENV = "FEDI_RUN_LAB_SSHD"
PEBBLE_ENV = "FEDI_RUN_LAB_PEBBLE"
DEFAULT_SSHD = "/usr/sbin/sshd"
DEFAULT_PEBBLE = "/usr/bin/pebble"


@dataclass(frozen=True)
class Tools:
    """The executables the lab runs."""

    sshd: str
    pebble: str


def tools(environ: dict[str, str] | os._Environ = os.environ) -> Tools:
    """The sshd and pebble paths to use, honouring the two override variables."""
    pebble = environ.get(PEBBLE_ENV) or shutil.which("pebble") or DEFAULT_PEBBLE
    return Tools(sshd=environ.get(SSHD_ENV) or DEFAULT_SSHD, pebble=pebble)


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def missing(euid: int, found: Tools, acme: bool) -> list[str]:
    """One line per missing prerequisite (empty when all is there)."""
    problems = []
    if euid != 0:
        problems.append(
            "root: the lab creates namespaces and mounts; run it as root "
            "(e.g. `sudo fedi-run lab up ...`)"
        )
    if not _executable(found.sshd):
        problems.append(
            f"OpenSSH server: {found.sshd} not found; install it with "
            "`apt-get install openssh-server`"
        )
    if acme and not _executable(found.pebble):
        problems.append(
            f"Pebble ACME server: {found.pebble} not found; install it with "
            "`apt-get install pebble`"
        )
    return problems


def check(acme: bool, euid: int | None = None, found: Tools | None = None) -> Tools:
    """Return the tools to use, or raise :class:`LabError` listing everything missing."""
    found = found or tools()
    problems = missing(os.geteuid() if euid is None else euid, found, acme)
    if problems:
        raise LabError(
            "error: the lab cannot start; missing:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return found
