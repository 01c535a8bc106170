"""A process that ends with the one that started it, however that one ends (``kill -9`` too).

The parent makes a pipe (:func:`pipe`) and keeps its only write end — close-on-exec, so no
other process it starts holds it — and passes the read end to the child (``pass_fds``), its
number in the child's environment variable :data:`VARIABLE` (:func:`child_environment`). The
parent never writes to it: when the parent process ends, the kernel closes the write end and
the child reads EOF. The engine's local jobs watch their deployer the same way
(:data:`fedi_run.engine.execute.jobs.LOCAL`).

The child takes its lifeline (:func:`inherited`) when it starts, and :func:`watch`es it once
its SIGTERM handling is in place. Without :data:`VARIABLE` nothing happens (a process started by
hand, or by a supervisor that passes none, is unaffected); with it, a daemon thread blocks
reading the pipe and, on EOF, sends SIGTERM to the process's main thread — the process shuts
down exactly as SIGTERM makes it — then, if it is still there ``deadline`` seconds later, ends
it (``os._exit``): it never lingers.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Mapping

from fedi_run.engine.errors import PanelError

VARIABLE = "FEDI_RUN_PANEL_LIFELINE"
"""The environment variable naming the child's read end (a file descriptor number)."""
EXIT_DEADLINE = 1
"""The exit status of a process that had not shut down ``deadline`` seconds after its EOF."""


def pipe() -> tuple[int, int]:
    """A new lifeline: ``(read end, write end)``, both close-on-exec. The parent passes the
    read end to one child (``pass_fds``, :func:`child_environment`), closes its own copy of it,
    and keeps the write end for as long as the child is to live."""
    return os.pipe()


def child_environment(env: Mapping[str, str], read_end: int | None) -> dict[str, str]:
    """``env`` with :data:`VARIABLE` naming ``read_end``; None: without it (a child given no
    lifeline must not take another's number for its own)."""
    environment = dict(env)
    if read_end is None:
        environment.pop(VARIABLE, None)
    else:
        environment[VARIABLE] = str(read_end)
    return environment


def inherited() -> int | None:
    """This process's lifeline: the descriptor :data:`VARIABLE` names (None: no variable).
    The variable is taken out of ``os.environ`` and the descriptor made close-on-exec, so the
    processes this one starts see neither. One that names no open pipe or socket:
    :class:`PanelError`."""
    value = os.environ.pop(VARIABLE, None)
    if not value:
        return None
    try:
        fd = int(value)
        mode = os.fstat(fd).st_mode
    except (ValueError, OSError):
        raise PanelError(
            f"error: {VARIABLE}={value!r} names no open file descriptor (expected the read end "
            "of a pipe the parent process keeps the write end of)"
        ) from None
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        raise PanelError(f"error: {VARIABLE}={value!r} is not a pipe or a socket")
    os.set_inheritable(fd, False)
    return fd


def watch(fd: int | None, name: str, deadline: float) -> None:
    """Watch the lifeline ``fd`` (from :func:`inherited`; None: nothing to watch) in a daemon
    thread (see the module's docstring). Called where a SIGTERM is handled as it should be:
    the EOF may be there already. ``name`` begins the messages on stderr."""
    if fd is None:
        return
    threading.Thread(
        target=_wait_for_eof, args=(fd, name, deadline), daemon=True, name="lifeline"
    ).start()


def _wait_for_eof(fd: int, name: str, deadline: float) -> None:
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    _say(f"{name}: the process that started it has ended (its lifeline closed): stopping")
    try:  # to the main thread: a system call it waits in is interrupted, the handler runs
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
    except OSError:
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(deadline)
    _say(f"{name}: not stopped {deadline:g} s after its lifeline closed: exiting")
    os._exit(EXIT_DEADLINE)


def _say(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed: the message is lost, the rest goes on
        pass
