"""Labs of their own: `down` leaves nothing, addresses are never shared, failures clean up."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from lab_helpers import fedi_run

from fedi_run.engine.lab import addresses, procs, state

pytestmark = pytest.mark.lab


def mounts_mentioning(path: Path) -> list[str]:
    """Every mount, in any process's mount table on the machine, whose line names ``path``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/mountinfo").read_text()
            except OSError:
                continue
            found += [f"{entry}: {line}" for line in text.splitlines() if str(path) in line]
    return found


def test_down_leaves_no_process_and_no_mount_behind(lab_factory):
    lab = lab_factory(["web", "db"], acme=True)
    # something a deployment might leave running on a host, detached from its SSH session
    lab.run("web", "setsid sleep 600 </dev/null >/dev/null 2>&1 &", check=True)
    lab.run("db", "mkdir -p /var/lib/db && echo data > /var/lib/db/file", check=True)
    recorded = [h.process for h in lab.hosts.values()] + [lab.acme.process]
    namespaces = {h.mnt_ns for h in lab.hosts.values()}
    members = procs.namespace_members(namespaces)
    assert len(members[lab.hosts["web"].mnt_ns]) >= 2  # sshd and the detached sleep
    assert mounts_mentioning(lab.dir)  # the hosts' mounts exist while they run...
    assert not [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if str(lab.dir) in line
    ]  # ...but only inside their own namespaces

    lab.close()
    done = fedi_run("lab", "down", "--dir", str(lab.dir))
    assert done.returncode == 0, done.stderr

    for proc in recorded:
        procs.reap(proc.pid)
        assert not procs.is_running(proc), proc
    assert procs.namespace_members(namespaces) == {ns: [] for ns in namespaces}
    assert mounts_mentioning(lab.dir) == []
    assert not lab.dir.exists()
    listening = addresses.listeners()
    assert not any((h.address, 22) in listening for h in lab.hosts.values())


def test_sixteen_hosts_start_and_stop(lab_factory):
    names = [f"host{i:02d}" for i in range(16)]
    start = time.perf_counter()
    lab = lab_factory(names)
    elapsed = time.perf_counter() - start
    assert list(lab.hosts) == names
    assert elapsed < 15  # a sanity bound; bench/lab_startup.py measures the real time
    for name in names[::5]:
        assert lab.run(name, "hostname", check=True).stdout.strip() == name
    lab.down()
    assert all(not procs.is_running(h.process) for h in lab.hosts.values())


def test_two_labs_never_share_an_address(lab, lab_factory):
    other = lab_factory(["garage"])
    assert other.hosts["garage"].address not in {h.address for h in lab.hosts.values()}
    assert other.run("garage", "hostname", check=True).stdout == "garage\n"


def test_an_address_taken_by_another_listener_is_skipped(lab_factory):
    taken = addresses.allocate(1)[0]
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((taken, 22))
        squatter.listen()
        lab = lab_factory(["garage"])
        assert lab.hosts["garage"].address != taken


def test_a_dead_host_shows_in_status_and_up_is_still_refused(lab_factory):
    lab = lab_factory(["one", "two"])
    victim = lab.hosts["one"].process
    os.kill(victim.pid, signal.SIGKILL)
    while not procs.reap(victim.pid):
        time.sleep(0.01)
    done = fedi_run("lab", "status", "--dir", str(lab.dir))
    assert done.returncode == 1
    assert [line.split()[2] for line in done.stdout.splitlines()[1:]] == ["DOWN", "up"]
    again = fedi_run("lab", "up", "--hosts", "one", "--dir", str(lab.dir))
    assert again.returncode == 2 and "already up" in again.stderr
    lab.down()
    assert not lab.dir.exists()


def test_a_lab_whose_processes_are_all_gone_is_replaced_by_up(lab_factory):
    lab = lab_factory(["old"])
    stale = state.load(lab.dir)
    lab.down()
    lab.dir.mkdir()
    state.save(stale)  # as after a reboot: state left, processes gone
    from fedi_run.engine.lab.session import Lab

    with Lab.up(lab.dir, ["new"]) as fresh:
        assert list(fresh.hosts) == ["new"]
        assert fresh.run("new", "hostname", check=True).stdout == "new\n"
    assert not lab.dir.exists()


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("FEDI_RUN_LAB_SSHD", "host(s) failed to start:\n  broken:"),
        ("FEDI_RUN_LAB_PEBBLE", "pebble did not start"),
    ],
)
def test_a_part_that_fails_to_start_is_reported_and_everything_is_stopped(
    tmp_path, monkeypatch, variable, message
):
    from fedi_run.engine.errors import LabError
    from fedi_run.engine.lab import control

    monkeypatch.setenv(variable, "/bin/false")
    with pytest.raises(LabError) as caught:
        control.up(tmp_path / "lab", ["broken", "fine"], acme=True)
    assert message in str(caught.value)
    assert mounts_mentioning(tmp_path / "lab") == []
    assert not (tmp_path / "lab" / "lab.json").exists()
    assert not (tmp_path / "lab" / "hosts").exists()


def test_a_non_empty_directory_without_a_lab_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("mine")
    done = fedi_run("lab", "up", "--hosts", "a", "--dir", str(tmp_path))
    assert done.returncode == 2 and "not empty" in done.stderr
    assert (tmp_path / "precious.txt").read_text() == "mine"


def test_a_host_not_yet_in_its_namespace_never_stands_for_the_machine(tmp_path):
    """Regression: a launcher stopped before it unshared shares the machine's mount
    namespace; stopping the lab must then stop that process only, not the machine's."""
    from fedi_run.engine.lab import control
    from fedi_run.engine.lab.state import HostInfo, LabState

    sleeper = procs.spawn(["/bin/sleep", "60"], tmp_path / "log")
    try:
        machine_ns = procs.mount_namespace(os.getpid())
        assert procs.namespace_members({machine_ns}) == {machine_ns: []}
        host_ = HostInfo(
            "early", "127.0.0.2", 22, "root", "k", tmp_path / "hosts" / "early", sleeper, machine_ns
        )
        lab = LabState(dir=tmp_path, identity=tmp_path / "id", public_key="k", hosts=(host_,))
        assert control._victims([lab]) == [sleeper]
    finally:
        procs.terminate([sleeper])
    assert not procs.is_running(sleeper)
