"""Processes the lab starts and stops: spawn, identify, find by namespace, terminate.

The lab only ever signals processes it can prove are its own: a recorded :class:`Proc` whose
PID still has the recorded start time, or a process inside the mount namespace of a lab host
(see :func:`namespace_members`). Nothing is ever matched by name.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from fedi_run.engine.lab.state import Proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "PID (comm) STATE PPID ..." — comm may contain spaces and parentheses.
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The start time of a live (non-zombie) ``pid`` in clock ticks since boot, else None."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def identify(pid: int) -> Proc:
    """The :class:`Proc` for a process that is running now."""
    ticks = start_time(pid)
    if ticks is None:
        raise ProcessLookupError(pid)
    return Proc(pid, ticks)


def is_running(proc: Proc | None) -> bool:
    """True when ``proc`` is alive, not a zombie, and its PID was not reused."""
    return proc is not None and start_time(proc.pid) == proc.start_time


def mount_namespace(pid: int) -> str:
    """``mnt:[inode]`` of ``pid``'s mount namespace, or "" if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def machine_namespaces() -> set[str]:
    """The mount namespaces of this process and of PID 1: never a lab host's."""
    return {ns for ns in (mount_namespace(os.getpid()), mount_namespace(1)) if ns}


def namespace_members(namespaces: set[str]) -> dict[str, list[Proc]]:
    """Live processes in each of ``namespaces`` (``mnt:[inode]`` strings), by namespace.

    The machine's own namespaces (:func:`machine_namespaces`) are never searched: they are
    answered with an empty list, so a host that had not yet entered its own namespace can
    never make the caller act on every process of the machine.
    """
    members: dict[str, list[Proc]] = {ns: [] for ns in namespaces}
    namespaces = set(namespaces) - machine_namespaces()
    if not namespaces:
        return members
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            ns = mount_namespace(pid)
            if ns in members:
                ticks = start_time(pid)
                if ticks is not None:
                    members[ns].append(Proc(pid, ticks))
    return members


def mentions(pid: int, marker: str) -> bool:
    """True when ``marker`` (a path) appears in ``pid``'s mount table: proof that a namespace
    found by inode number is really the lab host's and not a later one reusing the number."""
    escaped = "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in marker)
    try:
        return escaped in Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return False


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> Proc:
    """Start ``argv`` in a new session, stdin from /dev/null, stdout and stderr appended to
    ``log_path``; return it identified. The process outlives the caller (no Popen object,
    nothing to wait for); :func:`reap` collects it if the caller is still its parent."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    pid = os.posix_spawn(
        argv[0], argv, os.environ if env is None else env, file_actions=actions, setsid=True
    )
    for _ in range(100):  # the child exists at once; its stat entry might lag a moment
        ticks = start_time(pid)
        if ticks is not None:
            return Proc(pid, ticks)
        if reap(pid):
            break
        time.sleep(0.001)
    return Proc(pid, -1)  # exited already: never "running"


def reap(pid: int) -> bool:
    """Collect ``pid`` if it is our exited child; True if it has exited (or is not ours)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return start_time(pid) is None
    return done == pid


def terminate(procs: list[Proc], timeout: float = 3.0) -> list[Proc]:
    """SIGTERM ``procs``, SIGKILL whatever still runs after ``timeout`` seconds, and wait for
    them to go. A PID is signalled only while its start time still matches, and never PID 1,
    the caller or its parent. Return the processes still alive at the end (normally none)."""

    never = {1, os.getpid(), os.getppid()}
    procs = [p for p in procs if p.pid not in never]

    def alive(candidates: list[Proc]) -> list[Proc]:
        return [p for p in candidates if not reap(p.pid) and is_running(p)]

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        for proc in alive(procs):
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while alive(procs) and time.monotonic() < deadline:
            time.sleep(0.005)
        if not alive(procs):
            return []
    return alive(procs)


def command_name(pid: int) -> str:
    """``pid``'s command name (``/proc/PID/comm``), or "" if it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
