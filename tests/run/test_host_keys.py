"""Host keys, end to end: pinned, unknown, accepted and recorded, changed."""

from __future__ import annotations

import tomllib

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
        lines += [f"{key} = {value!r}".replace("'", '"') if isinstance(value, str) else f"{key} = {value}"
                  for key, value in table.items()]
    path = tmp_path / "inventory.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def clean(basic_lab):
    for host in ("hello", "cowsay"):
        basic_lab.run(host, "rm -f /srv/keys-mark", check=True)
    return basic_lab


def test_wrong_pinned_key_nothing_runs_there(clean, tmp_path):
    lab = clean

    def swap(hosts):
        hosts["cowsay"]["host_key"] = hosts["hello"]["host_key"]

    (tmp_path / "p.toml").write_text(PLAYBOOK)
    result = fedi("run", tmp_path / "p.toml", "-i", inventory(lab, tmp_path, swap), "--no-apply", "--json")
    assert result.exit_code == 1
    finished = result.finished()
    assert finished["tasks.mark@cowsay"]["status"] == "unreachable"
    assert "presented a different host key" in finished["tasks.mark@cowsay"]["message"]
    assert "man-in-the-middle" in finished["tasks.mark@cowsay"]["message"]
    assert finished["tasks.mark@hello"]["status"] == "changed"
    assert lab.run("cowsay", "test -e /srv/keys-mark").exit_status != 0


def test_unknown_key_refused_then_accepted_and_recorded_then_changed_refused(clean, tmp_path):
    lab = clean

    def unpin(hosts):
        for table in hosts.values():
            del table["host_key"]

    known_hosts = tmp_path / "known_hosts"
    (tmp_path / "p.toml").write_text(PLAYBOOK)
    inv = inventory(lab, tmp_path, unpin)
    args = ("run", tmp_path / "p.toml", "-i", inv, "--no-apply", "--json", "--known-hosts", known_hosts, "--retries", "0")

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
    assert {line.split()[0] for line in recorded} == {lab.hosts["hello"].address, lab.hosts["cowsay"].address}
    assert oct(known_hosts.stat().st_mode & 0o777) == "0o600"

    again = fedi(*args)  # known now: no flag needed
    assert again.exit_code == 0

    hello_key = " ".join(lab.hosts["hello"].host_key.split()[:2])
    known_hosts.write_text(f"{lab.hosts['cowsay'].address} {hello_key}\n{recorded[0] if recorded[0].startswith(lab.hosts['hello'].address + ' ') else recorded[1]}\n")
    changed = fedi(*args, "--accept-new-host-keys")  # even with the flag: a changed key is refused
    assert changed.exit_code == 1
    assert changed.finished()["tasks.mark@cowsay"]["status"] == "unreachable"
    assert "presented a different host key" in changed.finished()["tasks.mark@cowsay"]["message"]
    assert changed.finished()["tasks.mark@hello"]["status"] == "ok"
