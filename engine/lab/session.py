"""A handle on a running lab for Python code and tests: :class:`Lab`.

::

    from fedi_run.engine.lab import Lab

    with Lab.up("/tmp/my-lab", ["garage", "mastodon"], acme=True) as lab:
        print(lab.run("garage", "hostname").stdout)      # "garage\\n"
        lab.write_file("mastodon", "/etc/motd", "hello\\n")
        assert lab.read_file("mastodon", "/etc/motd") == b"hello\\n"
    # leaving the block ran `down`: nothing left running

Commands go over one pinned, tuned SSH connection per host, opened on first use and shared
by threads.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from fedi_run.engine.lab import control, procs, state
from fedi_run.engine.lab.ssh import CommandResult, HostConnection
from fedi_run.engine.lab.state import AcmeInfo, HostInfo, LabState


class Lab:
    """A running lab: its hosts, inventory and ACME server, and commands on its hosts."""

    def __init__(self, lab_state: LabState):
        self.state = lab_state
        self._connections: dict[str, HostConnection] = {}
        self._lock = threading.Lock()

    @classmethod
    def up(cls, directory: Path | str, hosts: Sequence[str], *, acme: bool = False) -> Lab:
        """Start a lab (see :func:`fedi_run.engine.lab.control.up`) and return its handle."""
        return cls(control.up(directory, hosts, acme=acme))

    @classmethod
    def open(cls, directory: Path | str = state.DEFAULT_DIR) -> Lab:
        """A handle on the lab already up in ``directory`` (:class:`LabError` if none)."""
        return cls(state.require(Path(directory).absolute()))

    # -- what the lab is -----------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self.state.dir

    @property
    def hosts(self) -> Mapping[str, HostInfo]:
        """Host name → :class:`HostInfo` (address, port, user, host_key, ...), in start order."""
        return MappingProxyType({h.name: h for h in self.state.hosts})

    @property
    def inventory_path(self) -> Path:
        return self.state.inventory_path

    @property
    def known_hosts_path(self) -> Path:
        return self.state.known_hosts_path

    @property
    def identity(self) -> Path:
        """The deployer's private key file."""
        return self.state.identity

    @property
    def acme(self) -> AcmeInfo | None:
        """Pebble's directory URL and the lab CA file, or None without ``acme``."""
        return self.state.acme

    # -- commands on hosts ---------------------------------------------------------------

    def connection(self, host: str) -> HostConnection:
        """The shared connection to ``host``, opened on first use (and again if it dropped)."""
        with self._lock:
            conn = self._connections.get(host)
            if conn is not None and not conn.active:
                conn.close()
                conn = None
            if conn is None:
                conn = HostConnection(self.state.host(host), self.state.identity)
                self._connections[host] = conn
            return conn

    def run(
        self,
        host: str,
        command: str,
        *,
        check: bool = False,
        input: bytes | str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``command`` (a shell command line) as root on ``host``.

        Returns the :class:`CommandResult` whatever the exit status; with ``check=True`` a
        non-zero status raises :class:`LabError` instead.
        """
        result = self.connection(host).run(command, input=input, timeout=timeout)
        return result.check() if check else result

    def read_file(self, host: str, path: str) -> bytes:
        """The content of ``path`` on ``host`` (:class:`LabError` if it cannot be read)."""
        return self.connection(host).read_file(path)

    def write_file(self, host: str, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Create or replace ``path`` on ``host`` (parents created)."""
        self.connection(host).write_file(path, data, mode)

    # -- faults (for tests) ---------------------------------------------------------------

    def host_processes(self, host: str, command: str | None = None) -> list[int]:
        """PIDs of every live process of ``host`` (its sshd listener, the per-connection sshd
        processes, what they run), or only those whose command name is ``command``
        (``"sshd"``)."""
        found = [p.pid for p in control.processes_of_host(self.state, host)]
        if command is None:
            return found
        return [pid for pid in found if procs.command_name(pid) == command]

    def restart_host(self, host: str, *, holding_addresses: bool = False) -> None:
        """Start ``host`` again after its sshd was killed (see :func:`control.restart_host`):
        same address, port, key and files. ``holding_addresses``: the caller holds
        :meth:`addresses_held` (so no other lab took the address meanwhile)."""
        with self._lock:
            conn = self._connections.pop(host, None)
        if conn is not None:
            conn.close()
        self.state = control.restart_host(self.state.dir, host, holding_addresses=holding_addresses)

    @staticmethod
    def addresses_held():
        """The machine-wide lock that hands out lab addresses, as a context manager: no lab
        starts while it is held, so a host that is down keeps its address."""
        from fedi_run.engine.lab import addresses

        return addresses.machine_lock()

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the SSH connections (the lab keeps running)."""
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            conn.close()

    def down(self) -> None:
        """Close the connections and stop the lab (see :func:`control.down`)."""
        self.close()
        control.down(self.state.dir)
        for proc in control.processes_of(self.state):  # collect our exited children
            if proc is not None:
                procs.reap(proc.pid)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info) -> None:
        self.down()

    def __repr__(self) -> str:
        names = ", ".join(h.name for h in self.state.hosts)
        return f"<Lab {self.state.dir} hosts=[{names}] acme={self.state.acme is not None}>"
