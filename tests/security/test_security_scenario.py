"""The seed's full cli-check scenario, run as a user runs it — `fedi-run` processes of their own,
under umask 000, with `-v`, `--json` and `--junit` — and checked for what it leaves behind:

* on the deployer, the state directory and the rendered deployment hold only private entries
  (files 0600 or stricter, directories 0700), after every step and at every moment a sampler
  looked during the runs;
* on the targets, every secret file is 0400 and every directory under the secrets root 0700;
* no generated secret — nor the initial user's password — is on any process's command line
  at any moment the sampler looked (the lab hosts' processes are in this machine's process
  table);
* the leak scan: after the teardown, every secret placed during the scenario is searched for,
  raw and encoded, in every file under the state directory and the rendered deployment, every
  output (stdout, stderr, JSON, JUnit, history), the nixops4 stand-in's record, and the lab
  hosts' files — their logs, shell histories, /tmp and sshd logs — with zero hits; and the
  scan is shown able to fail: a planted value is found in each kind of place.

The steps are those of tests/services/test_cli_check.py: nothing, mastodon+pixelfed, the same
again, peertube only, teardown.
"""

from __future__ import annotations

import json
import os
import secrets as random
from pathlib import Path

import pytest
from security_helpers import (
    LeakScan,
    Sampler,
    cli,
    loose_entries,
    standin_env,
    target_secret_modes,
    with_enabled,
)

pytestmark = pytest.mark.lab

HOSTS = ("garage", "mastodon", "peertube", "pixelfed")
PASSWORD = "a long and secret admin password for the leak scan"
STEPS = (
    ("nothing", "run", set()),
    ("mastodon+pixelfed", "run", {"mastodon", "pixelfed"}),
    ("again", "run", {"mastodon", "pixelfed"}),
    ("peertube", "run", {"peertube"}),
    ("teardown", "teardown", {"peertube"}),
)
NOT_SECRET = ("bucket",)
"""Files under the secrets root that hold no secret (garage's bucket file: the app's name)."""


def _host_secrets(lab) -> dict[str, str]:
    """Every secret value on the lab hosts now: ``host:path`` → value (the initial user's
    file gives its password)."""
    found = {}
    for host in HOSTS:
        for path, kind in target_secret_modes(lab, host).items():
            if not kind.startswith("f") or path.rsplit("/", 1)[-1] in NOT_SECRET:
                continue
            value = lab.read_file(host, path).decode()
            if path.endswith("/initial-user"):
                value = json.loads(value)["password"]
            found[f"{host}:{path}"] = value
    return found


@pytest.fixture(scope="module")
def scenario(lab, tmp_path_factory):
    """Runs the scenario once; returns what the tests check."""
    base = tmp_path_factory.mktemp("security-scenario")
    (base / "secrets").mkdir()
    (base / "secrets" / "admin-password").write_text(PASSWORD + "\n")
    log = base / "nixops4.log"
    env = standin_env(log)
    playbook = base / "fediversity.toml"
    state_dir = base / ".fedi-run"
    rendered = state_dir / "fediversity"
    for host in HOSTS:  # a clean start, whatever earlier tests left
        lab.run(host, "rm -rf /var/lib/fedi-run", check=True)

    outputs: dict[str, str] = {}
    loose_after: dict[str, list[str]] = {}
    target_modes: dict[str, dict[str, str]] = {}
    placed: dict[str, str] = {}
    namespaces = frozenset(
        os.readlink(f"/proc/{lab.hosts[host].process.pid}/ns/mnt") for host in HOSTS
    )
    with Sampler(watch=state_dir, namespaces=namespaces) as sampler:
        for number, (step, command, enabled) in enumerate(STEPS):
            with_enabled(
                playbook,
                enabled,
                **{'email = "ops@fediversity.net"': 'email = "ops@fedi-test.org"'},
            )
            junit = base / f"junit-{number}-{step}.xml"
            display = ("--json",) if step != "again" else ()  # one step shows the live display
            result = cli(
                command,
                playbook,
                *(("--yes",) if command == "teardown" else ()),
                "-i",
                lab.inventory_path,
                "-v",
                *display,
                "--junit",
                junit,
                umask=0o000,
                env=env,
                cwd=base,
            )
            outputs[f"{step}: stdout"] = result.stdout
            outputs[f"{step}: stderr"] = result.stderr
            outputs[f"{step}: junit"] = junit.read_text()
            assert result.exit_code == 0, (step, result.stdout[-3000:], result.stderr[-3000:])
            loose_after[step] = loose_entries(state_dir)
            target_modes[step] = {
                f"{host}:{path}": mode
                for host in HOSTS
                for path, mode in target_secret_modes(lab, host).items()
            }
            if command == "run":
                placed.update(_host_secrets(lab))
    for extra in (
        ("history", playbook, "--json"),
        ("show-run", playbook, "2"),
        ("show-run", playbook, "5"),
    ):
        shown = cli(*extra, env=env, cwd=base)
        assert shown.exit_code == 0, shown.stderr
        outputs[" ".join(map(str, extra[:1] + extra[2:]))] = shown.stdout + shown.stderr

    secrets = {**placed, "initial user's password": PASSWORD}
    # the ACME account key is the deployer's own secret: only in its file, nowhere else
    [key] = (state_dir / "acme").glob("*-account.pem")
    account_key = {
        f"ACME account key, line {n}": line
        for n, line in enumerate(key.read_text().splitlines())
        if not line.startswith("-----")
    }
    scan = _scan({**secrets, **account_key}, lab, base, state_dir, rendered, log, outputs)
    own = LeakScan(secrets)  # the key's own directory (left out above): every other secret
    own.tree("state directory", state_dir / "acme")
    scan.hits += own.hits
    scan.files["state directory"] += own.files["state directory"]
    canary = _planted_scan(lab, base, state_dir, rendered, log, outputs)
    return {
        "sampler": sampler,
        "loose_after": loose_after,
        "target_modes": target_modes,
        "secrets": secrets,
        "scan": scan,
        "canary": canary,
        "rendered": rendered,
        "state_dir": state_dir,
        "log": log,
    }


def _scan(secrets, lab, base, state_dir, rendered, log, outputs) -> LeakScan:
    scan = LeakScan(secrets)
    scan.tree("state directory", state_dir, skip=(rendered, state_dir / "acme"))
    scan.tree("rendered deployment", rendered)
    for label, text in outputs.items():
        scan.text("output", label, text)
    scan.file("nixops4 stand-in record", log)
    for host in HOSTS:
        root = lab.hosts[host].root
        # the host's whole tree: sshd.log, its /var/log, /root (shell histories), /tmp,
        # /var/tmp, /srv, /var/lib and its /etc and /usr/local overlays
        scan.tree("lab host", root)
    scan.tree("lab (Pebble and the rest)", lab.dir, skip=tuple(lab.hosts[h].root for h in HOSTS))
    for leftover in Path("/dev/shm").glob("fedi-run.*"):  # the scripts' payload directories
        scan.tree("/dev/shm payload leftovers", leftover)
    return scan


def _planted_scan(lab, base, state_dir, rendered, log, outputs) -> dict[str, list[str]]:
    """Plant a known value in one place of each kind, scan again for it alone, remove it."""
    canary = "planted-" + random.token_hex(16)
    planted_state = state_dir / "logs" / "planted.log"
    planted_state.write_text(f"{canary}\n")
    planted_rendered = rendered / "planted.txt"
    planted_rendered.write_text(f"{canary}\n")
    before = log.read_text()
    log.write_text(before + canary + "\n")
    lab.write_file("mastodon", "/var/log/planted.log", f"{canary}\n")
    lab.run("pixelfed", f"echo {canary} >> /root/.bash_history", check=True)
    try:
        scan = _scan(
            {"canary": canary},
            lab,
            base,
            state_dir,
            rendered,
            log,
            {**outputs, "planted output": f"... {canary} ..."},
        )
    finally:
        planted_state.unlink()
        planted_rendered.unlink()
        log.write_text(before)
        lab.run("mastodon", "rm -f /var/log/planted.log", check=True)
        lab.run("pixelfed", "rm -f /root/.bash_history", check=True)
    return {"hits": scan.hits, "files": scan.files}


@pytest.mark.reliability(
    "security",
    "deployer files under umask 000 (the cli-check scenario)",
    "the state directory, its database, lock, logs and ACME key, and the "
    "rendered deployment: files 0600 or stricter, directories 0700, after "
    "every step and whenever sampled during the runs",
)
def test_the_deployers_files_are_private_under_umask_000(scenario):
    for step, loose in scenario["loose_after"].items():
        assert loose == [], step
    assert scenario["sampler"].loose == set()
    assert scenario["sampler"].sweeps > 20
    state = scenario["state_dir"]
    assert (state / "state.db").is_file() and (state / "state.db.lock").is_file()
    assert list((state / "acme").glob("*-account.pem")), "the ACME account key was written"
    assert list((state / "logs").rglob("*.log")), "the runs' output logs were written"
    assert (scenario["rendered"] / "flake.nix").is_file()


@pytest.mark.reliability(
    "security",
    "secret files on the targets (the cli-check scenario)",
    "every file under /var/lib/fedi-run/<deployment>/secrets is 0400, every directory 0700, "
    "after every step",
)
def test_secret_files_on_the_targets_are_0400_in_0700(scenario):
    seen_files = 0
    for step, modes in scenario["target_modes"].items():
        for path, mode in modes.items():
            kind, octal = mode.split()
            assert octal == ("400" if kind == "f" else "700"), (step, path, mode)
            seen_files += kind == "f"
    assert seen_files > 40
    assert not any(
        path.endswith("/secrets/mastodon/secret-key-base")
        for path in scenario["target_modes"]["teardown"]
    )


@pytest.mark.reliability(
    "security",
    "secrets on command lines (the cli-check scenario)",
    "no secret on any process's command line on the deployer or the hosts, "
    "sampled continuously; the sampler saw the runs' scripts",
)
def test_no_secret_is_ever_on_a_command_line(scenario):
    sampler = scenario["sampler"]
    scripts = [line for line in sampler.in_namespaces if b"@@fedi-" in line]
    assert scripts, "the sampler never saw a script on the lab hosts: it proves nothing"
    for name, value in scenario["secrets"].items():
        for line in sampler.cmdlines:
            assert value.encode() not in line, f"{name} on a command line: {line[:200]!r}"


@pytest.mark.reliability(
    "security",
    "leak scan after the cli-check scenario (-v, --json, --junit)",
    "zero hits of every generated secret and the password, raw "
    "or encoded, in the state directory, the rendered deployment, every "
    "output, the stand-in's record and the lab hosts' files",
)
def test_no_secret_leaks_anywhere(scenario):
    scan = scenario["scan"]
    assert scan.hits == []
    assert len(scenario["secrets"]) > 25 and scan.needles > 60
    for category in (
        "state directory",
        "rendered deployment",
        "output",
        "nixops4 stand-in record",
        "lab host",
    ):
        assert scan.files.get(category, 0) > 0, category
    assert scan.files["output"] >= 3 * len(STEPS)


@pytest.mark.reliability(
    "security",
    "the leak scan can fail",
    "a value planted in the state "
    "directory, the rendered deployment, an output, the stand-in's record, a "
    "host's /var/log and a host's shell history is found in each",
)
def test_the_leak_scan_finds_a_planted_value(scenario):
    hits = scenario["canary"]["hits"]
    for place in (
        "state directory: ",
        "rendered deployment: ",
        "output: planted output",
        "nixops4 stand-in record: ",
        "/private/var/log/planted.log",
        "/private/root/.bash_history",
    ):
        assert any(place in hit for hit in hits), (place, hits)
