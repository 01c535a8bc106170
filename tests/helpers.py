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
