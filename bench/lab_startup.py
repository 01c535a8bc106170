#!/usr/bin/env python3
"""How fast the lab starts: median `lab up` time for 1 and 16 hosts, Pebble, and a command.

Run as root: ``python bench/lab_startup.py [--repeat N]``. Each repetition starts a lab in a
fresh temporary directory, times :func:`fedi_run.engine.lab.control.up` (until every sshd
listens, or Pebble answers over HTTPS), and stops it again. The goals from the lab issue:
one host in under 0.5 s, 16 hosts in under 5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from fedi_run.engine.lab import control
from fedi_run.engine.lab.session import Lab


def time_up(hosts: list[str], acme: bool, repeat: int) -> list[float]:
    timings = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="fedi-lab-bench-") as base:
            directory = Path(base) / "lab"
            start = time.perf_counter()
            control.up(directory, hosts, acme=acme)
            timings.append(time.perf_counter() - start)
            control.down(directory)
    return timings


def time_commands(repeat: int) -> tuple[list[float], list[float]]:
    """Per-command cost over an open connection: the lab's paramiko client, and the system
    ssh with a ControlMaster (the login shell's cost shows in both)."""
    with tempfile.TemporaryDirectory(prefix="fedi-lab-bench-") as base:
        with Lab.up(Path(base) / "lab", ["bench"]) as lab:
            lab.run("bench", "true", check=True)  # connect
            paramiko_runs = []
            for _ in range(repeat):
                start = time.perf_counter()
                lab.run("bench", "true", check=True)
                paramiko_runs.append(time.perf_counter() - start)
            host = lab.hosts["bench"]
            ssh = [
                "ssh",
                "-F",
                "/dev/null",
                "-i",
                str(lab.identity),
                "-o",
                "BatchMode=yes",
                "-o",
                f"UserKnownHostsFile={lab.known_hosts_path}",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ControlMaster=auto",
                "-o",
                f"ControlPath={base}/cm-%C",
                "-o",
                "ControlPersist=30",
                f"root@{host.address}",
                "true",
            ]
            subprocess.run(ssh, check=True)  # opens the master connection
            ssh_runs = []
            for _ in range(repeat // 4 or 1):
                start = time.perf_counter()
                subprocess.run(ssh, check=True)
                ssh_runs.append(time.perf_counter() - start)
            subprocess.run([*ssh[:-2], "-O", "exit", ssh[-2]], capture_output=True)
    return paramiko_runs, ssh_runs


def report(label: str, timings: list[float], goal: float | None = None) -> None:
    median = statistics.median(timings)
    verdict = (
        ""
        if goal is None
        else f"  goal < {goal * 1000:.0f} ms: " + ("met" if median < goal else "MISSED")
    )
    print(
        f"{label:<34} median {median * 1000:8.1f} ms  min {min(timings) * 1000:8.1f} ms"
        f"  max {max(timings) * 1000:8.1f} ms  (n={len(timings)}){verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    report("lab up, 1 host", time_up(["one"], False, args.repeat), 0.5)
    report("lab up, 16 hosts", time_up([f"h{i:02d}" for i in range(16)], False, args.repeat), 5.0)
    report("lab up, Pebble only (--acme)", time_up([], True, args.repeat))
    report(
        "lab up, 4 hosts + Pebble",
        time_up(["garage", "mastodon", "peertube", "pixelfed"], True, args.repeat),
    )
    paramiko_runs, ssh_runs = time_commands(100)
    report("command `true`, lab connection", paramiko_runs)
    report("command `true`, ssh ControlMaster", ssh_runs)


if __name__ == "__main__":
    main()
