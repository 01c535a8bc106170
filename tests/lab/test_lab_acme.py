"""Pebble runs on loopback with the lab CA and every host reaches it over HTTPS."""

from __future__ import annotations

import json
import os
import shlex

import pytest

from fedi_run.engine.lab import pebble, procs

pytestmark = pytest.mark.lab


def test_the_inventory_acme_table_points_at_a_running_pebble(lab):
    assert lab.acme is not None
    assert lab.acme.server.startswith("https://127.0.0.1:")
    assert lab.acme.ca_file.is_file()
    assert procs.is_running(lab.acme.process)
    environ = open(f"/proc/{lab.acme.process.pid}/environ", "rb").read().split(b"\0")
    assert b"PEBBLE_VA_ALWAYS_VALID=1" in environ
    cmdline = open(f"/proc/{lab.acme.process.pid}/cmdline", "rb").read().split(b"\0")
    assert cmdline[cmdline.index(b"-dnsserver") + 1].startswith(b"127.0.0.1:")


def test_the_directory_answers_on_the_machine_with_the_lab_ca(lab):
    assert pebble.directory_answers(lab.acme.server, lab.acme.ca_file)


@pytest.mark.parametrize("name", ["garage", "mastodon", "peertube", "pixelfed"])
def test_every_host_reaches_the_directory_with_the_lab_ca_and_not_without(lab, name):
    ca = f"/tmp/lab-ca-{os.getpid()}.pem"
    lab.write_file(name, ca, lab.acme.ca_file.read_bytes())
    server = shlex.quote(lab.acme.server)
    trusted = lab.run(name, f"curl -sS --fail --cacert {ca} {server}", check=True)
    assert "newAccount" in json.loads(trusted.stdout)
    untrusted = lab.run(name, f"curl -sS --fail {server}")
    assert untrusted.exit_status == 60  # peer certificate cannot be authenticated
    lab.run(name, f"rm {ca}", check=True)
