"""Constants and helpers shared by the tests in this folder and below (imported as
``helpers``: tests/ is on sys.path through its conftest.py)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SUPPORT = Path(__file__).resolve().parent / "support"

MINIMAL = """
[deployment]
name = "test"
domain = "example.org"

[hosts.web]
address = "127.0.0.2"
"""


@dataclass
class CliResult:
    """What a ``fedi-run`` command ended with, and the JSON lines of a ``--json`` run."""

    exit_code: int
    stdout: str
    stderr: str

    def events(self) -> list[dict]:
        """The JSON lines of a --json run."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def finished(self) -> dict[str, dict]:
        """task id -> its task_finished event."""
        return {e["id"]: e for e in self.events() if e["event"] == "task_finished"}

    def started(self) -> list[str]:
        """The ids of the tasks that started, in order."""
        return [e["id"] for e in self.events() if e["event"] == "task_started"]

    def statuses(self) -> dict[str, str]:
        """task id -> the status it finished with."""
        return {task: event["status"] for task, event in self.finished().items()}

    def run_finished(self) -> dict:
        """The run_finished event."""
        return [e for e in self.events() if e["event"] == "run_finished"][-1]


def with_enabled(source: Path, target: Path, enabled: set[str], **replacements: str) -> Path:
    """A copy of the playbook ``source`` at ``target`` whose [services.*] tables enable
    exactly ``enabled`` (every other ``enable = true`` set to false); ``replacements`` are
    further text substitutions, old → new."""
    out, table = [], None
    for line in source.read_text().splitlines():
        header = re.match(r"\s*\[services\.([a-z0-9-]+)\]", line)
        if line.lstrip().startswith("["):
            table = header[1] if header else None
        if table and re.match(r"\s*enable\s*=", line):
            line = f"enable = {'true' if table in enabled else 'false'}"
        out.append(line)
    text = "\n".join(out) + "\n"
    for old, new in replacements.items():
        text = text.replace(old, new)
    target.write_text(text)
    return target


SNAPSHOT_ROOTS = ("/var/lib/fedi-run", "/etc", "/usr/local/bin", "/usr/local/share/ca-certificates")
"""What :func:`host_snapshot` reads: everything fedi-run keeps on a host, /etc, and where the
examples and the acme plugin place files."""


def host_snapshot(lab, host: str, roots: tuple[str, ...] = SNAPSHOT_ROOTS) -> dict[str, str]:
    """Every entry under ``roots`` on the lab host ``host``: path → ``"<type> <mode> <owner>"``
    and, for a file, the sha256 of its bytes, for a symlink its target — byte for byte what is
    there (``/etc/ld.so.cache``, which the machine itself rewrites, left out)."""
    where = " ".join(roots)
    script = (
        f"find {where} -xdev -printf '%y %m %u %p\\n' 2>/dev/null; echo '@@'; "
        f"find {where} -xdev -type f -exec sha256sum {{}} + 2>/dev/null; echo '@@'; "
        f"find {where} -xdev -type l -printf '%p -> %l\\n' 2>/dev/null; true"
    )
    entries, digests, links = lab.run(host, script, check=True).stdout.split("@@\n")
    found = {}
    for line in entries.splitlines():
        kind, mode, owner, path = line.split(" ", 3)
        found[path] = f"{kind} {mode} {owner}"
    for line in digests.splitlines():
        digest, path = line.split("  ", 1)
        found[path] += f" {digest}"
    for line in links.splitlines():
        path, target = line.split(" -> ", 1)
        found[path] += f" -> {target}"
    found.pop("/etc/ld.so.cache", None)
    return found


def changed_entries(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple]:
    """path → (before, after) of every entry that differs between two :func:`host_snapshot`
    values (None: absent)."""
    return {
        path: (before.get(path), after.get(path))
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path)
    }


def record_runs(state, deployment, tasks, check=False, kind="run", status="changed"):
    """Record in the state database ``state`` one run of ``deployment`` in which each of
    ``tasks`` (id, host) started and ended with ``status``."""
    from fedi_run.engine.report.events import Status, TaskFinished, TaskStarted
    from fedi_run.engine.report.state import StateStore

    with StateStore.open(state) as store:
        ids, hosts = zip(*tasks)
        run_id = store.begin_run(deployment, kind, ids, hosts, check, ())
        for task_id, host in tasks:
            store.handle(TaskStarted(run_id, task_id, host, 1.0))
            store.handle(TaskFinished(run_id, task_id, host, Status(status), 0.1, at=2.0))
