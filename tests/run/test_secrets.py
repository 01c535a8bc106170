"""Secrets on the lab: generated once, mode 0400, kept across runs unless rotated, and never in
any output, report or the state file."""

from __future__ import annotations

import pytest
from run_helpers import fedi

pytestmark = pytest.mark.lab

PLAYBOOK = """
[deployment]
name = "vault"
domain = "vault.example.org"

[services.vault]
enable = true
host = "hello"
fail = true
"""
TOKEN = "/var/lib/fedi-run/vault/secrets/vault/token"
KEY_ID = "/var/lib/fedi-run/vault/secrets/vault/key-id"


@pytest.mark.reliability(
    "security",
    "secrets masked in every output (a task prints them)",
    "placed once, 0400 in 0700, kept unless rotated; ******** in -v, JSON, "
    "JUnit, history and show-run, never in the state files; teardown "
    "removes them",
)
def test_secrets_are_placed_once_and_masked_everywhere(basic_lab, tmp_path):
    lab = basic_lab
    playbook = tmp_path / "p.toml"
    playbook.write_text(PLAYBOOK)
    junit = tmp_path / "report.xml"
    base = ("run", playbook, "-i", lab.inventory_path, "--no-apply", "--plugin", "vault_service")

    verbose = fedi(*base, "-v")
    token = lab.read_file("hello", TOKEN).decode()
    key_id = lab.read_file("hello", KEY_ID).decode()
    assert len(token) == 64 and key_id.startswith("GK") and len(key_id) == 26
    assert lab.run(
        "hello", f"stat -c %a {TOKEN} {KEY_ID} /var/lib/fedi-run/vault/secrets/vault", check=True
    ).stdout.split() == ["400", "400", "700"]
    assert verbose.exit_code == 1  # vault.leak fails on purpose, printing the token

    as_json = fedi(*base, "--json", "--junit", junit)
    assert lab.read_file("hello", TOKEN).decode() == token  # kept on a second run
    assert as_json.finished()["vault.secrets"]["status"] == "ok"

    outputs = [verbose.stdout, verbose.stderr, as_json.stdout, as_json.stderr, junit.read_text()]
    outputs += [fedi("history", playbook, "--json").stdout, fedi("show-run", playbook, "1").stdout]
    state_files = [p for p in (tmp_path / ".fedi-run").rglob("*") if p.is_file()]
    assert state_files
    blobs = [p.read_bytes() for p in state_files]
    for secret in (token, key_id):
        for text in outputs:
            assert secret not in text
        for blob in blobs:
            assert secret.encode() not in blob
    # The output existed and was masked, rather than never produced.
    assert "********" in verbose.stderr
    assert as_json.finished()["vault.leak"]["status"] == "failed"
    assert "token=********" in as_json.finished()["vault.leak"]["output"]

    rotated = fedi(*base, "--json", "--rotate-secrets", "all", "--only", "vault.secrets")
    assert rotated.finished()["vault.secrets"]["status"] == "changed"
    assert lab.read_file("hello", TOKEN).decode() != token

    down = fedi(
        "teardown",
        playbook,
        "-i",
        lab.inventory_path,
        "--no-apply",
        "--plugin",
        "vault_service",
        "--json",
        "--yes",
    )
    assert down.exit_code == 0, down.stdout
    assert lab.run("hello", "test -e /var/lib/fedi-run").exit_status != 0
