"""SSH to the targets: one tuned Fabric connection per host for the whole run.

Contract of :class:`HostConnection`:

* opened lazily by the first command, closed by :meth:`ConnectionPool.close_all`; never a
  connection or process per task;
* host keys: the inventory's pinned ``host_key`` is the only key accepted for that host;
  without one, the user's known_hosts file decides. An unknown host is refused unless
  ``accept_new`` (then its key is recorded in that file); a changed key is always refused,
  loudly. Paramiko's AutoAddPolicy (Fabric's default) is never used;
* tuned: ``TCP_NODELAY`` on the transport's socket, and each command on a session channel of
  the connection's transport, waited for in ``select`` (``engine.channel``) rather than through
  Invoke's runner threads and polling — about 2–4 ms a command on loopback instead of 44 ms;
* connecting is retried (``retries`` times, with exponential backoff) before the host is given
  up as unreachable (:class:`HostUnreachable`);
* an observer (:meth:`ConnectionPool.observe`) is told each attempt to connect, its outcome
  and each connection lost: ``observer(host, state, detail, attempt)``, ``state`` one of
  ``connecting``, ``connected``, ``retry``, ``failed``, ``lost`` (``-vv`` shows them).
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fedi_run.engine.errors import (
    ChannelTimeout,
    CommandTimedOut,
    ConnectionLost,
    FediRunError,
    HostKeyRejected,
    HostUnreachable,
    NewHostKey,
)
from fedi_run.engine.model.playbook import HostSection
from fedi_run.engine.private_files import make_private_dirs

# paramiko logs what its transport thread meets (a reset connection, with a traceback) and,
# with no logging configured, Python prints that on stderr; the engine reports these errors
# itself, in words. A handler of paramiko's own stops the printing (records still propagate
# to the application's handlers, if it has any).
logging.getLogger("paramiko").addHandler(logging.NullHandler())

INPUT_SLEEP = 0.001
"""Seconds between the runner's polls of a running command (Invoke's default is 0.01)."""
CONNECT_TIMEOUT = 10
Observer = Callable[[str, str, str, int], None]
"""``observer(host, state, detail, attempt)``: see the module docstring."""


@dataclass(frozen=True)
class CommandResult:
    """What a command did: its exit status and its output, as bytes."""

    exit_status: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class HostKeyPolicy:
    """How hosts are trusted and reached: the user's ``known_hosts`` file, whether an unknown
    host may be accepted (and recorded there), and seconds to wait for a connection."""

    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    accept_new: bool = False
    connect_timeout: float = CONNECT_TIMEOUT


def _known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def identity_problem(path: str) -> str | None:
    """What keeps the private key file ``path`` (a host's ``identity``) from logging in, or
    None: it is loaded as a connection loads it — paramiko's ``key_filename``, tried as an RSA,
    ECDSA and Ed25519 key, with no passphrase — so a run finds out before any host is
    contacted, not after some hosts were changed."""
    import paramiko

    key_path = path.removesuffix("-cert.pub")  # paramiko loads a certificate's private key
    for kind in (paramiko.RSAKey, paramiko.ECDSAKey, paramiko.Ed25519Key):
        try:
            kind.from_private_key_file(key_path)
        except paramiko.PasswordRequiredException:
            return (
                "is protected by a passphrase, and fedi-run logs in with the key as it is (it "
                "asks for no passphrase); give it a key without one, kept readable only by you"
            )
        except OSError as error:
            return f"cannot be read: {error.strerror or error}"
        except (paramiko.SSHException, ValueError, TypeError, IndexError, UnicodeError):
            continue
        else:
            return None
    return (
        "is not a private key fedi-run can log in with; expected an OpenSSH or PEM private key "
        "(ed25519, ECDSA or RSA), such as ~/.ssh/id_ed25519 — not its .pub file"
    )


def _fast_remote_class():
    from fabric.runners import Remote

    class FastRemote(Remote):
        """Fabric's remote runner with a short poll interval."""

        input_sleep = INPUT_SLEEP

    return FastRemote


_RUNNER = None


def _runner():
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = _fast_remote_class()
    return _RUNNER


class _CheckNewHostKey:
    """paramiko's policy for a key not recorded for the host: refused — unless ``record`` (a
    known_hosts file) is given, then accepted and appended there (0600; missing directories
    0700). A host that has a key of another type recorded is refused even then: that is a
    changed key, not a new host. A refusal raises :class:`NewHostKey`.

    Every connection gets this policy, so an unknown key always ends here, as a structured
    error: paramiko's own refusal (``RejectPolicy``: a bare ``SSHException`` whose only trace
    of the cause is its text, "not found in known_hosts") is never installed."""

    def __init__(self, record: Path | None, lock: threading.Lock):
        self.record = record
        self.lock = lock

    def missing_host_key(self, client, hostname, key) -> None:  # paramiko's policy API
        recorded = client.get_host_keys().lookup(hostname)
        if recorded or self.record is None:
            raise NewHostKey(key, list(recorded.values()) if recorded else [])
        client.get_host_keys().add(hostname, key.get_name(), key)
        with self.lock:
            make_private_dirs(self.record.parent)
            descriptor = os.open(self.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(descriptor, "a") as handle:
                handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def _describe_key(key) -> str:
    return f"{key.get_name()} {key.fingerprint}"


class HostConnection:
    """The connection to one host; thread-safe (each command gets its own channel)."""

    def __init__(
        self,
        name: str,
        host: HostSection,
        policy: HostKeyPolicy,
        retries: int = 2,
        known_hosts_lock: threading.Lock | None = None,
    ):
        self.name = name
        self.host = host
        self.policy = policy
        self.retries = retries
        self._lock = threading.Lock()
        self._known_hosts_lock = known_hosts_lock or threading.Lock()
        self._connection = None
        self.observer: Observer | None = None
        """Told how the connection goes (see the module docstring); None: nobody."""

    def _tell(self, state: str, detail: str = "", attempt: int = 0) -> None:
        observer = self.observer
        if observer is not None:
            observer(self.name, state, detail, attempt)

    def _new_connection(self):
        import fabric
        import paramiko

        config = fabric.Config(
            overrides={"runners": {"remote": _runner()}, "load_ssh_configs": False}
        )
        timeout = self.policy.connect_timeout
        connect_kwargs: dict[str, object] = {
            "allow_agent": False,
            "look_for_keys": False,
            "banner_timeout": timeout,
            "auth_timeout": timeout,
            "channel_timeout": timeout,
        }
        if self.host.identity:
            connect_kwargs["key_filename"] = self.host.identity
        else:
            connect_kwargs["look_for_keys"] = True
            connect_kwargs["allow_agent"] = True
        connection = fabric.Connection(
            self.host.address,
            user=self.host.user,
            port=self.host.port,
            config=config,
            connect_timeout=timeout,
            connect_kwargs=connect_kwargs,
        )
        client = connection.client
        keys = client.get_host_keys()
        name = _known_hosts_name(self.host.address, self.host.port)
        if self.host.host_key:
            key_type, blob = self.host.host_key.split()[:2]
            import base64

            keys.add(
                name, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(blob))
            )
            client.set_missing_host_key_policy(_CheckNewHostKey(None, self._known_hosts_lock))
        else:
            if self.policy.known_hosts.exists():
                try:
                    client.load_host_keys(str(self.policy.known_hosts))
                except (OSError, paramiko.SSHException) as error:
                    raise HostKeyRejected(
                        f"cannot read known_hosts {self.policy.known_hosts}: {error}"
                    ) from None
            record = self.policy.known_hosts if self.policy.accept_new else None
            client.set_missing_host_key_policy(_CheckNewHostKey(record, self._known_hosts_lock))
        return connection

    def _open_once(self):
        import paramiko

        connection = self._new_connection()
        where = f"{self.name} ({self.host.user}@{self.host.address}:{self.host.port})"
        pinned = bool(self.host.host_key)
        source = "its host_key in the inventory" if pinned else f"{self.policy.known_hosts}"
        try:
            connection.open()
        except (paramiko.BadHostKeyException, NewHostKey) as error:
            connection.close()
            if isinstance(error, NewHostKey) and not error.recorded:
                raise HostKeyRejected(
                    f"host {where} has an unknown host key ({_describe_key(error.key)}): pin it "
                    f"with host_key in the inventory, add it to {self.policy.known_hosts}, or "
                    "pass --accept-new-host-keys — after checking that fingerprint on the host "
                    "itself"
                ) from None
            expected = error.recorded if isinstance(error, NewHostKey) else [error.expected_key]
            raise HostKeyRejected(
                f"host {where} presented a different host key: {_describe_key(error.key)}, "
                f"expected {', '.join(_describe_key(k) for k in expected)} ({source}). Refusing "
                "to connect: this is what a man-in-the-middle looks like. If the host was "
                f"reinstalled, update {source if pinned else 'its entry in ' + source}."
            ) from None
        except paramiko.SSHException as error:
            raise HostUnreachable(f"cannot connect to {where}: {error}") from None
        except (OSError, EOFError) as error:
            raise HostUnreachable(f"cannot connect to {where}: {_reason(error)}") from None
        sock = connection.transport.sock
        if hasattr(sock, "setsockopt"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def open(self):
        """Connect (retrying with backoff); a no-op when connected. Raises
        :class:`HostKeyRejected` at once, :class:`HostUnreachable` after the retries."""
        with self._lock:
            if self._connection is not None and self._connection.is_connected:
                return self._connection
            self._connection = self._connect_with_retries()
            return self._connection

    def _connect_with_retries(self):
        """Up to ``retries + 1`` attempts, ``min(2, 0.2 * 2 ** (n - 1))`` seconds apart after
        the n-th; a :class:`HostKeyRejected` (or another error than :class:`HostUnreachable`)
        is raised at once, the last attempt's error after the last."""
        attempts = itertools.count(1)
        where = f"{self.host.user}@{self.host.address}:{self.host.port}"

        def attempt():
            number = next(attempts)
            self._tell("connecting", where, number)
            try:
                connection = self._open_once()
            except HostUnreachable as error:
                last = number > self.retries or isinstance(error, HostKeyRejected)
                self._tell("failed" if last else "retry", str(error), number)
                raise
            self._tell("connected", where, number)
            return connection

        for number in range(1, self.retries + 2):
            try:
                return attempt()
            except HostKeyRejected:
                raise
            except HostUnreachable:
                if number > self.retries:
                    raise
            time.sleep(min(2.0, 0.2 * 2 ** (number - 1)))
        raise AssertionError("unreachable")  # the loop returns or raises

    def run(
        self,
        command: str,
        input: bytes | None = None,
        timeout: float | None = None,
        stdout=None,
        stderr=None,
    ) -> CommandResult:
        """Run ``command`` with ``sh -c`` semantics on the host; ``input`` goes to its stdin.

        The command runs as a job (``engine.execute.jobs``): sent on stdin, so it may be of
        any size, in a process group of its own that ends with the channel — when this run
        times out, closes the connection, or the deployer dies, the command and what it
        started stop on the host too. ``stdout``/``stderr``, when given, are called with each
        chunk of that stream as it arrives (and the result's field stays empty): memory stays
        bounded whatever the command prints. Raises :class:`CommandTimedOut` after
        ``timeout`` seconds and a ``lost`` :class:`HostUnreachable` if the connection breaks
        (or the host stops answering for ``connect_timeout`` seconds when asked for a new
        channel); a failing command is a result, not an exception.
        """
        import paramiko

        from fedi_run.engine.execute.channel import run_on_channel
        from fedi_run.engine.execute.jobs import remote_job

        connection = self.open()
        # No EOF is ever sent: the job's wrapper reads exactly what is sent (so the server
        # cannot free the channel while we send, paramiko #1705, see the lab's ssh module)
        # and takes the end of its stdin — the channel's end — as the order to stop the job.
        line, data = remote_job(command, input)
        try:
            finished = run_on_channel(
                connection.transport,
                line,
                data,
                timeout,
                on_stdout=stdout,
                on_stderr=stderr,
                open_timeout=self.policy.connect_timeout,
                send_eof=False,
            )
        except ChannelTimeout:
            raise CommandTimedOut(f"timed out after {timeout:g} s on {self.name}") from None
        except (ConnectionLost, paramiko.SSHException, OSError, EOFError) as error:
            self._forget()
            self._tell("lost", str(error) or type(error).__name__)
            raise HostUnreachable(
                f"lost the connection to {self.name}: {error or type(error).__name__}", lost=True
            ) from None
        return CommandResult(finished.exit_status, finished.stdout, finished.stderr)

    def _forget(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    def get(self, remote: str) -> bytes:
        """The content of the host's file ``remote`` (over SFTP)."""
        connection = self.open()
        buffer = io.BytesIO()
        try:
            connection.sftp().getfo(remote, buffer)
        except OSError as error:
            raise FediRunError(f"cannot fetch {remote} from {self.name}: {error}") from None
        return buffer.getvalue()

    def close(self) -> None:
        """Close the connection if open."""
        self._forget()


def _reason(error: BaseException) -> str:
    """Why a connection failed, in words: paramiko's ``NoValidConnectionsError`` (``[Errno
    None] Unable to connect to port 22``) says what each address answered instead."""
    causes = getattr(error, "errors", None)
    if isinstance(causes, dict) and causes:
        return "; ".join(sorted({getattr(c, "strerror", None) or str(c) for c in causes.values()}))
    return str(error) or type(error).__name__


class ConnectionPool:
    """One :class:`HostConnection` per host name, created on first use."""

    def __init__(
        self,
        hosts: Mapping[str, HostSection],
        policy: HostKeyPolicy = HostKeyPolicy(),
        retries: int = 2,
    ):
        self._hosts = hosts
        self._policy = policy
        self._retries = retries
        self._connections: dict[str, HostConnection] = {}
        self._lock = threading.Lock()
        self._known_hosts_lock = threading.Lock()
        self._observer: Observer | None = None

    def observe(self, observer: Observer | None) -> None:
        """Tell ``observer`` how every host's connection goes (see the module docstring)."""
        with self._lock:
            self._observer = observer
            for connection in self._connections.values():
                connection.observer = observer

    def __getitem__(self, name: str) -> HostConnection:
        with self._lock:
            connection = self._connections.get(name)
            if connection is None:
                connection = HostConnection(
                    name, self._hosts[name], self._policy, self._retries, self._known_hosts_lock
                )
                connection.observer = self._observer
                self._connections[name] = connection
            return connection

    def close_all(self) -> None:
        """Close every connection that was opened."""
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            connection.close()
