"""`fedi-run lab` as a user runs it: inventory, status, run, shell, up twice, prerequisites."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from lab_helpers import fedi_run

from fedi_run.engine.cli.main import cli

pytestmark = pytest.mark.lab


def test_inventory_prints_toml_with_exactly_the_documented_keys(lab):
    done = fedi_run("lab", "inventory", "--dir", str(lab.dir))
    assert done.returncode == 0, done.stderr
    data = tomllib.loads(done.stdout)
    assert set(data) == {"hosts", "acme"}
    assert list(data["hosts"]) == list(lab.hosts)
    for name, table in data["hosts"].items():
        info = lab.hosts[name]
        assert table == {
            "address": info.address,
            "port": 22,
            "user": "root",
            "host_key": info.host_key,
            "identity": str(lab.identity),
            "nixos": str(lab.dir / "nixos" / name / "configuration.nix"),
        }
        base = Path(table["nixos"]).read_text()  # a base configuration of the host's own
        assert "boot.isContainer = true;" in base
        assert f'networking.hostName = "{name}";' in base
    assert data["acme"] == {"server": lab.acme.server, "ca_file": str(lab.acme.ca_file)}
    assert done.stdout == lab.inventory_path.read_text()


def test_the_deployer_key_and_lab_dirs_are_private(lab):
    assert lab.identity.stat().st_mode & 0o777 == 0o600
    for directory in (lab.dir, lab.dir / "deployer", lab.dir / "hosts", lab.dir / "acme"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory


def test_status_lists_every_part_as_up(lab):
    done = fedi_run("lab", "status", "--dir", str(lab.dir))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()[1:]
    assert [line.split()[0] for line in lines] == [*lab.hosts, "acme"]
    assert all(line.split()[2] == "up" for line in lines)


def test_run_streams_output_and_returns_the_exit_status(lab):
    done = fedi_run(
        "lab",
        "run",
        "--dir",
        str(lab.dir),
        "peertube",
        "--",
        "echo out-$(hostname); echo err >&2; exit 7",
    )
    assert (done.returncode, done.stdout, done.stderr) == (7, "out-peertube\n", "err\n")


def test_run_passes_stdin_on(lab):
    done = fedi_run("lab", "run", "--dir", str(lab.dir), "garage", "--", "wc", "-c", input=b"12345")
    assert (done.returncode, done.stdout.strip()) == (0, "5")


def test_run_on_an_unknown_host_names_the_known_ones(lab):
    done = fedi_run("lab", "run", "--dir", str(lab.dir), "nosuch", "--", "true")
    assert done.returncode == 2
    assert "no host 'nosuch'" in done.stderr and "garage" in done.stderr
    assert "Traceback" not in done.stderr


def test_shell_runs_the_system_ssh_against_the_pinned_key(lab):
    done = fedi_run("lab", "shell", "--dir", str(lab.dir), "pixelfed", "--", "hostname")
    assert (done.returncode, done.stdout.strip()) == (0, "pixelfed")


def test_up_on_a_lab_that_is_up_is_refused_and_leaves_it_running(lab):
    before = (lab.dir / "lab.json").read_text()
    done = fedi_run("lab", "up", "--hosts", "extra", "--dir", str(lab.dir))
    assert done.returncode == 2
    assert "a lab is already up in" in done.stderr and str(lab.dir) in done.stderr
    assert "fedi-run lab down" in done.stderr
    assert (lab.dir / "lab.json").read_text() == before
    assert lab.run("garage", "hostname", check=True).stdout == "garage\n"


def test_a_missing_package_gives_the_install_command_and_exit_status_2(tmp_path):
    env = {
        "FEDI_RUN_LAB_SSHD": "/nonexistent/sbin/sshd",
        "FEDI_RUN_LAB_PEBBLE": "/nonexistent/bin/pebble",
    }
    done = fedi_run(
        "lab", "up", "--hosts", "garage", "--acme", "--dir", str(tmp_path / "lab"), env=env
    )
    assert done.returncode == 2
    assert "/nonexistent/sbin/sshd not found" in done.stderr
    assert "apt-get install openssh-server" in done.stderr
    assert "/nonexistent/bin/pebble not found" in done.stderr
    assert "apt-get install pebble" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "lab").exists()  # nothing was started or written


def test_without_root_up_says_so_and_exits_2(monkeypatch, tmp_path):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    result = CliRunner().invoke(
        cli, ["lab", "up", "--hosts", "garage", "--dir", str(tmp_path / "lab")]
    )
    assert result.exit_code == 2
    assert "run it as root" in result.output
    assert not (tmp_path / "lab").exists()


@pytest.mark.parametrize("hosts", ["Garage", "garage,,mastodon_1", "a,a"])
def test_bad_host_names_are_refused_with_exit_status_2(tmp_path, hosts):
    done = fedi_run("lab", "up", "--hosts", hosts, "--dir", str(tmp_path / "lab"))
    assert done.returncode == 2
    assert "host name" in done.stderr


def test_commands_on_a_directory_without_a_lab_say_how_to_start_one(tmp_path):
    for command in ("inventory", "status"):
        done = fedi_run("lab", command, "--dir", str(tmp_path))
        assert done.returncode == 2
        assert "no lab in" in done.stderr and "fedi-run lab up" in done.stderr
    done = fedi_run("lab", "down", "--dir", str(tmp_path))
    assert done.returncode == 0 and "nothing to stop" in done.stdout


def test_the_state_file_records_pids_and_namespaces(lab):
    data = json.loads((lab.dir / "lab.json").read_text())
    assert all(h["process"]["pid"] > 0 and h["mnt_ns"].startswith("mnt:[") for h in data["hosts"])
