"""The acme plugin on real lab hosts and a real Pebble: the account registered from the
deployer, the lab CA trusted on each host, the directory reached, the undo, and the failures.

Every run goes through the CLI in this process, selected with ``--only`` so that only the acme
tasks (and what they pull in) run, and without ``nixops4 apply``.
"""

from __future__ import annotations

import json
import os
import stat
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from fedi_run.engine.cli.main import cli
from fedi_run.engine.errors import ActionFailed
from fedi_run.plugins.acme import account, ca_link, ca_path
from fedi_run.plugins.acme.trust import trust_link

NAME = "acmetest"
CA_PATH = ca_path(SimpleNamespace(name=NAME))
"""The deployment's own CA file on each host (another deployment's has another name)."""
CA_LINK = ca_link(SimpleNamespace(name=NAME))
EMAIL = "ops@fedi-test.org"
CURL = "curl -fsS --max-time 10 -o /dev/null -w '%{{http_code}}' {url}"


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str = ""

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def finished(self) -> dict[str, dict]:
        """task id -> its task_finished event."""
        return {e["id"]: e for e in self.events() if e["event"] == "task_finished"}

    def statuses(self) -> dict[str, str]:
        return {task: event["status"] for task, event in self.finished().items()}

    def recap_total(self, status: str) -> int:
        recap = [e for e in self.events() if e["event"] == "run_finished"][-1]["recap"]
        return sum(counts[status] for counts in recap.values())


def fedi(command: str, playbook: Path, *inventories: Path, args: tuple[str, ...] = ()) -> Run:
    """``fedi-run COMMAND PLAYBOOK -i … --no-apply --json ARGS`` in this process."""
    argv = [command, str(playbook)]
    for inventory in inventories:
        argv += ["-i", str(inventory)]
    argv += ["--no-apply", "--json", *args]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def write_playbook(directory: Path, *, accept_terms: bool = True, email: str = EMAIL) -> Path:
    path = directory / "playbook.toml"
    path.write_text(
        textwrap.dedent(f"""\
        [deployment]
        name = "{NAME}"
        domain = "fedi-test.org"

        [services.mastodon]
        enable = true

        [acme]
        email = "{email}"
        accept_terms = {str(accept_terms).lower()}
        """)
    )
    return path


def write_inventory(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def curl(lab, host: str):
    return lab.run(host, CURL.format(url=lab.acme.server), timeout=30)


def key_file(playbook: Path) -> Path:
    return playbook.parent / ".fedi-run" / "acme" / f"{NAME}-account.pem"


def key_lines(path: Path) -> list[str]:
    """The base64 lines of a PEM key (what must never be seen anywhere)."""
    return [line for line in path.read_text().splitlines() if line and not line.startswith("-----")]


def account_status(lab, key: Path) -> str:
    """What Pebble says about the account of ``key``: its status, or the error's text."""
    import josepy as jose
    from acme import client, messages
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    network = client.ClientNetwork(
        jose.JWKEC(key=private), alg=jose.ES256, verify_ssl=str(lab.acme.ca_file), timeout=10
    )
    acme_client = client.ClientV2(client.ClientV2.get_directory(lab.acme.server, network), network)
    try:
        blank = messages.RegistrationResource(body=messages.Registration())
        account = acme_client.query_registration(blank)
    except messages.Error as error:
        return str(error)
    return f"{account.body.status} {','.join(account.body.contact)}"


@pytest.fixture
def lab(lab_factory):
    return lab_factory(["garage", "mastodon"], acme=True)


@pytest.mark.lab
def test_run_trusts_the_ca_registers_the_account_and_teardown_undoes_it(lab, tmp_path):
    playbook = write_playbook(tmp_path)
    for host in ("garage", "mastodon"):
        before = curl(lab, host)
        assert before.exit_status == 60, before  # SSL certificate problem
        assert "certificate" in before.stderr

    first = fedi("run", playbook, lab.inventory_path, args=("--only", "acme.*"))
    assert first.exit_code == 0, first.stdout
    assert first.statuses() == {
        "acme.account": "changed",
        "acme.trust@garage": "changed",
        "acme.trust@mastodon": "changed",
        "acme.reach@garage": "ok",
        "acme.reach@mastodon": "ok",
    }
    finished = first.finished()
    assert finished["acme.account"]["changes"] == [
        f"registered ACME account {EMAIL} at {lab.acme.server}"
    ]
    assert finished["acme.trust@mastodon"]["changes"] == [
        f"trusted the CA {lab.acme.ca_file} in {CA_PATH}"
    ]
    for host in ("garage", "mastodon"):
        after = curl(lab, host)
        assert after.ok and after.stdout == "200", after  # its own trust store, no --cacert
        assert lab.read_file(host, CA_PATH) == Path(lab.acme.ca_file).read_bytes()
        assert lab.run(host, f"stat -c %a {CA_PATH}").stdout.strip() == "644"
        assert lab.run(host, f"test -L {CA_LINK}").ok

    key = key_file(playbook)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert key.parent != playbook.parent / ".fedi-run" / NAME  # not the rendered deployment
    record = json.loads((key.parent / f"{NAME}-account.json").read_text())
    assert stat.S_IMODE((key.parent / f"{NAME}-account.json").stat().st_mode) == 0o600
    assert record["accounts"][lab.acme.server]["contact"] == [f"mailto:{EMAIL}"]
    assert account_status(lab, key) == f"valid mailto:{EMAIL}"
    secret = key_lines(key)

    second = fedi("run", playbook, lab.inventory_path, args=("--only", "acme.*"))
    assert second.exit_code == 0, second.stdout
    assert set(second.statuses().values()) == {"ok"}
    assert second.recap_total("changed") == 0

    check = fedi("run", playbook, lab.inventory_path, args=("--only", "acme.*", "--check"))
    assert check.exit_code == 0, check.stdout
    assert set(check.statuses().values()) == {"ok"}

    state_db = (playbook.parent / ".fedi-run" / "state.db").read_bytes().decode("latin-1")
    for output in (first.stdout, second.stdout, check.stdout, state_db):
        assert not any(line in output for line in secret)

    down = fedi("teardown", playbook, lab.inventory_path, args=("--only", "acme.*", "--yes"))
    assert down.exit_code == 0, down.stdout
    assert down.statuses()["acme.trust@mastodon"] == "changed"
    assert down.statuses()["acme.account"] == "ok"  # the account is kept: reused next time
    for host in ("garage", "mastodon"):
        gone = curl(lab, host)
        assert gone.exit_status == 60, gone  # the CA is no longer trusted
        assert not lab.run(host, f"test -e {CA_PATH} || test -L {CA_LINK}").ok
    assert key.exists() and account_status(lab, key) == f"valid mailto:{EMAIL}"
    assert not any(line in down.stdout for line in secret)

    again = fedi("teardown", playbook, lab.inventory_path, args=("--only", "acme.*", "--yes"))
    assert again.exit_code == 0, again.stdout
    assert set(again.statuses().values()) == {"ok"}


@pytest.mark.lab
def test_a_changed_email_updates_the_account(lab, tmp_path):
    playbook = write_playbook(tmp_path)
    assert fedi("run", playbook, lab.inventory_path, args=("--only", "acme.account")).exit_code == 0
    write_playbook(tmp_path, email="admin@fedi-test.org")
    check = fedi("run", playbook, lab.inventory_path, args=("--only", "acme.account", "--check"))
    assert check.exit_code == 0, check.stdout
    assert check.finished()["acme.account"]["changes"] == [
        f"updated the ACME account's contact to admin@fedi-test.org at {lab.acme.server}"
    ]
    # a check changes nothing
    assert account_status(lab, key_file(playbook)) == f"valid mailto:{EMAIL}"
    changed = fedi("run", playbook, lab.inventory_path, args=("--only", "acme.account"))
    assert changed.exit_code == 0, changed.stdout
    assert changed.finished()["acme.account"]["changes"] == [
        f"updated the ACME account's contact to admin@fedi-test.org at {lab.acme.server}"
    ]
    assert account_status(lab, key_file(playbook)) == "valid mailto:admin@fedi-test.org"


@pytest.mark.lab
def test_check_mode_changes_nothing_and_predicts_the_run(lab, tmp_path):
    playbook = write_playbook(tmp_path)
    check = fedi("run", playbook, lab.inventory_path, args=("--only", "acme.*", "--check"))
    assert check.exit_code == 0, check.stdout
    assert check.statuses() == {
        "acme.account": "changed",
        "acme.trust@garage": "changed",
        "acme.trust@mastodon": "changed",
        "acme.reach@garage": "ok",
        "acme.reach@mastodon": "ok",
    }
    assert not key_file(playbook).exists()
    for host in ("garage", "mastodon"):
        assert curl(lab, host).exit_status == 60
        assert not lab.run(host, f"test -e {CA_PATH}").ok


@pytest.mark.lab
@pytest.mark.parametrize(
    "server, expected",
    [
        ("https://127.0.0.1:1/dir", "cannot connect to the ACME server https://127.0.0.1:1/dir"),
        (
            "{base}/no-such-directory",
            "{base}/no-such-directory is not an ACME directory (HTTP 404)",
        ),
    ],
)
def test_a_wrong_server_fails_the_account_first_and_skips_the_services(
    lab, tmp_path, server, expected
):
    base = lab.acme.server.rsplit("/", 1)[0]
    server, expected = server.format(base=base), expected.format(base=base)
    playbook = write_playbook(tmp_path)
    wrong = write_inventory(tmp_path, "wrong.toml", f'[acme]\nserver = "{server}"\n')
    run = fedi("run", playbook, lab.inventory_path, wrong, args=("--only", "mastodon.secrets"))
    assert run.exit_code == 1, run.stdout
    statuses = run.statuses()
    assert statuses["acme.account"] == "failed"
    assert expected in run.finished()["acme.account"]["message"]
    for task in ("acme.trust@mastodon", "acme.reach@mastodon", "mastodon.secrets"):
        assert statuses[task] == "skipped", statuses
    assert not lab.run("mastodon", f"test -e {CA_PATH}").ok  # nothing touched a host


@pytest.mark.lab
def test_a_server_whose_certificate_is_not_trusted_names_the_ca(lab, tmp_path):
    """Without ca_file the deployer verifies Pebble with its system CAs, and fails."""
    inventory = tomllib.loads(lab.inventory_path.read_text())
    lines = []
    for name, host in inventory["hosts"].items():
        lines.append(f"[hosts.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in host.items()]
    lines += ["[acme]", f'server = "{lab.acme.server}"']
    no_ca = write_inventory(tmp_path, "no-ca.toml", "\n".join(lines) + "\n")
    run = fedi("run", write_playbook(tmp_path), no_ca, args=("--only", "acme.account"))
    assert run.exit_code == 1, run.stdout
    message = run.finished()["acme.account"]["message"]
    assert f"cannot verify the TLS certificate of the ACME server {lab.acme.server}" in message
    assert "system CAs" in message


@pytest.mark.lab
def test_terms_not_accepted_fail_with_where_to_read_them(lab, tmp_path):
    playbook = write_playbook(tmp_path, accept_terms=False)
    run = fedi("run", playbook, lab.inventory_path, args=("--only", "acme.*"))
    assert run.exit_code == 1, run.stdout
    message = run.finished()["acme.account"]["message"]
    assert lab.acme.server in message
    assert "terms of service" in message and "accept_terms = true" in message
    assert "data:text/plain," in message  # Pebble's terms URL, to read
    assert run.statuses()["acme.trust@mastodon"] == "skipped"


@pytest.mark.lab
def test_a_host_that_cannot_reach_the_directory_is_named(lab, tmp_path):
    playbook = write_playbook(tmp_path)
    run = fedi(
        "run", playbook, lab.inventory_path, args=("--only", "acme.reach@mastodon", "--no-deps")
    )
    assert run.exit_code == 1, run.stdout
    message = run.finished()["acme.reach@mastodon"]["message"]
    address = lab.hosts["mastodon"].address
    assert message.startswith(
        f"host mastodon ({address}) cannot reach the ACME directory {lab.acme.server}: "
    )
    assert "certificate" in message


@pytest.mark.lab
def test_a_ca_file_that_is_not_a_certificate_never_leaves_the_deployer(lab, tmp_path):
    key = Path(lab.acme.ca_file).with_name("ca.key")
    inventory = write_inventory(tmp_path, "key.toml", f'[acme]\nca_file = "{key}"\n')
    run = fedi(
        "run",
        write_playbook(tmp_path),
        lab.inventory_path,
        inventory,
        args=("--only", "acme.trust@mastodon", "--no-deps"),
    )
    # Bad input: refused when the playbook is read (the CA goes into the Nix deployment too),
    # before any host is touched.
    assert run.exit_code == 2, run.stdout
    assert f"key.toml: acme.ca_file: {key} holds a PRIVATE KEY block" in run.stderr
    assert "expected CA certificates only (PEM), never a key" in run.stderr
    assert run.events() == []
    assert not lab.run("mastodon", f"test -e {CA_PATH}").ok
    assert not any(line in run.stdout + run.stderr for line in key_lines(key))


def test_place_ca_refuses_what_is_not_a_certificate(tmp_path):
    """The trust task itself never sends a key to a host, even if asked to directly."""
    from fedi_run.engine.errors import ActionFailed
    from fedi_run.engine.execute.context import Context
    from fedi_run.engine.report.masking import Masker
    from fedi_run.plugins.acme.trust import place_ca

    key = tmp_path / "ca.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n")
    playbook = SimpleNamespace(section=lambda name: SimpleNamespace(ca_file=str(key)))
    context = Context(
        connection=SimpleNamespace(name="mastodon", host=SimpleNamespace(address="127.0.0.9")),
        masker=Masker(),
        playbook=playbook,
    )
    with pytest.raises(ActionFailed, match="no PEM certificate|PRIVATE KEY"):
        place_ca(context, to=CA_PATH)


# --- without the lab -----------------------------------------------------------------------


def test_the_trust_link_is_the_one_update_ca_certificates_makes():
    assert CA_PATH == "/usr/local/share/ca-certificates/fedi-run-acmetest-acme.crt"
    assert trust_link(CA_PATH) == CA_LINK
    assert os.path.basename(CA_LINK) == "fedi-run-acmetest-acme.pem"
    assert ca_path(SimpleNamespace(name="another")) != CA_PATH  # each deployment its own


SETTINGS = SimpleNamespace(
    server="https://acme.example.net/directory",
    email="ops@example.com",
    ca_file=None,
    accept_terms=True,
)


def acme_error(code: str, detail: str):
    from acme import messages

    return messages.Error(typ=f"urn:ietf:params:acme:error:{code}", detail=detail)


def test_bad_nonces_are_retried():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < account.ATTEMPTS:
            raise acme_error("badNonce", "JWS has an invalid anti-replay nonce")
        return "registered"

    assert account._call(SETTINGS, "registering", flaky) == "registered"
    assert len(calls) == account.ATTEMPTS


def test_bad_nonces_without_end_fail_naming_the_server():
    def always():
        raise acme_error("badNonce", "JWS has an invalid anti-replay nonce")

    expected = r"acme\.example\.net/directory refused the request while registering: badNonce"
    with pytest.raises(ActionFailed, match=expected):
        account._call(SETTINGS, "registering", always)


@pytest.mark.parametrize(
    "code, detail, expected",
    [
        (
            "invalidContact",
            "example.com is a forbidden domain",
            "the ACME server https://acme.example.net/directory rejected the contact address "
            "'ops@example.com': example.com is a forbidden domain; set a valid email in [acme]",
        ),
        (
            "agreementRequired",
            "must agree to terms of service",
            "the ACME server https://acme.example.net/directory requires agreeing to its terms "
            "of service: must agree to terms of service; read them and set accept_terms = true "
            "in [acme]",
        ),
    ],
)
def test_rejections_name_the_server_and_what_to_change(code, detail, expected):
    def rejected():
        raise acme_error(code, detail)

    with pytest.raises(ActionFailed) as failure:
        account._call(SETTINGS, "registering", rejected)
    assert str(failure.value) == expected
