"""Helpers for the fault tests (imported as ``fault_helpers``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from helpers import CliResult

from fedi_run.engine.cli.main import cli
from fedi_run.engine.report.state import StateStore, default_state_path

HEADER = '[deployment]\nname = "faults"\ndomain = "faults.example.org"\n'


@dataclass
class Result(CliResult):
    """A CLI result, with the process's peak RSS and wall time when it ran as a process."""

    peak_rss_kib: int = 0  # VmHWM
    duration: float = 0.0


def fedi(*args: object) -> Result:
    """The CLI in this process, as a user would type it."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return Result(result.exit_code, result.stdout, result.stderr)


# The CLI, reporting its peak RSS (VmHWM: its own, since exec) in the file $FEDI_TEST_HWM as
# it exits. (The rusage of a child is no good: its maxrss starts at its parent's RSS at fork.)
MEASURED = """
import atexit, os, sys
def _hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(os.environ["FEDI_TEST_HWM"], "w").write(line.split()[1])
atexit.register(_hwm)
sys.argv = ["fedi-run", *sys.argv[1:]]
from fedi_run.engine.cli.main import main
main()
"""


class Cli:
    """The CLI as a process of its own (signals, peak memory, faults injected while it runs)."""

    def __init__(self, *args: object, prefix: tuple[str, ...] = ()):
        import tempfile

        self.started = time.monotonic()
        self._hwm = Path(tempfile.mkstemp(prefix="fedi-hwm-")[1])
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-c", MEASURED, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "FEDI_TEST_HWM": str(self._hwm)},
        )
        self.lines: list[str] = []

    def wait_for(self, event: str, task: str, timeout: float = 30) -> None:
        """Read the JSON lines until ``event`` of ``task`` (e.g. task_started)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(
                    f"the run ended before {event} {task}: {self.process.stderr.read()}"
                )
            self.lines.append(line)
            if line.startswith("{"):
                record = json.loads(line)
                if record["event"] == event and record.get("id") == task:
                    return
        raise AssertionError(f"no {event} of {task} within {timeout} s")

    def finish(self, timeout: float = 120) -> Result:
        """Wait for the end; the result, with the process's peak RSS (``wait4``)."""
        out, err = _communicate(self.process, timeout)
        self.lines.append(out)
        peak = int(self._hwm.read_text() or 0)
        self._hwm.unlink()
        return Result(
            self.process.returncode, "".join(self.lines), err, peak, time.monotonic() - self.started
        )


def _communicate(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("the run did not end") from None


def last_run(path: Path):
    """The last run of the playbook's deployment, from its state database."""
    store = StateStore.open(default_state_path(path))
    try:
        return store.last_run("faults")
    finally:
        store.close()


def recorded(path: Path) -> dict[str, str]:
    """task id → outcome of the last run, as the state database has it."""
    return {t.task_id: t.outcome for t in last_run(path).tasks}


def leftovers(lab, host: str, *directories: str) -> list[str]:
    """Temporary files fedi-run would have left next to its targets."""
    found = lab.run(
        host, "find " + " ".join(directories) + " -name '*.fedi-run.*' 2>/dev/null; true"
    ).stdout
    return found.split()
