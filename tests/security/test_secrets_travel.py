"""How secrets travel to a host: every command a run sends is recorded (in this process, as
the CLI runs), and no secret value is ever in a command's text — each one placed is in the
stdin payload of some command instead. Also the deployer's files of such a run under umask 022
(a subprocess), the common default."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from security_helpers import cli, loose_entries, secrets_root, standin_env, target_secret_modes

from fedi_run.engine.cli.main import cli as fedi_cli
from fedi_run.engine.execute.connection import HostConnection

pytestmark = pytest.mark.lab

PASSWORD = "the initial user's password, travelling"
PLAYBOOK = """
[deployment]
name = "travel"
domain = "travel.example.org"

[services.mastodon]
enable = true

[initial_user]
username = "admin"
display_name = "Admin"
email = "admin@travel.example.org"
password_file = "password"

[run]
dns = "off"
"""


def _secrets_on(lab, hosts) -> dict[str, str]:
    found = {}
    for host in hosts:
        for path, kind in target_secret_modes(lab, host).items():
            if kind.startswith("f") and not path.endswith("/bucket"):
                found[f"{host}:{path}"] = lab.read_file(host, path).decode()
    return found


@pytest.mark.reliability(
    "security",
    "secrets on the command line (compiled scripts of a run)",
    "no placed secret is in any command's text; each is in a stdin payload; "
    "on a second run with --rotate-secrets too",
)
def test_secrets_travel_on_stdin_never_in_a_command(lab_factory, tmp_path, monkeypatch):
    lab = lab_factory(["garage", "mastodon"])
    (tmp_path / "password").write_text(PASSWORD + "\n")
    playbook = tmp_path / "travel.toml"
    playbook.write_text(PLAYBOOK)
    sent: list[tuple[str, str, bytes]] = []
    original = HostConnection.run

    def recording(self, command, input=None, *args, **kwargs):
        sent.append((self.name, command, input or b""))
        return original(self, command, input, *args, **kwargs)

    monkeypatch.setattr(HostConnection, "run", recording)
    values: dict[str, str] = {}
    for extra in ((), ("--rotate-secrets", "all")):
        before = len(sent)
        result = CliRunner().invoke(
            fedi_cli,
            ["run", str(playbook), "-i", str(lab.inventory_path), "--no-apply", "--json", *extra],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.stdout[-3000:]
        placed = _secrets_on(lab, ("garage", "mastodon"))
        assert len(placed) >= 14, placed.keys()
        commands = [command for _, command, _ in sent[before:]]
        payloads = b"".join(payload for _, _, payload in sent[before:])
        assert any("@@fedi-" in command for command in commands), "no compiled script was sent"
        for name, value in placed.items():
            for command in commands:
                assert value not in command, f"{name} in a command: {command[:300]}"
            if name.endswith("/initial-user"):
                assert PASSWORD.encode() in payloads
            assert value.encode() in payloads, f"{name} was not sent on stdin"
        if extra:  # rotated: new values, sent the same way
            key = f"mastodon:{secrets_root('travel')}/mastodon/secret-key-base"
            assert placed[key] != values[key]
        values = placed
    assert PASSWORD not in "".join(command for _, command, _ in sent)


@pytest.mark.reliability(
    "security",
    "deployer files under umask 022",
    "the state directory, logs, lock and the rendered deployment: files "
    "0600 or stricter, directories 0700; the JUnit report 0600; the "
    "teardown leaves no secret file or directory on the hosts",
)
def test_the_deployers_files_are_private_under_umask_022(lab_factory, tmp_path):
    lab = lab_factory(["garage", "mastodon"])
    (tmp_path / "password").write_text(PASSWORD + "\n")
    playbook = tmp_path / "travel.toml"
    playbook.write_text(PLAYBOOK)
    env = standin_env(tmp_path / "nixops4.log")
    for command in ("run", "teardown"):
        result = cli(
            command,
            playbook,
            *(("--yes",) if command == "teardown" else ()),
            "-i",
            lab.inventory_path,
            "-v",
            "--json",
            "--junit",
            tmp_path / "reports" / f"{command}.xml",
            umask=0o022,
            env=env,
            cwd=tmp_path,
        )
        assert result.exit_code == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert loose_entries(tmp_path / ".fedi-run") == []
        assert (tmp_path / ".fedi-run" / "travel" / "flake.nix").is_file()
        report = tmp_path / "reports" / f"{command}.xml"
        assert os.stat(report).st_mode & 0o777 == 0o600
    for host in ("garage", "mastodon"):  # the teardown left nothing: VAPID keys included
        assert lab.run(host, "find /var/lib/fedi-run", check=False).stdout == "", host


@pytest.mark.reliability(
    "security",
    "secrets placed by plugin functions, printed in a later "
    "run that does not place them (an app's S3 key, the VAPID pair, the "
    "initial user's password)",
    "masked in -v and JSON like a generated "
    "secret: the executor learns every declared path's value first",
)
def test_secrets_placed_by_calls_are_masked_in_a_run_that_does_not_place_them(
    lab_factory, tmp_path
):
    lab = lab_factory(["garage", "mastodon"])
    (tmp_path / "password").write_text(PASSWORD + "\n")
    playbook = tmp_path / "travel.toml"
    shown = [
        f"{secrets_root('travel')}/mastodon/{name}"
        for name in ("vapid-private-key", "s3/secret", "initial-user", "secret-key-base")
    ]
    playbook.write_text(PLAYBOOK)
    first = cli("run", playbook, "-i", lab.inventory_path, "--no-apply", "--json", cwd=tmp_path)
    assert first.exit_code == 0, first.stdout[-3000:]
    # the operator's task that prints them, run on its own: the calls do not run this time
    playbook.write_text(
        PLAYBOOK + f'\n[tasks.show]\nhost = "mastodon"\nrun = "cat {" ".join(shown)}"\n'
    )
    show = cli(
        "run",
        playbook,
        "-i",
        lab.inventory_path,
        "--no-apply",
        "--json",
        "-v",
        "--only",
        "tasks.show",
        cwd=tmp_path,
    )
    assert show.exit_code == 0 and show.finished()["tasks.show"]["output"]
    for path in shown:
        value = lab.read_file("mastodon", path).decode()
        value = PASSWORD if path.endswith("initial-user") else value
        assert value not in show.stdout + show.stderr, path
