"""SSH to lab hosts with the pinned host key: one tuned paramiko connection per host.

A :class:`HostConnection` trusts exactly the host key recorded at ``lab up`` (loaded into the
client's host keys, ``RejectPolicy`` for anything else): a host presenting another key is
refused with :class:`LabError`. The socket has ``TCP_NODELAY``, so a command over an open
connection costs a few milliseconds; many commands may run at once (one channel each).
"""

from __future__ import annotations

import base64
import io
import shlex
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fedi_run.engine.errors import LabError
from fedi_run.engine.lab.state import HostInfo


@dataclass(frozen=True)
class CommandResult:
    """What a command run on a lab host did. ``exit_status`` is the shell's (128+N when the
    command was killed by signal N; -1 if none arrived); output is decoded as UTF-8 (invalid
    bytes replaced)."""

    host: str
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self) -> CommandResult:
        """Return self if the command succeeded, else raise :class:`LabError` with its stderr."""
        if not self.ok:
            raise LabError(
                f"error: `{self.command}` on lab host {self.host} exited with "
                f"{self.exit_status}: {self.stderr.strip() or self.stdout.strip()}"
            )
        return self


def _pump(recv, sink: BinaryIO) -> None:
    while True:
        data = recv(65536)
        if not data:
            return
        sink.write(data)
        sink.flush()


# Why the command lines are wrapped: paramiko's ``shutdown_write`` and ``send`` check that
# the channel is open, release its lock, then send. When the command has just ended, the
# transport thread may answer the server's CLOSE in that gap, and OpenSSH, receiving an EOF or
# data for a channel it has freed, drops the whole connection ("ieof packet referred to
# nonexistent channel", paramiko issue #1705). So: without input, the host's shell gives the
# command /dev/null and no EOF is sent at all; with input, the host's shell reads whatever the
# command left unread, so the server cannot close the channel before our EOF arrives.
_WITHOUT_INPUT = "{{ {command}\n}} </dev/null"
_WITH_INPUT = "( {command}\n); fedi_lab_rc=$?; cat >/dev/null; exit $fedi_lab_rc"


def _feed(source: BinaryIO, channel) -> None:
    try:
        while data := source.read1(65536) if hasattr(source, "read1") else source.read(65536):
            channel.sendall(data)
        channel.shutdown_write()
    except (OSError, EOFError):  # the command ended before reading all of its input
        pass


class HostConnection:
    """An authenticated SSH connection to one lab host, as its user, with the deployer key.

    Raises :class:`LabError` when the host is unreachable, presents a host key other than
    ``host.host_key``, or refuses the key.
    """

    def __init__(self, host: HostInfo, identity: Path, timeout: float = 10.0):
        import paramiko

        self.host = host
        key_type, key_b64 = host.host_key.split()[:2]
        pinned = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
        self._client = paramiko.SSHClient()
        self._client.get_host_keys().add(host.address, key_type, pinned)
        if host.port != 22:
            self._client.get_host_keys().add(f"[{host.address}]:{host.port}", key_type, pinned)
        self._client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            sock = socket.create_connection((host.address, host.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client.connect(
                host.address,
                port=host.port,
                username=host.user,
                key_filename=str(identity),
                sock=sock,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                look_for_keys=False,
                allow_agent=False,
            )
        except paramiko.BadHostKeyException as error:
            self._client.close()
            raise LabError(
                f"error: lab host {host.name} ({host.address}) presented a host key that is not "
                f"the pinned one ({error.key.get_name()} {error.key.get_base64()[:16]}…); "
                "refusing to connect"
            ) from error
        except (OSError, paramiko.SSHException) as error:
            self._client.close()
            raise LabError(
                f"error: cannot connect to lab host {host.name} at "
                f"{host.address}:{host.port}: {error}"
            ) from error
        self._transport = self._client.get_transport()

    def stream(
        self,
        command: str,
        stdout: BinaryIO,
        stderr: BinaryIO,
        *,
        input: bytes | BinaryIO | None = None,
        timeout: float | None = None,
    ) -> int:
        """Run ``command`` (a shell command line), writing its output to the two sinks as it
        arrives. ``input`` is its stdin: bytes, or a binary file read until its end while the
        command runs; None gives it /dev/null. Input a command does not read is dropped.
        Returns the exit status."""
        import paramiko

        try:
            channel = self._transport.open_session(timeout=10)
        except (EOFError, OSError, paramiko.SSHException) as error:
            raise LabError(
                f"error: lab host {self.host.name}: cannot open a session: "
                f"{error or type(error).__name__}"
            ) from error
        try:
            channel.settimeout(timeout)
            if input is None:
                channel.exec_command(_WITHOUT_INPUT.format(command=command))
            elif isinstance(input, (bytes, bytearray)):
                channel.exec_command(_WITH_INPUT.format(command=command))
                if input:
                    channel.sendall(input)
                channel.shutdown_write()
            else:  # a stream (`lab run` passing its stdin on): sent as it comes, like ssh
                channel.exec_command(command)
                threading.Thread(target=_feed, args=(input, channel), daemon=True).start()
            errors = threading.Thread(target=_pump, args=(channel.recv_stderr, stderr))
            errors.start()
            _pump(channel.recv, stdout)
            errors.join()
            return channel.recv_exit_status()
        except TimeoutError as error:
            raise LabError(
                f"error: `{command}` on lab host {self.host.name} timed out after {timeout} s"
            ) from error
        except (EOFError, paramiko.SSHException) as error:
            raise LabError(
                f"error: lost the connection to lab host {self.host.name} running `{command}`: "
                f"{error or type(error).__name__}"
            ) from error
        finally:
            channel.close()

    def run(
        self, command: str, *, input: bytes | str | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run ``command`` and collect its output (never raises for a non-zero exit status:
        see :meth:`CommandResult.check`)."""
        out, err = io.BytesIO(), io.BytesIO()
        data = input.encode() if isinstance(input, str) else input
        status = self.stream(command, out, err, input=data, timeout=timeout)
        return CommandResult(
            self.host.name,
            command,
            status,
            out.getvalue().decode(errors="replace"),
            err.getvalue().decode(errors="replace"),
        )

    def read_file(self, path: str) -> bytes:
        """The content of ``path`` on the host; :class:`LabError` if it cannot be read."""
        out, err = io.BytesIO(), io.BytesIO()
        if self.stream(f"cat -- {shlex.quote(path)}", out, err) != 0:
            raise LabError(
                f"error: cannot read {path} on lab host {self.host.name}: "
                f"{err.getvalue().decode(errors='replace').strip()}"
            )
        return out.getvalue()

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Create or replace ``path`` on the host with ``data`` and ``mode`` (parent
        directories are created)."""
        q = shlex.quote(path)
        command = (
            f'mkdir -p -- "$(dirname -- {q})" && (umask 077 && cat > {q}) && chmod {mode:o} -- {q}'
        )
        raw = data.encode() if isinstance(data, str) else data
        out, err = io.BytesIO(), io.BytesIO()
        if self.stream(command, out, err, input=raw) != 0:
            raise LabError(
                f"error: cannot write {path} on lab host {self.host.name}: "
                f"{err.getvalue().decode(errors='replace').strip()}"
            )

    @property
    def active(self) -> bool:
        """True while the connection is up (False after the host went away)."""
        return self._transport is not None and self._transport.is_active()

    def close(self) -> None:
        self._client.close()
