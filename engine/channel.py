"""One command on one SSH channel of an open connection: no threads, no polling.

Fabric's ``run`` drives every command with Invoke's runner: a thread per stream and loops that
wake up every ``input_sleep``, which, with many hosts in parallel on two cores, costs more CPU
than the commands. :func:`execute` opens a session channel on the connection's transport, sends
the input, and waits in ``select`` for output or the end — the cheapest way paramiko offers.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass


class ChannelTimeout(Exception):
    """The command did not end within its timeout (its channel was closed)."""


@dataclass(frozen=True)
class Finished:
    """A command's exit status (-1 when the channel closed without one) and its output."""

    exit_status: int
    stdout: bytes
    stderr: bytes


CHUNK = 65536


def execute(transport, command: str, input: bytes | None, timeout: float | None) -> Finished:
    """Run ``command`` on a new session channel of ``transport``; ``input`` is sent to its
    stdin followed by EOF. Raises :class:`ChannelTimeout`, or paramiko's/the socket's errors
    when the connection breaks."""
    deadline = None if timeout is None else time.monotonic() + timeout
    channel = transport.open_session(timeout=timeout)
    try:
        channel.exec_command(command)
        if input is not None:
            channel.sendall(input)
            channel.shutdown_write()
        stdout, stderr = bytearray(), bytearray()
        out_open = err_open = True
        while out_open or err_open or not channel.exit_status_ready():
            progressed = False
            if channel.recv_ready() or (out_open and channel.eof_received and not channel.recv_ready()):
                data = channel.recv(CHUNK)
                stdout += data
                out_open = bool(data)
                progressed = True
            if channel.recv_stderr_ready() or (err_open and channel.eof_received and not channel.recv_stderr_ready()):
                data = channel.recv_stderr(CHUNK)
                stderr += data
                err_open = bool(data)
                progressed = True
            if progressed:
                continue
            if channel.closed and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            wait = 1.0
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise ChannelTimeout()
                wait = min(wait, 1.0)
            select.select([channel], [], [], wait)
        status = channel.recv_exit_status() if channel.exit_status_ready() else -1
        return Finished(status, bytes(stdout), bytes(stderr))
    finally:
        channel.close()
