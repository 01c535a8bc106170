"""One command on one SSH channel of an open connection: no threads, no polling.

Fabric's ``run`` drives every command with Invoke's runner: a thread per stream and loops that
wake up every ``input_sleep``, which, with many hosts in parallel on two cores, costs more CPU
than the commands. :func:`run_on_channel` opens a session channel on the connection's
transport, sends the input, and waits in ``select`` for output or the end — the cheapest way
paramiko offers.

Output is either collected (small commands: the default) or handed, chunk by chunk, to
``on_stdout``/``on_stderr`` as it arrives, so a command that prints 50 MB never makes the
deployer hold 50 MB. A peer that stops answering cannot hang it: opening the channel waits at
most ``open_timeout``, the command at most ``timeout``, and a connection that dies while the
command runs raises :class:`ConnectionLost` instead of looking like a command without an exit
status.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from dataclasses import dataclass

from fedi_run.engine.errors import ChannelTimeout, ConnectionLost


@dataclass(frozen=True)
class Finished:
    """A command's exit status (-1 when the channel closed without one) and its output (empty
    for a stream handed to a callback)."""

    exit_status: int
    stdout: bytes
    stderr: bytes


CHUNK = 65536
LOST_GRACE = 1.0
"""Seconds to wait, after a channel closed without an exit status, for the connection to end."""


def run_on_channel(
    transport,
    command: str,
    input: bytes | None,
    timeout: float | None,
    on_stdout: Callable[[bytes], None] | None = None,
    on_stderr: Callable[[bytes], None] | None = None,
    open_timeout: float | None = None,
    send_eof: bool = True,
) -> Finished:
    """Run ``command`` on a new session channel of ``transport``; ``input`` is sent to its
    stdin, followed by EOF unless ``send_eof`` is False (a job's lifeline: its stdin then ends
    only with the channel, see ``engine.execute.jobs``). Raises :class:`ChannelTimeout`,
    :class:`ConnectionLost`, or paramiko's/the socket's errors when the connection breaks."""
    deadline = None if timeout is None else time.monotonic() + timeout
    if open_timeout is None or (timeout is not None and timeout < open_timeout):
        open_timeout = timeout
    channel = transport.open_session(timeout=open_timeout)
    try:
        channel.exec_command(command)
        if input is not None:
            channel.sendall(input)
            if send_eof:
                channel.shutdown_write()
        stdout, stderr = bytearray(), bytearray()
        out = stdout.extend if on_stdout is None else on_stdout
        err = stderr.extend if on_stderr is None else on_stderr
        out_open = err_open = True
        while out_open or err_open or not channel.exit_status_ready():
            progressed = False
            if channel.recv_ready() or (
                out_open and channel.eof_received and not channel.recv_ready()
            ):
                data = channel.recv(CHUNK)
                if data:
                    out(data)
                out_open = bool(data)
                progressed = True
            if channel.recv_stderr_ready() or (
                err_open and channel.eof_received and not channel.recv_stderr_ready()
            ):
                data = channel.recv_stderr(CHUNK)
                if data:
                    err(data)
                err_open = bool(data)
                progressed = True
            if progressed:
                if deadline is not None and time.monotonic() > deadline:
                    raise ChannelTimeout()  # a command that never stops printing
                continue
            if channel.closed and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            if not transport.is_active():
                raise ConnectionLost("the host closed it")
            wait = 1.0
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise ChannelTimeout()
                wait = min(wait, 1.0)
            select.select([channel], [], [], wait)
        if channel.exit_status == -1:  # paramiko's value until an exit status arrives
            # No exit status: the command was killed by a signal, or its sshd went away — a
            # dying sshd may still close the channel properly just before the connection
            # ends, so give the connection a moment to show which.
            if not channel.eof_received or not transport.is_active():
                raise ConnectionLost("the host closed it")
            transport.join(LOST_GRACE)
            if not transport.is_active():
                raise ConnectionLost("the host closed it")
            status = -1
        else:
            status = channel.exit_status
        return Finished(status, bytes(stdout), bytes(stderr))
    finally:
        channel.close()
