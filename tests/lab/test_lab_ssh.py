"""Host keys are pinned and only the deployer's key logs in."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest

from fedi_run.engine.errors import LabError
from fedi_run.engine.lab import keys
from fedi_run.engine.lab.ssh import HostConnection

pytestmark = pytest.mark.lab


def ssh(lab, host, *options, identity=None, known_hosts=None, command="true"):
    info = lab.hosts[host]
    return subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(identity or lab.identity),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts or lab.known_hosts_path}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            *options,
            f"root@{info.address}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_the_pinned_key_is_the_key_the_host_presents(lab):
    for name, info in lab.hosts.items():
        scan = subprocess.run(
            ["ssh-keyscan", "-t", "ed25519", info.address],
            capture_output=True,
            text=True,
            timeout=30,
        )
        presented = [
            line.split(None, 1)[1] for line in scan.stdout.splitlines() if not line.startswith("#")
        ]
        assert presented == [info.host_key], name


def test_system_ssh_connects_with_the_lab_known_hosts(lab):
    done = ssh(lab, "mastodon", command="hostname")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "mastodon"


def test_paramiko_refuses_a_host_with_another_key_than_the_pinned_one(lab):
    wrong = replace(lab.hosts["garage"], host_key=lab.hosts["mastodon"].host_key)
    with pytest.raises(LabError, match="not the pinned one"):
        HostConnection(wrong, lab.identity)


def test_system_ssh_refuses_a_host_with_another_key_than_the_pinned_one(lab, tmp_path):
    garage = lab.hosts["garage"]
    known = tmp_path / "known_hosts"
    known.write_text(f"{garage.address} {keys.generate_ed25519().public}\n")
    done = ssh(lab, "garage", known_hosts=known)
    assert done.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in done.stderr


def test_another_client_key_is_refused(lab, tmp_path):
    stranger = tmp_path / "id_stranger"
    keys.write_pair(keys.generate_ed25519(), stranger, "stranger")
    done = ssh(lab, "garage", identity=stranger)
    assert done.returncode == 255
    assert "Permission denied (publickey)" in done.stderr


def test_password_login_is_not_offered(lab):
    done = ssh(lab, "garage", "-o", "PreferredAuthentications=password,keyboard-interactive")
    assert done.returncode == 255
    assert "Permission denied (publickey)" in done.stderr
