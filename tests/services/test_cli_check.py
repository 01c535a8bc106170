"""The seed's cli check, on the lab: hosts garage, mastodon, peertube, pixelfed and Pebble.

Deploy with nothing enabled, then with mastodon and pixelfed, then with peertube only — each
time through `fedi-run examples/fediversity.toml -i <lab inventory>` ending with the (recording)
nixops4 stand-in. After each, every host holds exactly the enabled services' secrets and key
files, mode 0400; the apply ran last, once, with the deployment's name; the rendered deployment
enables exactly those services. The last step shows mastodon's and pixelfed's files cleaned up.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from render_helpers import nix_eval, nix_string, with_enabled

from fedi_run.engine.cli.main import cli

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "examples" / "fediversity.toml"
STANDIN = ROOT / "tests" / "standin"
APPS = ("mastodon", "peertube", "pixelfed")
SECRETS = "/var/lib/fedi-run/fediversity/secrets"
"""The example deployment's secrets root on its hosts (each deployment has its own)."""
FILES = {
    "garage": ["admin-token", "rpc-secret"],
    "mastodon": [
        "ar-deterministic-key",
        "ar-key-derivation-salt",
        "ar-primary-key",
        "initial-user",
        "otp-secret",
        "s3/key-id",
        "s3/secret",
        "secret-key-base",
        "vapid-private-key",
        "vapid-public-key",
    ],
    "peertube": ["initial-user", "s3/key-id", "s3/secret", "secrets"],
    "pixelfed": ["app-key", "initial-user", "s3/key-id", "s3/secret"],
}
PASSWORD = "a long and secret admin password"


def secret_files(lab, host: str) -> dict[str, str]:
    """Every file under the host's secrets root: path → mode."""
    listing = lab.run(
        host, f"find {SECRETS} -type f -printf '%P %m\\n' 2>/dev/null; true", check=True
    ).stdout
    return dict(line.rsplit(" ", 1) for line in listing.splitlines())


def expected_files(enabled: set[str]) -> dict[str, dict[str, str]]:
    expected: dict[str, dict[str, str]] = {host: {} for host in ("garage", *APPS)}
    if enabled:
        expected["garage"] = {f"garage/{name}": "400" for name in FILES["garage"]}
        for app in enabled:
            expected["garage"] |= {
                f"garage/keys/{app}/{name}": "400" for name in ("key-id", "secret", "bucket")
            }
    for app in enabled:
        expected[app] = {f"{app}/{name}": "400" for name in FILES[app]}
    return expected


@pytest.fixture
def deployment(lab, tmp_path, monkeypatch):
    """Runs the example against the session's lab, with the nixops4 stand-in on PATH."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "admin-password").write_text(PASSWORD + "\n")
    log = tmp_path / "nixops4.log"
    monkeypatch.setenv("PATH", f"{STANDIN}:{os.environ['PATH']}")
    monkeypatch.setenv("NIXOPS4_STANDIN_LOG", str(log))
    playbook = tmp_path / "fediversity.toml"
    outputs: list[str] = []

    def deploy(enabled: set[str], command: str = "run") -> dict:
        with_enabled(
            EXAMPLE,
            playbook,
            enabled,
            **{'email = "ops@fediversity.net"': 'email = "ops@fedi-test.org"'},
        )
        calls_before = len(log.read_text().splitlines()) if log.exists() else 0
        result = CliRunner().invoke(
            cli,
            [command, str(playbook), "-i", str(lab.inventory_path), "--json", "-v"]
            + (["--yes"] if command == "teardown" else []),
            catch_exceptions=False,
        )
        outputs.extend([result.stdout, result.stderr])
        assert result.exit_code == 0, result.stdout[-4000:] + result.stderr[-4000:]
        events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        calls = [json.loads(line) for line in log.read_text().splitlines()][calls_before:]
        return {"events": events, "calls": calls}

    deploy.playbook = playbook
    deploy.outputs = outputs
    deploy.log = log
    return deploy


def assert_readable_member(call: dict, directory: Path) -> None:
    """The stand-in was asked to apply the deployment's member path, in a directory Nix can
    read: a git repository of its own whose HEAD holds every rendered file, uncommitted none."""
    assert (call["memberPath"], call["problems"]) == ("fediversity", [])
    assert call["git"]["toplevel"] == str(directory) and call["git"]["clean"] is True
    rendered = {f for f in call["files"] if f.endswith(".nix")}
    assert {"flake.nix", "data.nix"} <= rendered <= set(call["git"]["tracked"])
    for host in ("garage", *APPS):  # the lab's base configuration of each host
        assert f"hosts/{host}/base/configuration.nix" in rendered


def check_step(lab, deploy, step: dict, enabled: set[str]) -> None:
    expected = expected_files(enabled)
    for host, files in expected.items():
        assert secret_files(lab, host) == files, host
    # The apply ran once, last, with the deployment's name, in the rendered directory.
    [call] = step["calls"]
    assert call["argv"] == ["apply", "fediversity", "--no-interactive", "--show-trace"]
    directory = deploy.playbook.parent / ".fedi-run" / "fediversity"
    assert call["cwd"] == str(directory)
    assert_readable_member(call, directory)
    finished = {e["id"]: e for e in step["events"] if e["event"] == "task_finished"}
    assert all(e["status"] in ("ok", "changed") for e in finished.values())
    last_other = max(e["time"] for task, e in finished.items() if task != "nixops4.apply")
    assert call["time"] >= last_other
    assert [e["id"] for e in step["events"] if e["event"] == "task_started"][-1] == "nixops4.apply"
    # The rendered deployment enables exactly those services (read by the real Nix evaluator).
    data = nix_eval(f"import {nix_string(directory / 'data.nix')}")
    on = {name for name, service in data["services"].items() if service["enable"]}
    assert on == (enabled | {"garage"} if enabled else set())
    for path in directory.rglob("*.nix"):
        assert PASSWORD not in path.read_text()


def test_cli_check(lab, deployment):
    nothing = deployment(set())
    check_step(lab, deployment, nothing, set())

    both = deployment({"mastodon", "pixelfed"})
    check_step(lab, deployment, both, {"mastodon", "pixelfed"})
    garage_key = lab.read_file("garage", f"{SECRETS}/garage/keys/mastodon/key-id").decode()
    assert re.fullmatch(r"GK[0-9a-f]{24}", garage_key)
    assert lab.read_file("mastodon", f"{SECRETS}/mastodon/s3/key-id").decode() == garage_key
    assert re.fullmatch(
        r"[0-9a-f]{64}", lab.read_file("garage", f"{SECRETS}/garage/keys/mastodon/secret").decode()
    )
    assert re.fullmatch(
        r"base64:[A-Za-z0-9+/]{43}=",
        lab.read_file("pixelfed", f"{SECRETS}/pixelfed/app-key").decode(),
    )
    user = json.loads(lab.read_file("mastodon", f"{SECRETS}/mastodon/initial-user"))
    assert user == {
        "username": "admin",
        "displayName": "Admin",
        "email": "admin@fediversity.net",
        "password": PASSWORD,
    }
    first_values = {
        path: lab.read_file("mastodon", f"{SECRETS}/{path}")
        for path in expected_files({"mastodon"})["mastodon"]
    }

    again = deployment({"mastodon", "pixelfed"})
    check_step(lab, deployment, again, {"mastodon", "pixelfed"})
    changed = [
        e["id"]
        for e in again["events"]
        if e["event"] == "task_finished" and e["status"] == "changed"
    ]
    assert changed == ["nixops4.apply"]  # a re-run changes nothing but running the apply
    assert {
        path: lab.read_file("mastodon", f"{SECRETS}/{path}") for path in first_values
    } == first_values

    peertube = deployment({"peertube"})
    check_step(lab, deployment, peertube, {"peertube"})
    changed = {
        e["id"]
        for e in peertube["events"]
        if e["event"] == "task_finished" and e["status"] == "changed"
    }
    assert {
        "mastodon.absent",
        "pixelfed.absent",
        "garage.drop-key.mastodon",
        "garage.drop-key.pixelfed",
        "peertube.secrets",
        "garage.key.peertube",
    } <= changed
    assert not changed & {"garage.secrets", "acme.account"}  # nothing else changed

    # No secret in any output, the state file or the rendered deployment.
    secrets = [
        lab.read_file(host, f"{SECRETS}/{path}").decode()
        for host, files in expected_files({"peertube"}).items()
        for path in files
    ]
    secrets += [v.decode() for v in first_values.values()]
    state = (deployment.playbook.parent / ".fedi-run" / "state.db").read_bytes()
    rendered = "".join(
        p.read_text()
        for p in (deployment.playbook.parent / ".fedi-run" / "fediversity").rglob("*.nix")
    )
    for secret in secrets:
        for value in [json.loads(secret)["password"]] if secret.startswith("{") else [secret]:
            if len(str(value)) < 8:
                continue
            assert all(str(value) not in out for out in deployment.outputs)
            assert str(value).encode() not in state
            assert str(value) not in rendered

    down = deployment({"peertube"}, command="teardown")
    [call] = down["calls"]
    assert call["argv"] == ["apply", "fediversity", "--no-interactive", "--show-trace"]
    assert_readable_member(call, deployment.playbook.parent / ".fedi-run" / "fediversity")
    started = [e["id"] for e in down["events"] if e["event"] == "task_started"]
    assert started[0] == "nixops4.apply"  # teardown applies first, with everything switched off
    for host in ("garage", *APPS):
        assert secret_files(lab, host) == {}


def test_secrets_differ_between_deployments(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{STANDIN}:{os.environ['PATH']}")
    monkeypatch.setenv("NIXOPS4_STANDIN_LOG", str(tmp_path / "log"))
    values = []
    for name in ("first", "second"):
        directory = tmp_path / name
        directory.mkdir()
        (directory / "secrets").mkdir()
        (directory / "secrets" / "admin-password").write_text(PASSWORD)
        playbook = with_enabled(
            EXAMPLE,
            directory / "p.toml",
            {"peertube"},
            **{'name = "fediversity"': f'name = "{name}"'},
        )
        result = CliRunner().invoke(
            cli,
            [
                "run",
                str(playbook),
                "-i",
                str(lab.inventory_path),
                "--json",
                "--only",
                "peertube.secrets",
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.stdout
        where = f"/var/lib/fedi-run/{name}/secrets/peertube"  # each deployment's own
        values.append(lab.read_file("peertube", f"{where}/secrets"))
    assert values[0] != values[1]
    for name in ("first", "second"):
        lab.run("peertube", f"rm -rf /var/lib/fedi-run/{name}", check=True)
