"""A stand-in for :class:`~fedi_run.engine.execute.connection.ConnectionPool`: no SSH, no root.

:class:`FakePool` has what the executor uses of the real pool — ``pool[name]`` giving a
connection, ``close_all()`` — and its :class:`FakeConnection` what the executor and
``perform`` use of :class:`~fedi_run.engine.execute.connection.HostConnection`: ``name``,
``run(command, input, timeout, stdout, stderr)`` returning a ``CommandResult``, ``get(remote)``
and ``close()``.

Each command is run for real, by a local ``sh``, wrapped exactly as ``HostConnection.run``
wraps it for the remote shell (a job: ``engine.execute.jobs``), its "channel" hung up on a
timeout or a close as sshd does when its client goes — pipes closed, nothing killed — so
the scripts ``engine/execute/scripts.py`` compiles are executed and their report markers
parsed for real. The tests using it must therefore point
their operations at paths under a ``tmp_path`` (every "host" is this machine, as this user).

Every call is recorded (:class:`Call`: host, command, stdin, timeout, which connection of the
host, thread, start and end on the monotonic clock, how it ended), and faults are programmed
on top with :meth:`FakePool.on`: lose the connection, answer without running, delay, time
out, or call back into the test (to stop the run mid-task). A host named in ``unreachable``
(or ``rejected``) cannot be connected to at all, as when the real connection's retries are
exhausted (or the host key is refused).
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fedi_run.engine.errors import (
    CommandTimedOut,
    FediRunError,
    HostKeyRejected,
    HostUnreachable,
)
from fedi_run.engine.execute.connection import CommandResult
from fedi_run.engine.execute.jobs import remote_job

CHUNK = 61
"""Bytes per ``stdout`` callback: small and odd, so that report markers arrive split across
chunks, as they may from a real channel."""


@dataclass
class Call:
    """One ``run`` the executor asked for, as the fake saw it."""

    host: str
    command: str
    input: bytes | None
    timeout: float | None
    generation: int
    """Which connection of the host ran it: 1 the first, 2 the one opened after a loss..."""
    thread: int
    start: float
    end: float | None = None
    exit_status: int | None = None
    raised: str = ""
    """The exception the call ended with (``"HostUnreachable: lost the connection..."``)."""

    def contains(self, text: str) -> bool:
        """Whether ``text`` is in the command or its stdin."""
        return text in self.command or (self.input is not None and text.encode() in self.input)


Action = Callable[["FakeConnection", Call], "CommandResult | None"]
"""What a rule does for a matching call: raise, return the call's result (nothing is run), or
return None (the command then runs for real)."""


@dataclass
class Rule:
    """``then`` for the calls on ``host`` (any: None) whose command contains ``when`` (any:
    None), the first ``times`` matching calls (every one: None)."""

    then: Action
    when: str | None = None
    host: str | None = None
    times: int | None = 1
    used: int = 0

    def matches(self, host: str, call: Call) -> bool:
        return (
            (self.host is None or self.host == host)
            and (self.when is None or call.contains(self.when))
            and (self.times is None or self.used < self.times)
        )


# actions ---------------------------------------------------------------------------------


def lose(after_running: bool = False) -> Action:
    """The connection breaks during the command (before it ran, or after it ran to its end):
    ``HostUnreachable("lost the connection to <host>: ...", lost=True)``, as ``HostConnection.run``
    raises it; the connection is forgotten, so the next command opens a fresh one."""

    def action(connection: FakeConnection, call: Call) -> None:
        if after_running:
            connection._sh(call, None, None)
        connection._forget()
        raise HostUnreachable(
            f"lost the connection to {connection.name}: fake: connection reset", lost=True
        )

    return action


def answer(exit_status: int = 0, stdout: bytes = b"", stderr: bytes = b"") -> Action:
    """The command "ran" and ended with ``exit_status`` and this output (nothing is run)."""

    def action(connection: FakeConnection, call: Call) -> CommandResult:
        return CommandResult(exit_status, stdout, stderr)

    return action


def delay(seconds: float) -> Action:
    """Wait ``seconds`` (a slow host), then run the command for real."""

    def action(connection: FakeConnection, call: Call) -> None:
        time.sleep(seconds)

    return action


def time_out() -> Action:
    """The command runs past its timeout (without waiting for it): ``CommandTimedOut``."""

    def action(connection: FakeConnection, call: Call) -> None:
        raise CommandTimedOut(f"timed out after {call.timeout:g} s on {connection.name}")

    return action


def notify(callback: Callable[[], object]) -> Action:
    """Call ``callback()`` (from the executor's worker thread) as the command starts, then run
    it for real: to stop a run while a given task runs."""

    def action(connection: FakeConnection, call: Call) -> None:
        callback()

    return action


# the pool --------------------------------------------------------------------------------


def _wrapped(command: str, input: bytes | None) -> tuple[str, bytes, bool]:
    """The command line, stdin and whether EOF follows it, as ``HostConnection.run`` sends
    them (a job: the real wrapper, no EOF)."""
    line, data = remote_job(command, input)
    return line, data, False


class _Channel:
    """One command's "channel" to its local ``sh``: stdin fed (and kept open, or closed, as
    the real client does), the output read as it comes, and :meth:`hang_up` — what sshd does
    when its client closes the channel or goes away: stdin and the output pipes closed."""

    def __init__(self, process: subprocess.Popen, stdin: int):
        self.process = process
        self.hung_up = False
        self._stdin = stdin
        self._closing = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        self._users = 2  # feed and read: the last one out closes the wake-up pipe
        self._users_lock = threading.Lock()

    def _leave(self) -> None:
        with self._users_lock:
            self._users -= 1
            if self._users:
                return
        os.close(self._wake_read)
        os.close(self._wake_write)

    def feed(self, data: bytes, send_eof: bool) -> None:
        """Write ``data`` to the command's stdin; then close it at once (``send_eof``) or when
        the command ends or the channel is hung up."""
        fd, view = self._stdin, memoryview(data)
        os.set_blocking(fd, False)
        try:
            while view and not self._closing.is_set():
                ready = select.select([self._wake_read], [fd], [])[1]
                if ready:
                    try:
                        view = view[os.write(fd, view[:65536]) :]
                    except BlockingIOError:
                        continue
            if not send_eof:
                self._closing.wait()
        except OSError:  # the command closed its stdin
            pass
        finally:
            os.close(fd)
            self._leave()

    def read(self, timeout: float | None, on_stdout, on_stderr) -> tuple[bytes, bytes]:
        """The output until the command ends (each stream to its callback when given, in small
        chunks); ``subprocess.TimeoutExpired`` after ``timeout``; returns early when hung up."""
        try:
            return self._read(timeout, on_stdout, on_stderr)
        finally:
            self._leave()

    def _read(self, timeout: float | None, on_stdout, on_stderr) -> tuple[bytes, bytes]:
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        streams = {
            self.process.stdout.fileno(): (out, on_stdout),
            self.process.stderr.fileno(): (err, on_stderr),
        }
        while streams and not self.hung_up:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise subprocess.TimeoutExpired("sh", timeout)
            ready = select.select([*streams, self._wake_read], [], [], wait)[0]
            for fd in ready:
                if fd == self._wake_read:
                    continue
                data = os.read(fd, 65536)
                if not data:
                    del streams[fd]
                    continue
                collected, callback = streams[fd]
                if callback is None:
                    collected.extend(data)
                else:
                    for start in range(0, len(data), CHUNK):
                        callback(data[start : start + CHUNK])
        if self.hung_up:
            self.release()
            return bytes(out), bytes(err)
        try:
            self.process.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        finally:
            self._closing.set()
        self.release(wait=False)
        return bytes(out), bytes(err)

    def hang_up(self) -> None:
        """The client went: stdin and the output pipes are closed; nothing is killed."""
        with self._users_lock:
            self.hung_up = True
            self._closing.set()
            if self._users:
                os.write(self._wake_write, b"x")

    def release(self, wait: bool = True) -> None:
        """Close our ends of the output pipes; a command still running is reaped when it
        ends (by a thread of its own)."""
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()
        if wait:
            threading.Thread(target=self.process.wait, daemon=True).start()


class FakeConnection:
    """The fake connection to one host (thread-safe, like the real one)."""

    def __init__(self, name: str, pool: FakePool):
        self.name = name
        self.pool = pool
        self.generation = 0
        self._connected = False
        self._running: set[_Channel] = set()
        self._lock = threading.Lock()

    def _open(self) -> int:
        with self._lock:
            if self._connected:
                return self.generation
            self.pool.connects[self.name] = self.pool.connects.get(self.name, 0) + 1
            if self.name in self.pool.rejected:
                reason = self.pool.rejected[self.name]
                raise HostKeyRejected(f"host {self.name} has an unknown host key (fake): {reason}")
            if self.name in self.pool.unreachable:
                reason = self.pool.unreachable[self.name]
                raise HostUnreachable(f"cannot connect to {self.name} (fake): {reason}")
            self.generation += 1
            self._connected = True
            return self.generation

    def _forget(self) -> None:
        with self._lock:
            self._connected = False
            running = list(self._running)
        for channel in running:
            channel.hang_up()

    def run(
        self,
        command: str,
        input: bytes | None = None,
        timeout: float | None = None,
        stdout=None,
        stderr=None,
    ) -> CommandResult:
        """As ``HostConnection.run``: ``sh -c`` semantics, ``input`` on stdin, the streams to
        the callbacks when given; ``CommandTimedOut`` after ``timeout``; ``HostUnreachable``
        when the host cannot be reached or the connection is lost."""
        call = Call(
            self.name,
            command,
            input,
            timeout,
            self.generation,
            threading.get_ident(),
            time.monotonic(),
        )
        self.pool._record(call)
        try:
            call.generation = self._open()
            result = None
            for rule in self.pool._rules_for(self.name, call):
                if self.pool._use(rule):
                    result = rule.then(self, call)
                    if result is not None:
                        break
            if result is None:
                result = self._sh(call, stdout, stderr)
            elif stdout is not None or stderr is not None:
                if stdout is not None and result.stdout:
                    stdout(result.stdout)
                if stderr is not None and result.stderr:
                    stderr(result.stderr)
                result = CommandResult(result.exit_status, b"", b"")
            call.exit_status = result.exit_status
            return result
        except BaseException as error:
            call.raised = f"{type(error).__name__}: {error}"
            raise
        finally:
            call.end = time.monotonic()

    def _sh(self, call: Call, stdout, stderr) -> CommandResult:
        """Run the call's command with a local ``sh``, as sshd runs it: the command line and
        stdin as ``HostConnection.run`` makes them, the output read as it comes. A timeout or
        a close of the connection hangs the "channel" up as sshd does when its client goes:
        the command's stdin and output pipes are closed — nothing is killed (what then still
        runs is the wrapper's business, as on a real host)."""
        line, data, send_eof = _wrapped(call.command, call.input)
        read_end, write_end = os.pipe()
        process = subprocess.Popen(
            ["sh", "-c", line],
            stdin=read_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a session of its own, as sshd gives every command
            env={**os.environ, "LC_ALL": "C"},
        )
        os.close(read_end)
        channel = _Channel(process, write_end)
        with self._lock:
            self._running.add(channel)
        threading.Thread(target=channel.feed, args=(data, send_eof), daemon=True).start()
        try:
            out, err = channel.read(call.timeout, stdout, stderr)
        except subprocess.TimeoutExpired:
            channel.hang_up()
            channel.release()
            raise CommandTimedOut(f"timed out after {call.timeout:g} s on {self.name}") from None
        finally:
            with self._lock:
                self._running.discard(channel)
        if channel.hung_up:  # the connection was closed under the command
            raise HostUnreachable(f"lost the connection to {self.name}: fake: closed", lost=True)
        return CommandResult(process.returncode, out, err)

    def get(self, remote: str) -> bytes:
        """The content of the "host's" file ``remote`` (this machine's)."""
        try:
            return Path(remote).read_bytes()
        except OSError as error:
            raise FediRunError(f"cannot fetch {remote} from {self.name}: {error}") from None

    def close(self) -> None:
        """Close the connection: a command running on it ends with ``HostUnreachable``."""
        self._forget()


class FakePool:
    """One :class:`FakeConnection` per host name, created on first use; records every call."""

    def __init__(
        self,
        unreachable: Mapping[str, str] | Iterable[str] = (),
        rejected: Mapping[str, str] | Iterable[str] = (),
    ):
        self.unreachable = _reasons(unreachable, "Connection refused")
        self.rejected = _reasons(rejected, "refused")
        self.calls: list[Call] = []
        self.connects: dict[str, int] = {}
        """Per host, how many times a connection was attempted."""
        self.closed_all = 0
        self._rules: list[Rule] = []
        self._connections: dict[str, FakeConnection] = {}
        self._lock = threading.Lock()

    def on(
        self, then: Action, when: str | None = None, host: str | None = None, times: int | None = 1
    ) -> Rule:
        """Program a fault: see :class:`Rule`. Rules apply in the order they were added."""
        rule = Rule(then, when, host, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def __getitem__(self, name: str) -> FakeConnection:
        with self._lock:
            if name not in self._connections:
                self._connections[name] = FakeConnection(name, self)
            return self._connections[name]

    def close_all(self) -> None:
        """Close every connection that was opened (killing what runs on it)."""
        with self._lock:
            self.closed_all += 1
            connections = list(self._connections.values())
        for connection in connections:
            connection.close()

    # what happened ------------------------------------------------------------------------

    def calls_on(self, host: str) -> list[Call]:
        """The calls on ``host``, in the order they started."""
        return [call for call in self.calls if call.host == host]

    def calls_with(self, text: str) -> list[Call]:
        """The calls whose command or stdin contains ``text``, in the order they started."""
        return [call for call in self.calls if call.contains(text)]

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _rules_for(self, host: str, call: Call) -> list[Rule]:
        with self._lock:
            return [rule for rule in self._rules if rule.matches(host, call)]

    def _use(self, rule: Rule) -> bool:
        """Count one use of ``rule``; False when it was used up meanwhile (another thread)."""
        with self._lock:
            if rule.times is not None and rule.used >= rule.times:
                return False
            rule.used += 1
            return True


def _reasons(hosts: Mapping[str, str] | Iterable[str], default: str) -> dict[str, str]:
    if isinstance(hosts, Mapping):
        return dict(hosts)
    return dict.fromkeys(hosts, default)


def max_concurrency(calls: Iterable[Call]) -> int:
    """The most calls of ``calls`` that were running at one moment."""
    points = []
    for call in calls:
        assert call.end is not None, f"call on {call.host} did not end"
        points += [(call.start, 1), (call.end, -1)]
    running = most = 0
    for _, step in sorted(points, key=lambda p: (p[0], p[1])):  # an end before a start at a tie
        running += step
        most = max(most, running)
    return most
