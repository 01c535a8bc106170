"""Lab parts that need no root and start nothing: names, state, inventory, launch spec, checks."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fedi_run.engine.errors import LabError
from fedi_run.engine.lab import host, inventory, prereq, state
from fedi_run.engine.lab.state import AcmeInfo, HostInfo, LabState, Proc


def sample_state(tmp_path: Path) -> LabState:
    return LabState(
        dir=tmp_path,
        identity=tmp_path / 'deployer "quoted"\\id',
        public_key="ssh-ed25519 AAAA",
        hosts=(
            HostInfo(
                "garage",
                "127.0.0.2",
                22,
                "root",
                "ssh-ed25519 AAAAgarage",
                tmp_path / "hosts" / "garage",
                Proc(10, 20),
                "mnt:[1]",
            ),
            HostInfo(
                "mastodon",
                "127.0.0.3",
                22,
                "root",
                "ssh-ed25519 AAAAmasto",
                tmp_path / "hosts" / "mastodon",
            ),
        ),
        acme=AcmeInfo(
            "https://127.0.0.1:14000/dir",
            tmp_path / "acme" / "ca.pem",
            "https://127.0.0.1:15000",
            Proc(11, 21),
        ),
    )


@pytest.mark.parametrize("name", ["garage", "a", "web-1", "x" * 63])
def test_valid_host_names(name):
    assert state.validate_host_names([name]) == (name,)


@pytest.mark.parametrize("name", ["", "Garage", "1st", "-a", "a-", "a_b", "a.b", "x" * 64, "a b"])
def test_invalid_host_names_are_named(name):
    with pytest.raises(LabError, match="invalid host name"):
        state.validate_host_names([name])


def test_repeated_host_names_are_refused():
    with pytest.raises(LabError, match="given twice: garage"):
        state.validate_host_names(["garage", "mastodon", "garage"])


def test_state_round_trips_through_json(tmp_path):
    lab = sample_state(tmp_path)
    assert state.from_json(state.to_json(lab)) == lab


def test_unreadable_state_is_a_lab_error():
    with pytest.raises(LabError, match="unreadable"):
        state.from_json('{"version": 99}')


def test_inventory_is_toml_with_exactly_the_documented_keys(tmp_path):
    lab = sample_state(tmp_path)
    data = tomllib.loads(inventory.render(lab))
    assert set(data) == {"hosts", "acme"}
    assert list(data["hosts"]) == ["garage", "mastodon"]
    for name, table in data["hosts"].items():
        assert set(table) == {"address", "port", "user", "host_key", "identity", "nixos"}
        assert table["identity"] == str(lab.identity)  # quotes and backslash survive
        assert table["nixos"] == str(lab.dir / "nixos" / name / "configuration.nix")
        assert table["host_key"] == lab.host(name).host_key
    assert data["acme"] == {"server": lab.acme.server, "ca_file": str(lab.acme.ca_file)}


def test_inventory_without_acme_has_no_acme_table(tmp_path):
    lab = LabState(dir=tmp_path, identity=tmp_path / "id", public_key="k")
    assert tomllib.loads(inventory.render(lab)) == {}


def test_known_hosts_pins_each_address(tmp_path):
    text = inventory.render_known_hosts(sample_state(tmp_path))
    assert text.splitlines() == [
        "127.0.0.2 ssh-ed25519 AAAAgarage",
        "127.0.0.3 ssh-ed25519 AAAAmasto",
    ]


def test_launch_spec_mounts_the_one_hiding_the_lab_dir_last(tmp_path):
    plan = host.HostPlan("garage", "127.0.0.2", 22, Path("/tmp/x/lab/hosts/garage"), "k")
    spec = host.launch_spec(plan, "/usr/sbin/sshd")
    targets = [m["target"] for m in spec["mounts"]]
    assert targets[-1] == "/tmp"
    assert {"/etc", "/usr/local", "/run", "/root", "/var/lib", "/var/log"} <= set(targets)
    assert spec["hostname"] == "garage"
    assert spec["argv"][0] == "/usr/sbin/sshd"


def test_a_lab_dir_inside_an_overlaid_directory_is_named():
    assert host.overlaps_overlay(Path("/etc/lab")) == "/etc"
    assert host.overlaps_overlay(Path("/usr/local/x")) == "/usr/local"
    assert host.overlaps_overlay(Path("/srv/lab")) is None


def test_not_root_is_reported_with_what_to_do():
    found = prereq.Tools(sshd="/bin/sh", pebble="/bin/sh")
    with pytest.raises(LabError) as caught:
        prereq.check(acme=True, euid=1000, found=found)
    assert "root" in str(caught.value) and "sudo fedi-run lab up" in str(caught.value)


def test_every_missing_prerequisite_is_listed_with_its_install_command():
    found = prereq.Tools(sshd="/nonexistent/sshd", pebble="/nonexistent/pebble")
    with pytest.raises(LabError) as caught:
        prereq.check(acme=True, euid=1000, found=found)
    text = str(caught.value)
    assert "apt-get install openssh-server" in text
    assert "apt-get install pebble" in text
    assert text.count("\n  - ") == 3


def test_pebble_is_only_needed_with_acme():
    found = prereq.Tools(sshd="/bin/sh", pebble="/nonexistent/pebble")
    assert prereq.check(acme=False, euid=0, found=found) == found
