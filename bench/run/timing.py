"""Timing one tool invocation, and the interface every runner has.

A measurement is the wall-clock time of the whole invocation — a subprocess, so the
interpreter's start, imports, connection set-up and teardown are all in it — taken with
``time.perf_counter`` around :func:`subprocess.run`. Output goes to a log file per
invocation (kept in the run's work directory) and is returned for parsing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 1800.0  # seconds; Ansible at W(16, 20) takes ~80 s


@dataclass(frozen=True)
class Invocation:
    """One timed run of a tool: wall time, exit status, output, and the number of changes
    the tool itself reported (``None`` where it cannot tell)."""

    seconds: float
    returncode: int
    output: str
    log: Path
    changed: int | None = None
    inner: float | None = None  # the tool's own account of its run time, where it gives one

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def executable(name: str) -> str:
    """``name`` from the running interpreter's bin directory (the `bench` extra's), else PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(
            f"error: `{name}` not found; install the bench extra: pip install -e '.[bench]'"
        )
    return found


def timed(
    argv: list[str],
    *,
    cwd: Path,
    log: Path,
    env: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> Invocation:
    """Run ``argv`` to completion (stdin /dev/null, stdout+stderr to ``log``) and time it."""
    full_env = {**os.environ, **(env or {})}
    with open(log, "wb") as sink:
        start = time.perf_counter()
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        seconds = time.perf_counter() - start
    output = log.read_text(errors="replace")
    return Invocation(seconds, proc.returncode, output, log)


def version_of(argv: list[str]) -> str:
    """The first line of ``argv``'s output (a ``--version``), or what went wrong."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


class Tool:
    """A tool under test. Subclasses set ``name``, ``label`` and implement the methods."""

    name = "tool"  # as given to --tools
    label = "tool"  # as shown in the table
    command_note = ""  # how the workload's command was expressed, for the notes
    warm_up = True  # one untimed run before the repetitions (byte-code, page cache)

    def version(self) -> str:
        raise NotImplementedError

    def prepare(self, lab, workload, workdir: Path) -> None:
        """Write the tool's input (inventory, playbook, ...) under ``workdir``."""
        raise NotImplementedError

    def fingerprint(self) -> str | None:
        """What identifies the tool's code now (checked before every invocation: a tool whose
        code changes during the run is flagged), or None."""
        return None

    def reset(self) -> None:
        """Forget whatever the tool keeps between runs (before a repetition's first run)."""

    def invoke(self, phase: str) -> Invocation:
        """Run the tool once over the whole workload; ``phase`` is "first" or "second"."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """After every invocation, untimed (e.g. close SSH control masters)."""

    def close(self) -> None:
        """At the end, before the lab goes down: remove what ``prepare`` made outside the
        work directory."""
