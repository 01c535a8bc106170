"""``fedi-run verify``: each enabled service's unit and HTTPS endpoint, reported honestly.

The lab has no systemd and nothing on port 443, so there verify must say so — unit not active
(with what systemctl said), HTTPS connection refused — and exit 1. The TLS check itself is
tested against a small local HTTPS server with a certificate from a test CA: verified with that
CA, and refused (with the reason and the issuer) with another.
"""

from __future__ import annotations

import json
import socket

import pytest
from click.testing import CliRunner
from render_helpers import TlsServer, make_ca, make_leaf

from fedi_run.engine.cli.verify import verify
from fedi_run.engine.execute.connection import ConnectionPool
from fedi_run.engine.project import load_project
from fedi_run.engine.verify import check_https, verify_project

UNITS = {"garage": "garage.service", "mastodon": "mastodon-web.service"}
"""The units the built-in plugins declare (``ConfigSection.units``) for what PLAYBOOK enables."""

PLAYBOOK = """
[deployment]
name = "verify"
domain = "verify.test"

[services.mastodon]
enable = true
"""


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


# --- the TLS check ----------------------------------------------------------------------------


@pytest.fixture
def tls(tmp_path):
    """A local HTTPS server for mastodon.verify.test with a certificate of a test CA; yields
    ``(server, ca file, other CA file)``."""
    ca_file, _, ca = make_ca(tmp_path, "fedi-run verify CA")
    other_file, _, _ = make_ca(tmp_path, "some other CA")
    chain, key = make_leaf(tmp_path, ca, "mastodon.verify.test")
    with TlsServer("127.0.0.1", chain, key) as server:
        yield server, ca_file, other_file


def test_https_answers_with_a_certificate_of_the_configured_ca(tls):
    server, ca_file, _ = tls
    result = check_https(
        server.address, "mastodon.verify.test", str(ca_file), port=server.port, timeout=5
    )
    assert (result.status, result.verified, result.http_status) == ("ok", True, 200)
    assert result.issuer == "CN=fedi-run verify CA"
    assert result.describe() == (
        f"https://mastodon.verify.test:{server.port}/ (at 127.0.0.1:{server.port}): ok, HTTP 200; "
        "certificate issued by CN=fedi-run verify CA"
    )


def test_a_certificate_of_another_ca_is_reported_not_trusted(tls):
    server, _, other_file = tls
    result = check_https(
        server.address, "mastodon.verify.test", str(other_file), port=server.port, timeout=5
    )
    assert (result.status, result.verified) == ("tls-error", False)
    assert f"certificate not verified against the CA in {other_file}" in result.detail
    assert "unable to get local issuer certificate" in result.detail
    assert result.issuer == "CN=fedi-run verify CA"  # what the server presented, unverified
    assert "TLS error: certificate not verified" in result.describe()


def test_a_certificate_for_another_name_and_the_system_cas_are_refused(tls):
    server, ca_file, _ = tls
    wrong_name = check_https(
        server.address, "pixelfed.verify.test", str(ca_file), port=server.port, timeout=5
    )
    assert wrong_name.status == "tls-error" and "mismatch" in wrong_name.detail.lower()
    system = check_https(server.address, "mastodon.verify.test", None, port=server.port, timeout=5)
    assert system.status == "tls-error" and "against the system CAs" in system.detail


def test_nothing_listening_is_connection_refused():
    port = free_port()
    result = check_https("127.0.0.1", "mastodon.verify.test", None, port=port, timeout=5)
    assert result.status == "refused"
    assert result.describe().endswith(": connection refused")


# --- on the lab -------------------------------------------------------------------------------


@pytest.mark.lab
def test_verify_on_the_lab_reports_what_it_finds(lab_factory, tmp_path):
    lab = lab_factory(["garage", "mastodon"], acme=True)
    playbook = tmp_path / "playbook.toml"
    playbook.write_text(PLAYBOOK)
    inventory = str(lab.inventory_path)

    runner = CliRunner()
    done = runner.invoke(verify, [str(playbook), "-i", inventory])
    print(done.output)
    assert done.exit_code == 1, done.output
    lines = done.output.splitlines()
    assert lines[-1] == "verify: 0 of 2 enabled service(s) pass."
    by_service = {line.split()[0]: line for line in lines[:-1]}
    assert sorted(by_service) == ["garage", "mastodon"]
    for service, host in (("mastodon", "mastodon"), ("garage", "garage")):
        line = by_service[service]
        address = lab.hosts[host].address
        assert f"{UNITS[service]}: not active (systemctl: " in line, line
        assert f"https://{service}.verify.test/ (at {address}:443): connection refused" in line, (
            line
        )
        assert " FAIL " in line

    done = runner.invoke(verify, [str(playbook), "-i", inventory, "--json"])
    assert done.exit_code == 1, done.output
    report = json.loads(done.output)
    assert report["ok"] is False and report["deployment"] == "verify"
    for entry in report["services"]:
        assert entry["unit"]["name"] == UNITS[entry["service"]]
        assert entry["unit"]["active"] is False and entry["unit"]["detail"]
        assert entry["https"]["status"] == "refused"
        assert entry["address"] == lab.hosts[entry["host"]].address

    # An HTTPS server on mastodon's address, with a certificate of the lab's CA: that check
    # passes; the unit still does not (no systemd in the lab), so the service still fails.
    ca_file, _, ca = make_ca(tmp_path, "lab-like CA")
    chain, key = make_leaf(tmp_path, ca, "mastodon.verify.test")
    (tmp_path / "acme.toml").write_text(f'[acme]\nca_file = "{ca_file}"\n')
    project = load_project(playbook, [lab.inventory_path, tmp_path / "acme.toml"], apply=False)
    with TlsServer(lab.hosts["mastodon"].address, chain, key) as server:
        pool = ConnectionPool(project.playbook.hosts)
        try:
            results = {
                r.service: r
                for r in verify_project(project, pool, https_port=server.port, timeout=5)
            }
        finally:
            pool.close_all()
    mastodon = results["mastodon"]
    assert mastodon.https.ok and mastodon.https.issuer == "CN=lab-like CA"
    assert not mastodon.unit.active and not mastodon.ok
    assert results["garage"].https.status == "refused"


def test_an_unloadable_playbook_is_an_error_with_status_2(tmp_path):
    playbook = tmp_path / "playbook.toml"
    playbook.write_text("[deployment]\nname = 'x'\n")
    done = CliRunner().invoke(verify, [str(playbook)])
    assert done.exit_code == 2
    assert "error" in done.output


def test_nothing_enabled_passes(tmp_path):
    playbook = tmp_path / "playbook.toml"
    playbook.write_text(
        '[deployment]\nname = "x"\ndomain = "x.test"\n\n[hosts.web]\naddress = "127.0.0.2"\n'
    )
    done = CliRunner().invoke(verify, [str(playbook)])
    assert done.exit_code == 0, done.output
    assert "no service is enabled" in done.output
