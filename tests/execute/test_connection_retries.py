"""Connecting retries with backoff before a host is unreachable (the loop that replaced
tenacity, issue 15): ``retries + 1`` attempts, 0.2 s then 0.4 s apart, the last error raised;
a refused host key is not retried."""

from __future__ import annotations

import socket
import time

import pytest

from fedi_run.engine.errors import HostKeyRejected, HostUnreachable
from fedi_run.engine.execute.connection import HostConnection, HostKeyPolicy
from fedi_run.engine.model.playbook import HostSection


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connection(tmp_path, retries: int) -> tuple[HostConnection, list[tuple[str, int]]]:
    host = HostSection(address="127.0.0.1", port=closed_port(), user="root")
    policy = HostKeyPolicy(known_hosts=tmp_path / "known_hosts", connect_timeout=2)
    conn = HostConnection("h", host, policy, retries=retries)
    seen: list[tuple[str, int]] = []
    conn.observer = lambda name, state, detail, attempt: seen.append((state, attempt))
    return conn, seen


def test_a_refused_connection_is_tried_retries_plus_one_times_with_backoff(tmp_path):
    conn, seen = connection(tmp_path, retries=2)
    start = time.monotonic()
    with pytest.raises(HostUnreachable, match="refused"):
        conn.open()
    elapsed = time.monotonic() - start
    assert [a for state, a in seen if state == "connecting"] == [1, 2, 3]
    assert [state for state, _ in seen if state in ("retry", "failed")] == [
        "retry",
        "retry",
        "failed",
    ]
    assert 0.6 <= elapsed < 5  # 0.2 s + 0.4 s of backoff


def test_no_retries_means_one_attempt_and_no_wait(tmp_path):
    conn, seen = connection(tmp_path, retries=0)
    start = time.monotonic()
    with pytest.raises(HostUnreachable):
        conn.open()
    assert [a for state, a in seen if state == "connecting"] == [1]
    assert time.monotonic() - start < 0.2


@pytest.mark.lab
def test_a_changed_host_key_is_refused_at_the_first_attempt(lab_factory, tmp_path):
    lab = lab_factory(["one", "two"], acme=False)
    one, two = lab.hosts["one"], lab.hosts["two"]
    host = HostSection(
        address=one.address,
        port=one.port,
        user=one.user,
        host_key=two.host_key,  # not one's
        identity=str(lab.identity),
    )
    conn = HostConnection("one", host, HostKeyPolicy(known_hosts=tmp_path / "kh"), retries=3)
    seen = []
    conn.observer = lambda name, state, detail, attempt: seen.append((state, attempt))
    with pytest.raises(HostKeyRejected, match="different host key"):
        conn.open()
    assert [a for state, a in seen if state == "connecting"] == [1]
