"""Host keys, end to end: pinned, unknown, accepted and recorded, changed, and a key removed
from the inventory (unknown again: never trusted silently)."""

from __future__ import annotations

import base64
import os
import tomllib

import paramiko
import pytest
from run_helpers import fedi

pytestmark = pytest.mark.lab

PLAYBOOK = """
[deployment]
name = "keys"
domain = "keys.example.org"

[tasks.mark]
hosts = ["hello", "cowsay"]
file = { path = "/srv/keys-mark", content = "{{ host.name }}\\n" }
"""


def inventory(lab, tmp_path, edit) -> str:
    """The lab's inventory with ``edit(hosts)`` applied, written as TOML."""
    hosts = tomllib.loads(lab.inventory_path.read_text())["hosts"]
    edit(hosts)
    lines = []
    for name, table in hosts.items():
        lines.append(f"[hosts.{name}]")
        lines += [
            f"{key} = {value!r}".replace("'", '"') if isinstance(value, str) else f"{key} = {value}"
            for key, value in table.items()
        ]
    path = tmp_path / "inventory.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def clean(basic_lab):
    for host in ("hello", "cowsay"):
        basic_lab.run(host, "rm -f /srv/keys-mark", check=True)
    return basic_lab


def fingerprint(public: str) -> str:
    """``SHA256:…`` of an ``ssh-… AAAA…`` public key line."""
    key_type, blob = public.split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(blob)).fingerprint


@pytest.mark.reliability(
    "security",
    "host keys: a wrong pinned key",
    "exit 1, that host unreachable with 'presented a different host key' and "
    "'man-in-the-middle', nothing runs there; the other host finishes",
)
def test_wrong_pinned_key_nothing_runs_there(clean, tmp_path):
    lab = clean

    def swap(hosts):
        hosts["cowsay"]["host_key"] = hosts["hello"]["host_key"]

    (tmp_path / "p.toml").write_text(PLAYBOOK)
    result = fedi(
        "run", tmp_path / "p.toml", "-i", inventory(lab, tmp_path, swap), "--no-apply", "--json"
    )
    assert result.exit_code == 1
    finished = result.finished()
    assert finished["tasks.mark@cowsay"]["status"] == "unreachable"
    assert "presented a different host key" in finished["tasks.mark@cowsay"]["message"]
    assert "man-in-the-middle" in finished["tasks.mark@cowsay"]["message"]
    assert finished["tasks.mark@hello"]["status"] == "changed"
    assert lab.run("cowsay", "test -e /srv/keys-mark").exit_status != 0


@pytest.mark.reliability(
    "security",
    "host keys: unknown, then accepted, then changed",
    "unknown refused (exit 1, naming --accept-new-host-keys, nothing "
    "recorded); accepted and recorded 0600 with the flag; a changed key "
    "refused even with the flag",
)
def test_unknown_key_refused_then_accepted_and_recorded_then_changed_refused(clean, tmp_path):
    lab = clean

    def unpin(hosts):
        for table in hosts.values():
            del table["host_key"]

    known_hosts = tmp_path / "known_hosts"
    (tmp_path / "p.toml").write_text(PLAYBOOK)
    inv = inventory(lab, tmp_path, unpin)
    args = (
        "run",
        tmp_path / "p.toml",
        "-i",
        inv,
        "--no-apply",
        "--json",
        "--known-hosts",
        known_hosts,
        "--retries",
        "0",
    )

    refused = fedi(*args)
    assert refused.exit_code == 1
    for task in ("tasks.mark@hello", "tasks.mark@cowsay"):
        assert refused.finished()[task]["status"] == "unreachable"
        assert "unknown host key" in refused.finished()[task]["message"]
        assert "--accept-new-host-keys" in refused.finished()[task]["message"]
    assert not known_hosts.exists()

    accepted = fedi(*args, "--accept-new-host-keys")
    assert accepted.exit_code == 0, accepted.stdout
    recorded = known_hosts.read_text().splitlines()
    assert len(recorded) == 2
    assert {line.split()[0] for line in recorded} == {
        lab.hosts["hello"].address,
        lab.hosts["cowsay"].address,
    }
    assert oct(known_hosts.stat().st_mode & 0o777) == "0o600"

    again = fedi(*args)  # known now: no flag needed
    assert again.exit_code == 0

    hello_key = " ".join(lab.hosts["hello"].host_key.split()[:2])
    hello_line = (
        recorded[0] if recorded[0].startswith(lab.hosts["hello"].address + " ") else recorded[1]
    )
    known_hosts.write_text(f"{lab.hosts['cowsay'].address} {hello_key}\n{hello_line}\n")
    changed = fedi(*args, "--accept-new-host-keys")  # even with the flag: a changed key is refused
    assert changed.exit_code == 1
    assert changed.finished()["tasks.mark@cowsay"]["status"] == "unreachable"
    assert "presented a different host key" in changed.finished()["tasks.mark@cowsay"]["message"]
    assert changed.finished()["tasks.mark@hello"]["status"] == "ok"


@pytest.mark.reliability(
    "security",
    "host keys: a key removed from the inventory",
    "that host refused as unknown (exit 1), the message naming it, the "
    "presented fingerprint, the known_hosts file and the flag; nothing runs "
    "there, nothing is recorded; the other host finishes; with "
    "--accept-new-host-keys its key is recorded (0600 in a new 0700 ~/.ssh)",
)
def test_a_key_removed_from_the_inventory_is_unknown_never_silently_trusted(clean, tmp_path):
    lab = clean

    def remove_cowsays_key(hosts):
        del hosts["cowsay"]["host_key"]

    home = tmp_path / "home"  # the default known_hosts: ~/.ssh/known_hosts, absent
    home.mkdir()
    (tmp_path / "p.toml").write_text(PLAYBOOK)
    args = (
        "run",
        tmp_path / "p.toml",
        "-i",
        inventory(lab, tmp_path, remove_cowsays_key),
        "--no-apply",
        "--json",
        "--retries",
        "0",
    )

    refused = fedi(*args, env={"HOME": str(home)})
    assert refused.exit_code == 1
    cowsay = refused.finished()["tasks.mark@cowsay"]
    assert cowsay["status"] == "unreachable"
    message = cowsay["message"]
    assert "cowsay" in message and lab.hosts["cowsay"].address in message
    assert "unknown host key" in message
    assert fingerprint(lab.hosts["cowsay"].host_key) in message  # to check it out of band
    assert "host_key" in message and "--accept-new-host-keys" in message
    assert str(home / ".ssh" / "known_hosts") in message
    assert refused.finished()["tasks.mark@hello"]["status"] == "changed"
    assert lab.run("cowsay", "test -e /srv/keys-mark").exit_status != 0
    assert not (home / ".ssh").exists()  # nothing trusted, nothing recorded

    accepted = fedi(*args, "--accept-new-host-keys", env={"HOME": str(home)})
    assert accepted.exit_code == 0, accepted.stdout
    assert accepted.finished()["tasks.mark@cowsay"]["status"] == "changed"
    known_hosts = home / ".ssh" / "known_hosts"
    [line] = known_hosts.read_text().splitlines()  # only the unpinned host is recorded
    assert line.split()[0] == lab.hosts["cowsay"].address
    assert line.split()[1:3] == lab.hosts["cowsay"].host_key.split()[:2]
    assert oct(os.stat(known_hosts).st_mode & 0o777) == "0o600"
    assert oct(os.stat(home / ".ssh").st_mode & 0o777) == "0o700"


@pytest.mark.reliability(
    "security",
    "host keys: a changed key recorded in --known-hosts",
    "refused even with --accept-new-host-keys (exit 1): the message names "
    "the presented and the recorded fingerprints and the known_hosts file; "
    "a recorded key of another type is a changed key too, not a new host",
)
def test_a_changed_key_in_known_hosts_names_both_fingerprints_and_the_file(clean, tmp_path):
    lab = clean
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def unpin(hosts):
        for table in hosts.values():
            del table["host_key"]

    (tmp_path / "p.toml").write_text(PLAYBOOK)
    known_hosts = tmp_path / "known_hosts"
    args = (
        "run",
        tmp_path / "p.toml",
        "-i",
        inventory(lab, tmp_path, unpin),
        "--no-apply",
        "--json",
        "--known-hosts",
        known_hosts,
        "--retries",
        "0",
        "--accept-new-host-keys",
    )
    hello, cowsay = lab.hosts["hello"], lab.hosts["cowsay"]
    other_type = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    for recorded in (" ".join(hello.host_key.split()[:2]), other_type):
        known_hosts.write_text(
            f"{cowsay.address} {recorded}\n{hello.address} {' '.join(hello.host_key.split()[:2])}\n"
        )
        changed = fedi(*args)
        assert changed.exit_code == 1
        message = changed.finished()["tasks.mark@cowsay"]["message"]
        assert changed.finished()["tasks.mark@cowsay"]["status"] == "unreachable"
        assert "presented a different host key" in message and "man-in-the-middle" in message
        assert fingerprint(cowsay.host_key) in message  # what the host presented
        assert fingerprint(recorded) in message  # what the file says
        assert str(known_hosts) in message
        assert changed.finished()["tasks.mark@hello"]["status"] in ("changed", "ok")
        assert known_hosts.read_text().count(cowsay.address) == 1  # not "accepted" as new
        assert lab.run("cowsay", "test -e /srv/keys-mark").exit_status != 0
