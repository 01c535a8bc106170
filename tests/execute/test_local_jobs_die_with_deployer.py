"""A deployer-local command (``nixops4 apply``) ends with the deployer, however the deployer
ends: SIGKILLed — no clean-up of its own runs — its local command's whole process group is
ended (SIGTERM, SIGKILL ``KILL_AFTER`` later), so that a later ``--resume`` cannot start a
second apply beside it. While the deployer lives, the command is left alone.

Real processes: a deployer (a small Python script that starts the command with
``Jobs.start_local`` from a worker thread, as the scheduler does; or the ``fedi-run`` CLI with
a ``nixops4`` that sleeps), SIGKILLed by the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fedi_run.engine.execute.jobs import KILL_AFTER


def group_members(pgid: int) -> list[int]:
    """The running (not zombie) processes of the process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for_pids(path: Path, count: int, process: subprocess.Popen) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            pids = [int(word) for word in path.read_text().split()]
            if len(pids) >= count:
                return pids
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError(f"no {count} pids in {path}")


def gone(pgid: int, pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while group_members(pgid) or any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def end_group(pgid: int) -> None:
    """Clean-up: the group the test's deployer started, if anything of it is left."""
    if group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


DEPLOYER = textwrap.dedent(
    """
    import subprocess, sys, threading, time
    from fedi_run.engine.execute.jobs import Jobs

    jobs = Jobs()
    def start():  # from a worker thread that then ends, as the scheduler's do
        jobs.start_local(
            ["sh", "-c", sys.argv[1]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    print("started", flush=True)
    time.sleep(600)
    """
)


def start_deployer(pids: Path, ignores_term: bool) -> subprocess.Popen:
    # the command's shell (the group's leader) and its child each record their pid
    script = ("trap '' TERM; " if ignores_term else "") + (
        f"echo $$ >> {pids}; sleep 300 & echo $! >> {pids}; wait"
    )
    return subprocess.Popen(
        [sys.executable, "-c", DEPLOYER, script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("ignores_term", [False, True])
def test_a_local_command_ends_when_its_deployer_is_killed(tmp_path, ignores_term):
    pids = tmp_path / "pids"
    deployer = start_deployer(pids, ignores_term)
    try:
        leader, child = wait_for_pids(pids, 2, deployer)
        assert os.getpgid(leader) == leader and os.getpgid(child) == leader
        assert leader != deployer.pid
        deployer.kill()  # SIGKILL: nothing of the deployer's own runs any more
        deployer.wait()
        within = 3 + (KILL_AFTER if ignores_term else 0)
        assert gone(leader, [leader, child], within), (
            f"the local command outlived its deployer: {group_members(leader)} still run"
        )
    finally:
        if deployer.poll() is None:
            deployer.kill()
            deployer.wait()
        if pids.exists() and pids.read_text().split():
            end_group(int(pids.read_text().split()[0]))


def test_a_local_command_runs_on_while_its_deployer_lives(tmp_path):
    """The control: the check above can fail — the same command, its deployer alive, runs on."""
    pids = tmp_path / "pids"
    deployer = start_deployer(pids, ignores_term=False)
    try:
        leader, child = wait_for_pids(pids, 2, deployer)
        assert not gone(leader, [leader, child], within=3 + KILL_AFTER)
        assert alive(leader) and alive(child)
        assert deployer.poll() is None
    finally:
        deployer.kill()
        deployer.wait()
        if pids.exists() and pids.read_text().split():
            leader = int(pids.read_text().split()[0])
            if not gone(leader, [], within=3 + KILL_AFTER):
                end_group(leader)


SLEEPING_NIXOPS4 = """#!/bin/sh
echo $$ >> "$NIXOPS4_PIDS"
echo "applying (stand-in: sleeping)"
sleep 120 &
echo $! >> "$NIXOPS4_PIDS"
wait
"""


def test_nixops4_apply_ends_when_fedi_run_is_killed(tmp_path):
    """``fedi-run run`` as a process, a playbook whose only work is the render and the apply,
    and a nixops4 that would take two minutes: ``kill -9`` of fedi-run ends the apply too."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nixops4").write_text(SLEEPING_NIXOPS4)
    (bin_dir / "nixops4").chmod(0o755)
    playbook = tmp_path / "playbook.toml"
    playbook.write_text(
        '[deployment]\nname = "apply"\ndomain = "apply.example.org"\n\n'
        '[hosts.web]\naddress = "127.0.0.2"\n'
    )
    pid_file = tmp_path / "nixops4.pids"
    process = subprocess.Popen(
        [sys.executable, "-m", "fedi_run.engine.cli.main", "run", str(playbook), "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "NIXOPS4_PIDS": str(pid_file),
        },
    )
    try:
        apply_pid, sleep_pid = wait_for_pids(pid_file, 2, process)
        assert os.getpgid(apply_pid) == apply_pid != os.getpgid(process.pid)
        time.sleep(0.5)
        assert alive(apply_pid) and alive(sleep_pid)  # the apply runs while fedi-run does
        process.kill()
        process.wait()
        assert gone(apply_pid, [apply_pid, sleep_pid], within=3), (
            f"nixops4 apply outlived fedi-run: {group_members(apply_pid)} still run"
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if pid_file.exists() and pid_file.read_text().split():
            end_group(int(pid_file.read_text().split()[0]))
