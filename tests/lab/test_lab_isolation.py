"""Each lab host is a machine of its own: hostname, /etc and /usr/local overlays, private dirs."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

PRIVATE_DIRS = ["/tmp", "/root", "/var/lib", "/var/log", "/var/tmp", "/opt", "/home", "/srv"]
OVERLAID_DIRS = ["/etc", "/usr/local", "/usr/local/bin"]


@pytest.mark.parametrize("directory", PRIVATE_DIRS + OVERLAID_DIRS)
def test_a_file_written_on_one_host_is_seen_neither_on_another_nor_on_the_machine(lab, directory):
    path = f"{directory}/fedi-lab-isolation-{uuid.uuid4().hex}"
    lab.write_file("garage", path, "garage only\n")
    try:
        assert lab.read_file("garage", path) == b"garage only\n"
        for other in ("mastodon", "peertube", "pixelfed"):
            assert lab.run(other, f"test -e {path}").exit_status == 1, other
        assert not os.path.exists(path)
    finally:
        lab.run("garage", f"rm -f {path}", check=True)


@pytest.mark.parametrize("name", ["garage", "mastodon", "peertube", "pixelfed"])
def test_the_hostname_is_the_host_name(lab, name):
    result = lab.run(name, "hostname; uname -n; cat /etc/hostname", check=True)
    assert result.stdout.split() == [name, name, name]


def test_the_machine_keeps_its_own_hostname(lab):
    assert os.uname().nodename not in lab.hosts


def test_etc_falls_through_to_the_machine(lab):
    assert (
        lab.read_file("garage", "/etc/debian_version") == Path("/etc/debian_version").read_bytes()
    )


def test_hosts_resolve_each_other_by_name(lab):
    out = lab.run("garage", "getent hosts mastodon", check=True).stdout.split()
    assert out == [lab.hosts["mastodon"].address, "mastodon"]


def test_root_starts_empty_so_no_machine_shell_setup_runs(lab):
    out = lab.run("pixelfed", "ls -A /root", check=True).stdout.split()
    assert ".ssh" in out
    assert not {".bashrc", ".profile"} & set(out)  # the machine's are slow to run
    timings = []
    for _ in range(15):
        start = time.perf_counter()
        lab.run("pixelfed", "true", check=True)
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 0.05  # ~4 ms here; the machine's .bashrc costs ~100 ms


def test_each_host_has_its_own_address_on_loopback(lab):
    addresses = [h.address for h in lab.hosts.values()]
    assert len(set(addresses)) == len(addresses)
    assert all(a.startswith("127.") and a != "127.0.0.1" for a in addresses)
    assert {h.port for h in lab.hosts.values()} == {22}


def test_many_commands_run_at_once_over_the_shared_connection(lab):
    from concurrent.futures import ThreadPoolExecutor

    def one(i):  # half of them get input they never read: the racy case for EOF and CLOSE
        return lab.run("mastodon", f"echo {i}", input=b"x" * (i % 3) if i % 2 else None)

    for _ in range(3):
        with ThreadPoolExecutor(max_workers=24) as pool:
            results = list(pool.map(one, range(48)))
        assert [(r.exit_status, r.stdout) for r in results] == [(0, f"{i}\n") for i in range(48)]
    assert lab.run("mastodon", "cat", input=b"in\n").stdout == "in\n"
    assert lab.run("mastodon", "cat").stdout == ""  # stdin is closed: cat does not wait
