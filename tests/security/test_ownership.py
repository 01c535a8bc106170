"""Ownership on the lab: everything a deployment places or removes on a host is its own.

Each scenario runs real deployments on lab hosts and compares, byte for byte, every file under
/var/lib/fedi-run, /etc and the other places fedi-run writes to (``helpers.host_snapshot``: the
sha256, mode and owner of each), on every host, before and after: the quickstart run twice,
two deployments sharing hosts (by a host's name and by an explicit ``host``), two teardowns of
a file both deployments manage that existed before, and deployment names that would collide
with fedi-run's own folders.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import EXAMPLES, CliResult, changed_entries, host_snapshot, with_enabled

from fedi_run.engine.cli.main import cli

pytestmark = pytest.mark.lab

PASSWORD = "a long and secret admin password"
QUICKSTART_HOSTS = ("hello", "cowsay", "garage", "mastodon", "peertube", "pixelfed")
FEDIVERSITY_HOSTS = ("garage", "mastodon", "peertube", "pixelfed")


def fedi(*args: object) -> CliResult:
    """``fedi-run ARGS``, in this process, as a user types it."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


def ran(result: CliResult) -> CliResult:
    assert result.exit_code == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def run_started(result: CliResult) -> dict:
    return next(e for e in result.events() if e["event"] == "run_started")


def snapshots(lab, hosts) -> dict[str, dict[str, str]]:
    return {host: host_snapshot(lab, host) for host in hosts}


def differences(before: dict, after: dict) -> dict[str, dict]:
    """host → the entries that differ (empty hosts left out)."""
    found = {host: changed_entries(before[host], after[host]) for host in before}
    return {host: changes for host, changes in found.items() if changes}


def fediversity(directory: Path, **replacements: str) -> Path:
    """The Fediversity example in ``directory``, with its initial user's password file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "secrets").mkdir(exist_ok=True)
    (directory / "secrets" / "admin-password").write_text(PASSWORD + "\n")
    text = (EXAMPLES / "fediversity.toml").read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = directory / "fediversity.toml"
    path.write_text(text)
    return path


def without_acme(text: str) -> str:
    """A playbook's or inventory's text without its [acme] table."""
    return re.sub(r"\n\[acme\]\n(?:[^\[\n][^\n]*\n|\n)*", "\n", text)


# --- the quickstart, twice ------------------------------------------------------------------


@pytest.mark.reliability(
    "security",
    "the quickstart run twice (basic.toml enables no service; the lab has hosts named garage, "
    "mastodon, peertube, pixelfed)",
    "exit 0 every time; the second basic run touches only hello, cowsay and the deployer, has no "
    "clean-up task; every file under /var/lib/fedi-run, /etc, /usr/local/bin and the CA folder "
    "of every host is byte for byte as after the first pass, the Fediversity secrets included",
)
def test_the_quickstart_twice_keeps_every_secret(lab_factory, tmp_path):
    lab = lab_factory(QUICKSTART_HOSTS, acme=True)
    examples = tmp_path / "examples"
    fed = fediversity(examples)
    basic = examples / "basic.toml"
    shutil.copy(EXAMPLES / "basic.toml", basic)
    inventory = lab.inventory_path

    def quickstart() -> list[CliResult]:
        return [
            ran(fedi("run", basic, "-i", inventory, "--no-apply", "--json")),
            ran(fedi("plan", fed, "-i", inventory, "--no-apply")),
            ran(fedi("run", fed, "-i", inventory, "--no-apply", "--json")),
            ran(fedi("run", fed, "-i", inventory, "--no-apply", "--json")),
        ]

    quickstart()
    first = snapshots(lab, QUICKSTART_HOSTS)
    secrets = [
        p for p in first["mastodon"] if "/secrets/mastodon/" in p and first["mastodon"][p][0] == "f"
    ]
    assert len(secrets) >= 10  # the Fediversity deployment is in place

    basic_again, plan, fed_again, fed_third = quickstart()
    assert set(run_started(basic_again)["hosts"]) == {"hello", "cowsay", "local"}
    assert not [t for t in basic_again.finished() if ".absent" in t or "drop-key" in t]
    assert "destructive" not in plan.stdout  # nothing to remove: the deployment keeps it all
    assert {e["status"] for e in fed_again.finished().values()} == {"ok"}
    assert differences(first, snapshots(lab, QUICKSTART_HOSTS)) == {}


# --- two deployments on the same hosts ------------------------------------------------------


@pytest.mark.reliability(
    "security",
    "two deployments on the same hosts: one enables the apps on their hosts, the other mastodon "
    "on the host of the same name and pixelfed on that host by an explicit `host`, then switches "
    "them off",
    "exit 0; the second adds files only under /var/lib/fedi-run/<its name>/, its clean-up runs "
    "only on the hosts it used and leaves none of its files; the first deployment's every file, "
    "secret and original byte for byte as before, and its next run changes nothing",
)
def test_two_deployments_on_the_same_hosts_leave_each_other_as_they_were(lab_factory, tmp_path):
    lab = lab_factory(FEDIVERSITY_HOSTS, acme=True)
    first = fediversity(tmp_path / "first")
    ran(fedi("run", first, "-i", lab.inventory_path, "--no-apply", "--json"))
    before = snapshots(lab, FEDIVERSITY_HOSTS)
    assert any("/var/lib/fedi-run/fediversity/secrets/mastodon/" in p for p in before["mastodon"])

    # The neighbour: mastodon on the host called mastodon (the name clash), pixelfed on it too
    # (an explicit host); no ACME, so that it changes nothing outside its own directory.
    inventory = tmp_path / "neighbour-inventory.toml"
    inventory.write_text(without_acme(lab.inventory_path.read_text()))
    neighbour = fediversity(
        tmp_path / "neighbour",
        **{'name = "fediversity"': 'name = "neighbour"'},
        **{'host = "pixelfed"': 'host = "mastodon"'},
    )
    neighbour.write_text(without_acme(neighbour.read_text()))
    with_enabled(neighbour, neighbour, {"mastodon", "pixelfed"})
    placed = ran(fedi("run", neighbour, "-i", inventory, "--no-apply", "--json"))
    assert set(run_started(placed)["hosts"]) == {"garage", "mastodon", "local"}
    during = differences(before, snapshots(lab, FEDIVERSITY_HOSTS))
    assert set(during) == {"garage", "mastodon"}
    for host, changes in during.items():
        for path, (old, _new) in changes.items():
            assert path.startswith("/var/lib/fedi-run/neighbour") and old is None, (host, path)
    assert any("/neighbour/secrets/pixelfed/app-key" in p for p in during["mastodon"])

    # Switched off: it cleans up where it had its services, and only there.
    with_enabled(neighbour, neighbour, set())
    plan = ran(fedi("plan", neighbour, "-i", inventory, "--no-apply", "--json"))
    destructive = {
        (t["id"], t["host"]) for t in json.loads(plan.stdout)["tasks"] if t["destructive"]
    }
    assert destructive == {
        ("mastodon.absent", "mastodon"),
        ("pixelfed.absent", "mastodon"),
        ("garage.absent", "garage"),
    }
    cleaned = ran(fedi("run", neighbour, "-i", inventory, "--no-apply", "--json"))
    assert set(run_started(cleaned)["hosts"]) == {"garage", "mastodon", "local"}
    assert {t for t, e in cleaned.finished().items() if e.get("destructive")} == {
        "mastodon.absent",
        "pixelfed.absent",
        "garage.absent",
    }
    after = differences(before, snapshots(lab, FEDIVERSITY_HOSTS))
    for host, changes in after.items():
        for path, (old, new) in changes.items():  # what is left of the neighbour: directories
            assert path.startswith("/var/lib/fedi-run/neighbour") and old is None, (host, path)
            assert new.startswith("d "), (host, path, new)
    again = ran(fedi("run", neighbour, "-i", inventory, "--no-apply", "--json"))
    assert set(run_started(again)["hosts"]) == {"local"}  # cleaned up: no host touched again

    # The first deployment finds everything as it left it.
    rerun = ran(fedi("run", first, "-i", lab.inventory_path, "--no-apply", "--json"))
    assert {e["status"] for e in rerun.finished().values()} == {"ok"}


# --- a file two deployments manage ----------------------------------------------------------

MOTD = """
[deployment]
name = "{name}"
domain = "{name}.example.org"

[tasks.motd]
host = "web"
file = {{ path = "/etc/motd", content = "{name}'s message of the day\\n" }}
"""
OPERATORS = b"The operator's own message of the day, from before fedi-run.\n"


@pytest.mark.reliability(
    "security",
    "two deployments manage /etc/motd, which the operator had before; torn down in either order",
    "each keeps its own original: after the second teardown /etc/motd holds the operator's "
    "bytes again (in the other order the file is left to the deployment still there, which "
    "puts it back); no original is left under /var/lib/fedi-run; exit 0 throughout",
)
@pytest.mark.parametrize("order", ["last first", "first first"])
def test_two_teardowns_of_a_shared_file_put_back_the_operators_original(
    lab_factory, tmp_path, order
):
    lab = lab_factory(["web"])
    lab.write_file("web", "/etc/motd", OPERATORS)
    before = host_snapshot(lab, "web")
    playbooks = {}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        playbooks[name] = tmp_path / name / "playbook.toml"
        playbooks[name].write_text(MOTD.format(name=name))

    def run(kind: str, name: str) -> CliResult:
        confirmed = ("--yes",) if kind == "teardown" else ()
        return ran(
            fedi(
                kind, playbooks[name], "-i", lab.inventory_path, "--no-apply", "--json", *confirmed
            )
        )

    run("run", "one")
    assert lab.read_file("web", "/etc/motd") == b"one's message of the day\n"
    run("run", "two")
    assert lab.read_file("web", "/etc/motd") == b"two's message of the day\n"
    for name in ("one", "two"):
        assert lab.run("web", f"test -f /var/lib/fedi-run/{name}/originals/etc/motd").ok
    if order == "last first":
        run("teardown", "two")
        assert lab.read_file("web", "/etc/motd") == b"one's message of the day\n"
        run("teardown", "one")
    else:
        down = run("teardown", "one")  # two still manages the file: it stays as two wrote it
        assert lab.read_file("web", "/etc/motd") == b"two's message of the day\n"
        assert "deployment two changed it since" in down.finished()["tasks.motd"]["changes"][0]
        run("teardown", "two")
    assert lab.read_file("web", "/etc/motd") == OPERATORS
    assert lab.run("web", "find /var/lib/fedi-run -type f 2>/dev/null").stdout == ""
    assert changed_entries(before, host_snapshot(lab, "web")) == {}


# --- names that would collide with fedi-run's own folders ----------------------------------


@pytest.mark.reliability(
    "security",
    "deployment names acme, logs, ACME, secrets, originals (fedi-run's own folders); hosts "
    "called local; hosts and tasks called acme, logs, local",
    "a reserved deployment or host name: exit 2 naming the key and why, before any host is "
    "touched; hosts and tasks of those names are kept apart: the run logs stay in logs/<run>/, "
    "the ACME account key in acme/, the rendering in .fedi-run/<name>/, each host's files under "
    "/var/lib/fedi-run/<deployment>/",
)
def test_reserved_names_are_refused_or_kept_apart(lab_factory, tmp_path):
    lab = lab_factory(["acme", "logs"], acme=True)
    before = snapshots(lab, ("acme", "logs"))
    for name in ("acme", "logs", "ACME", "Logs", "secrets", "originals"):
        path = tmp_path / f"{name}.toml"
        path.write_text(f'[deployment]\nname = "{name}"\ndomain = "example.org"\n')
        for command in (("validate",), ("plan", "--json"), ("run", "--json")):
            result = fedi(*command[:1], path, "-i", lab.inventory_path, "--no-apply", *command[1:])
            assert result.exit_code == 2, (name, command, result.stdout, result.stderr)
            assert "deployment.name" in result.stderr and "reserved" in result.stderr, name
            assert "Traceback" not in result.stderr and '"run_started"' not in result.stdout
    local = tmp_path / "local-host.toml"
    local.write_text(
        '[deployment]\nname = "fine"\ndomain = "example.org"\n'
        '[hosts.local]\naddress = "127.0.0.9"\n'
    )
    refused = fedi("run", local, "--no-apply")
    assert refused.exit_code == 2 and "hosts.local" in refused.stderr
    assert differences(before, snapshots(lab, ("acme", "logs"))) == {}  # nothing ran anywhere

    # A deployment called local, on hosts called acme and logs, with tasks called acme, logs
    # and local, and ACME: everything lands in its own place.
    playbook = tmp_path / "playbook.toml"
    playbook.write_text(
        '[deployment]\nname = "local"\ndomain = "fedi-test.org"\n'
        '[services.garage]\nhost = "acme"\n'
        '[services.mastodon]\nenable = true\nhost = "acme"\n'
        '[services.pixelfed]\nenable = true\nhost = "logs"\n'
        '[acme]\nemail = "ops@fedi-test.org"\naccept_terms = true\n'
        '[tasks.acme]\nhost = "acme"\nrun = "echo acme"\n'
        '[tasks.logs]\nhost = "logs"\nrun = "echo logs"\n'
        '[tasks.local]\nhost = "logs"\nrun = "echo local"\n'
    )
    result = fedi("run", playbook, "-i", lab.inventory_path, "--no-apply", "--json")
    assert result.exit_code == 0, result.stdout[-3000:] + result.stderr[-3000:]
    state = tmp_path / ".fedi-run"
    assert sorted(p.name for p in state.iterdir() if p.is_dir()) == ["acme", "local", "logs"]
    assert sorted(p.name for p in (state / "acme").iterdir()) == [
        "local-account.json",
        "local-account.pem",
    ]
    [run_logs] = (state / "logs").iterdir()
    assert {p.name for p in run_logs.iterdir()} >= {
        "tasks.acme.log",
        "tasks.logs.log",
        "tasks.local.log",
    }
    assert (state / "local" / "flake.nix").is_file() and (state / "local" / ".git").is_dir()
    rendering = [p.name for p in (state / "local").rglob("*")]
    assert not [n for n in rendering if "account" in n or n.endswith(".log")], rendering
    for host, service in (("acme", "mastodon"), ("logs", "pixelfed")):
        listing = lab.run(host, "find /var/lib/fedi-run -mindepth 1 -maxdepth 1", check=True)
        assert listing.stdout.split() == ["/var/lib/fedi-run/local"], host
        assert lab.run(host, f"test -d /var/lib/fedi-run/local/secrets/{service}").ok


# --- from the shared layout of earlier versions ---------------------------------------------

VAULT = """
[deployment]
name = "vault"
domain = "vault.example.org"

[services.vault]
enable = true
host = "web"

[tasks.motd]
host = "web"
file = { path = "/etc/motd", content = "vault's message of the day\\n" }
"""


@pytest.mark.reliability(
    "security",
    "a deployment that placed secrets and changed a file with an earlier version (shared "
    "/var/lib/fedi-run/secrets/<service> and /var/lib/fedi-run/originals)",
    "its next run moves its secrets into /var/lib/fedi-run/<deployment>/secrets byte for byte "
    "(not generated anew); its teardown puts back the original the earlier version kept",
)
def test_secrets_and_originals_of_the_shared_layout_are_adopted(lab_factory, tmp_path):
    from helpers import record_runs

    lab = lab_factory(["web"])
    token, key_id = "a" * 64, "GK" + "b" * 24
    lab.run(
        "web",
        "mkdir -p -m 700 /var/lib/fedi-run/secrets/vault /var/lib/fedi-run/originals/etc "
        f"&& printf %s {token} > /var/lib/fedi-run/secrets/vault/token "
        f"&& printf %s {key_id} > /var/lib/fedi-run/secrets/vault/key-id "
        "&& chmod 400 /var/lib/fedi-run/secrets/vault/* "
        "&& cp -p /etc/motd /var/lib/fedi-run/originals/etc/motd 2>/dev/null "
        "|| printf 'the operator\\n' > /var/lib/fedi-run/originals/etc/motd",
        check=True,
    )
    operators = lab.read_file("web", "/var/lib/fedi-run/originals/etc/motd")
    lab.write_file("web", "/etc/motd", b"vault's message of the day\n")
    playbook = tmp_path / "playbook.toml"
    playbook.write_text(VAULT)
    # what the earlier version's runs recorded: these tasks ran on web
    record_runs(
        tmp_path / ".fedi-run" / "state.db",
        "vault",
        [("vault.secrets", "web"), ("vault.show", "web"), ("tasks.motd", "web")],
    )
    base = ("-i", lab.inventory_path, "--no-apply", "--json", "--plugin", "vault_service")
    first = ran(fedi("run", playbook, *base))
    assert first.finished()["vault.secrets"]["status"] == "changed"  # moved, not generated
    own = "/var/lib/fedi-run/vault/secrets/vault"
    assert lab.read_file("web", f"{own}/token") == token.encode()
    assert lab.read_file("web", f"{own}/key-id") == key_id.encode()
    assert not lab.run("web", "test -e /var/lib/fedi-run/secrets/vault").ok
    assert ran(fedi("run", playbook, *base)).statuses()["vault.secrets"] == "ok"
    ran(fedi("teardown", playbook, *base, "--yes"))
    assert lab.read_file("web", "/etc/motd") == operators
    assert lab.run("web", "find /var/lib/fedi-run -type f").stdout == ""
