"""The workload W(N, K): what every tool must bring about on each of N hosts.

On every host: the directory ``/srv/bench`` (mode 0755), K files ``/srv/bench/f1`` …
``/srv/bench/fK`` with distinct small text content (the file number and the host name in
it, ~110 bytes) and mode 0644, and one command, ``touch /srv/bench/marker``, guarded so that
it runs only while the marker does not exist. A first run changes K + 2 things per host, a
second run nothing.

:meth:`Workload.reset` removes ``/srv/bench`` on every host; :meth:`Workload.verify` reads
every file back (``sha256sum`` and ``stat`` over the lab's own SSH connection) so that no tool
can win by doing nothing.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

DIRECTORY = "/srv/bench"
MARKER = f"{DIRECTORY}/marker"
COMMAND = f"touch {MARKER}"
FILLER = "The quick brown fox jumps over the lazy dog, 0123456789 times.\n"
# ``{host}`` is replaced by the host's name, or by a tool's template expression for it
# (``{{ inventory_hostname }}`` for Ansible, ``{{ host.name }}`` for fedi-run).
TEMPLATE = "fedi-run bench file {i} on host {host}\n" + FILLER


@dataclass(frozen=True)
class Workload:
    """W(N, K): ``hosts`` (N names) and ``files`` (K)."""

    hosts: tuple[str, ...]
    files: int

    @property
    def changes_per_host(self) -> int:
        """What a first run changes on each host: the directory, K files, the command."""
        return self.files + 2

    @property
    def total_changes(self) -> int:
        return self.changes_per_host * len(self.hosts)

    def indices(self) -> range:
        return range(1, self.files + 1)

    @staticmethod
    def path(i: int) -> str:
        return f"{DIRECTORY}/f{i}"

    @staticmethod
    def content_template(i: int, host_expression: str) -> str:
        """File ``i``'s content with the host name written as ``host_expression``."""
        return TEMPLATE.format(i=i, host=host_expression)

    def content(self, host: str, i: int) -> str:
        return self.content_template(i, host)

    # -- on the lab ----------------------------------------------------------------------

    def reset(self, lab) -> None:
        """Remove the workload directory on every host (before each repetition)."""
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            for result in pool.map(lambda h: lab.run(h, f"rm -rf {DIRECTORY}"), self.hosts):
                result.check()

    def verify(self, lab) -> list[str]:
        """Every difference between the hosts and the workload (empty when all is right)."""
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            found = list(pool.map(lambda h: self._verify_host(lab, h), self.hosts))
        return [problem for problems in found for problem in problems]

    def _verify_host(self, lab, host: str) -> list[str]:
        files = " ".join(self.path(i) for i in self.indices())
        result = lab.run(
            host, f"stat -c '%F %a %n' {DIRECTORY} {MARKER} {files}; sha256sum {files}"
        )
        modes: dict[str, tuple[str, str]] = {}
        digests: dict[str, str] = {}
        for line in result.stdout.splitlines():
            if line.startswith(("regular", "directory")):
                kind_mode, path = line.rsplit(" ", 1)
                kind, mode = kind_mode.rsplit(" ", 1)
                modes[path] = (kind, mode)
            elif line.strip():
                digest, path = line.split(None, 1)
                digests[path.strip()] = digest
        problems = []
        expected = {DIRECTORY: ("directory", "755"), MARKER: None}
        expected.update({self.path(i): ("regular file", "644") for i in self.indices()})
        for path, want in expected.items():
            got = modes.get(path)
            if got is None:
                problems.append(f"{host}: {path} is missing")
            elif want is not None and got != want:
                problems.append(
                    f"{host}: {path} is a {got[0]} with mode {got[1]}, expected {want[0]} {want[1]}"
                )
        for i in self.indices():
            want = hashlib.sha256(self.content(host, i).encode()).hexdigest()
            path = self.path(i)
            if path in modes and digests.get(path) != want:
                problems.append(f"{host}: {path} has the wrong content")
        return problems
