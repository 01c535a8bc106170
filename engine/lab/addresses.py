"""Loopback addresses and ports for lab hosts, and the machine-wide lock that hands them out.

Hosts get 127.0.0.2, 127.0.0.3, … (127.0.0.1 stays the machine's and Pebble's). An address is
free when nothing listens on its port 22 — whoever owns the listener: another lab in another
directory, or anything else. Allocation and start-up happen under one machine-wide lock
(:func:`machine_lock`), so two ``lab up`` running at once never pick the same address.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from fedi_run.engine.errors import LabError

LOCK_FILE = Path("/run/lock/fedi-run-lab.lock")
FIRST = ipaddress.IPv4Address("127.0.0.2")
LAST = ipaddress.IPv4Address("127.255.255.254")


def listeners() -> set[tuple[str, int]]:
    """Every (IPv4 address, port) with a listening TCP socket on this machine, read from
    ``/proc/net/tcp`` (no connection is made, so sshd sees nothing)."""
    found: set[tuple[str, int]] = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_addr, hex_port = fields[1].split(":")
            addr = socket.inet_ntoa(int(hex_addr, 16).to_bytes(4, "little"))
            found.add((addr, int(hex_port, 16)))
    return found


def is_free(address: str, port: int) -> bool:
    """True when ``address:port`` can be bound now (SO_REUSEADDR, so TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def free_port(address: str = "127.0.0.1", preferred: int = 0, avoid: set[int] = frozenset()) -> int:
    """``preferred`` if it is free on ``address`` (and not in ``avoid``), else a free port the
    kernel picks."""
    if preferred and preferred not in avoid and is_free(address, preferred):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


def allocate(count: int, port: int = 22) -> list[str]:
    """``count`` loopback addresses from 127.0.0.2 up where nothing listens on ``port``.

    Addresses ending in .0 or .255 are skipped. Raises :class:`LabError` when something
    listens on ``0.0.0.0:port`` (it would take every address) or the range is exhausted.
    """
    wildcard = LabError(
        f"error: something listens on port {port} of all addresses (0.0.0.0 or ::), so no lab "
        f"host can use it; if it is this machine's sshd, set `ListenAddress 127.0.0.1` (or "
        "another address) in /etc/ssh/sshd_config and restart it"
    )
    if count and ("0.0.0.0", port) in listeners():
        raise wildcard
    chosen: list[str] = []
    address = FIRST
    while len(chosen) < count:
        if address > LAST:
            raise LabError(f"error: no free loopback address left for {count} lab hosts")
        text = str(address)
        if not text.endswith((".0", ".255")):
            if is_free(text, port):
                chosen.append(text)
            elif (text, port) not in listeners():  # taken, but by no listener of its own
                raise wildcard
        address += 1
    return chosen


def wait_listening(endpoints: list[tuple[str, int]], timeout: float, alive) -> set[tuple[str, int]]:
    """Wait until every endpoint listens; return those that never did within ``timeout``
    seconds. ``alive()`` is called between polls and stops the wait early when it is False."""
    pending = set(endpoints)
    deadline = time.monotonic() + timeout
    while pending:
        pending -= listeners()
        if not pending or time.monotonic() > deadline or not alive():
            break
        time.sleep(0.003)
    return pending


@contextlib.contextmanager
def machine_lock(path: Path = LOCK_FILE) -> Iterator[None]:
    """Hold the machine-wide lab lock (an exclusive ``flock``) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
