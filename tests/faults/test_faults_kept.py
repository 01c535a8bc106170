"""What a deployment keeps, on the lab: a secret it placed is never silently replaced (a
deleted and an emptied one stop their host; --restore-secret and --rotate-secrets are the ways
on), a file or secret is never written short (a full /dev/shm, a full target file system), the
domain once applied is not changed by accident, one lock per deployment whatever its state
file, a teardown is confirmed and says what it did, and every secret of the deployment is
masked in every run (the initial user's password JSON-escaped in a partial run; a diff over a
switched-off service's secret). Each test checks the bytes on the hosts afterwards."""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from fault_helpers import HEADER, Cli, fedi, leftovers, recorded

from fedi_run.engine.execute.secret_book import secret_names
from fedi_run.engine.report.state import StateStore, default_state_path

pytestmark = pytest.mark.lab

STANDIN = Path(__file__).resolve().parent.parent / "standin"
OTHERS = """
[tasks.elsewhere]
host = "f2"
file = { path = "/srv/elsewhere.conf", content = "f2\\n" }

[tasks.also]
host = "f4"
run = "echo also >> /srv/count"
"""
VAULT = HEADER + '\n[services.vault]\nenable = true\nhost = "f3"\n' + OTHERS
WATCHED = "/srv /var/lib/fedi-run"


def snapshot(lab, hosts=("f1", "f2", "f3", "f4")) -> dict[str, dict[str, str]]:
    """host → path → sha256 of every file under /srv and /var/lib/fedi-run (the bytes)."""
    found = {}
    for host in hosts:
        out = lab.run(
            host, f"find {WATCHED} -type f -exec sha256sum {{}} + 2>/dev/null; true"
        ).stdout
        found[host] = {line[66:]: line[:64] for line in out.splitlines() if len(line) > 66}
    return found


def placed(path: Path) -> dict[str, dict[str, bool]]:
    """What the state says the deployment 'faults' placed (host → path → generated)."""
    with StateStore.open(default_state_path(path)) as store:
        return store.placed_secrets("faults")


def vault_paths(path: Path) -> tuple[str, str, dict[str, str]]:
    """The vault's token and key-id paths on f3 (from the state), and their names."""
    paths = placed(path)["f3"]
    token = next(p for p in paths if p.endswith("/token"))
    key_id = next(p for p in paths if p.endswith("/key-id"))
    return token, key_id, secret_names(paths)


EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.reliability(
    "faults",
    "a deleted and an emptied secret on a host (the vault's token and key id)",
    "exit 1: none of that host's tasks runs, the failure names both secrets, the host, "
    "--restore-secret NAME=FILE and --rotate-secrets NAME; nothing regenerated, every other "
    "byte on every host unchanged, the other hosts' tasks done; then --restore-secret puts the "
    "backup's exact bytes back and --rotate-secrets NAME makes a new one, with a warning",
)
def test_a_deleted_and_an_emptied_secret_stop_their_host(four, playbook, tmp_path):
    path = playbook(VAULT)
    base = ("run", path, "-i", four.inventory_path, "--no-apply", "--json", "--plugin")
    base += ("vault_service",)
    first = fedi(*base)
    assert first.exit_code == 0, first.stdout + first.stderr
    token, key_id, names = vault_paths(path)
    old_token = four.read_file("f3", token)
    old_key_id = four.read_file("f3", key_id)
    four.run("f3", f"rm {token} && : > {key_id}", check=True)
    before = snapshot(four)

    second = fedi(*base)
    assert second.exit_code == 1, second.stdout + second.stderr
    failed = second.finished()["vault.secrets"]
    assert failed["status"] == "failed" and failed["host"] == "f3"
    message = failed["message"]
    assert f"the secret {names[key_id]} ({key_id}) is empty; " in message
    assert f"the secret {names[token]} ({token}) is missing on f3" in message
    assert f"--restore-secret {names[key_id]}=FILE --restore-secret {names[token]}=FILE" in message
    assert f"--rotate-secrets {names[key_id]},{names[token]}" in message
    assert second.finished()["vault.show"]["status"] == "skipped"
    assert second.finished()["tasks.elsewhere"]["status"] == "ok"
    assert second.finished()["tasks.also"]["status"] == "changed"
    after = snapshot(four)
    assert after["f3"] == before["f3"] and after["f1"] == before["f1"]
    assert after["f3"][key_id] == EMPTY and token not in after["f3"]
    assert after["f2"] == before["f2"]
    assert recorded(path)["vault.secrets"] == "failed"

    backup = tmp_path / "token.backup"
    backup.write_bytes(old_token)
    third = fedi(
        *base,
        "--restore-secret",
        f"{names[token]}={backup}",
        "--rotate-secrets",
        names[key_id],
    )
    assert third.exit_code == 0, third.stdout + third.stderr
    assert four.read_file("f3", token) == old_token
    new_key_id = four.read_file("f3", key_id).decode()
    assert new_key_id.startswith("GK") and len(new_key_id) == 26 and new_key_id != old_key_id
    assert f"warning: --rotate-secrets: the secret {names[key_id]}" in third.stderr
    assert "--restore-secret" in third.stderr
    assert old_token.decode() not in third.stdout + third.stderr
    assert "********" in third.finished()["vault.show"]["output"]
    assert leftovers(four, "f3", "/var/lib/fedi-run") == []


BIG = "new content " * 4000  # 48 KB


@pytest.mark.parametrize("room", ["none", "less than the content"])
@pytest.mark.reliability(
    "faults",
    "a full /dev/shm on a host (room: {room})",
    "exit 1; the file task (and, without room, the secret task) fails naming the host, the "
    "path and 'No space left on device'; the old file byte for byte, no secret written short "
    "or empty, no temporary file; other hosts finish; once there is room, --resume completes",
)
def test_a_full_dev_shm(four, playbook, room):
    four.run("f3", "mkdir -p /srv/app && printf 'old\\n' > /srv/app/config", check=True)
    if room == "none":
        setup = (
            "mount -t tmpfs -o size=64k tmpfs /dev/shm "
            "&& { dd if=/dev/zero of=/dev/shm/fill bs=4k 2>/dev/null; true; }"
        )
    else:  # room for the script's private directory, not for the 48 KB the file is sent
        setup = "mount -t tmpfs -o size=32k tmpfs /dev/shm"
    four.run("f3", setup, check=True)
    extra = '\n[services.vault]\nenable = true\nhost = "f3"\n' if room == "none" else ""
    path = playbook(
        HEADER
        + f"""
[tasks.config]
host = "f3"
file = {{ path = "/srv/app/config", content = "{BIG}\\n" }}
"""
        + extra
        + OTHERS
    )
    base = ("run", path, "-i", four.inventory_path, "--no-apply", "--json")
    base += ("--plugin", "vault_service")
    result = fedi(*base)
    assert result.exit_code == 1, result.stdout + result.stderr
    finished = result.finished()
    config = finished["tasks.config"]
    assert config["status"] == "failed", config
    assert "/srv/app/config" in config["message"] and "f3" in config["message"]
    assert "No space left on device" in config["message"], config["message"]
    assert four.read_file("f3", "/srv/app/config") == b"old\n"
    if room == "none":
        secrets = finished["vault.secrets"]
        assert secrets["status"] == "failed"
        assert " on f3" in secrets["message"]  # (nothing of the task could start)
        assert "No space left on device" in secrets["message"]
    secrets_on_f3 = four.run(
        "f3", "find /var/lib/fedi-run -path '*secrets*' -type f -exec wc -c {} + ; true"
    ).stdout
    for line in secrets_on_f3.splitlines():
        size, _, name = line.strip().partition(" ")
        assert name == "total" or int(size) in (26, 64), line  # whole, or not there
    assert finished["tasks.elsewhere"]["status"] == "changed"
    assert leftovers(four, "f3", "/srv", "/var/lib/fedi-run") == []

    four.run("f3", "umount /dev/shm", check=True)
    resumed = fedi(*base, "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert four.read_file("f3", "/srv/app/config") == (BIG + "\n").encode()


@pytest.mark.reliability(
    "faults",
    "a full target file system (/var/lib) under a rotation and a changed file",
    "exit 1; 'cannot write the secret <path> on f3: … No space left on device'; the old "
    "secret and the old file byte for byte, no temporary file; once there is room, the same "
    "command rotates it",
)
def test_a_full_target_keeps_the_old_secret_and_file(four, playbook):
    four.run("f3", "mount -t tmpfs -o size=256k tmpfs /var/lib", check=True)
    config = (
        '\n[tasks.config]\nhost = "f3"\nfile = {{ path = "/var/lib/app.conf", content = "{}" }}\n'
    )
    path = playbook(VAULT + config.format("first\\n"))
    base = ("run", path, "-i", four.inventory_path, "--no-apply", "--json")
    base += ("--plugin", "vault_service")
    assert fedi(*base).exit_code == 0
    token, _, names = vault_paths(path)
    old = four.read_file("f3", token)
    four.run("f3", "dd if=/dev/zero of=/var/lib/fill bs=4k 2>/dev/null; true")
    path = playbook(VAULT + config.format(BIG[:20000] + "\\n"))
    before = snapshot(four, ("f3",))
    rotate = ("--rotate-secrets", names[token])
    result = fedi(*base, *rotate)
    assert result.exit_code == 1, result.stdout + result.stderr
    secrets = result.finished()["vault.secrets"]
    assert secrets["status"] == "failed"
    assert f"cannot write the secret {token} on f3" in secrets["message"]
    assert secrets["message"].endswith("No space left on device"), secrets["message"]
    assert result.finished()["tasks.config"]["status"] == "failed"
    assert four.read_file("f3", token) == old
    assert four.read_file("f3", "/var/lib/app.conf") == b"first\n"
    after = snapshot(four, ("f3",))
    assert {p: h for p, h in after["f3"].items() if p != "/var/lib/fill"} == {
        p: h for p, h in before["f3"].items() if p != "/var/lib/fill"
    }
    assert leftovers(four, "f3", "/var/lib") == []

    four.run("f3", "rm /var/lib/fill", check=True)
    again = fedi(*base, *rotate)
    assert again.exit_code == 0, again.stdout + again.stderr
    assert four.read_file("f3", token) != old and len(four.read_file("f3", token)) == 64


@pytest.fixture
def nixops4(monkeypatch, tmp_path):
    """The recording nixops4 stand-in on PATH; the path of its log."""
    log = tmp_path / "nixops4.log"
    monkeypatch.setenv("PATH", f"{STANDIN}:{os.environ['PATH']}")
    monkeypatch.setenv("NIXOPS4_STANDIN_LOG", str(log))
    return log


@pytest.mark.reliability(
    "faults",
    "the [deployment] domain changed after an apply",
    "exit 2 before any host: the message names both domains and --change-domain, no task "
    "starts, every byte on the hosts unchanged; with --change-domain the run goes on and its "
    "apply records the new domain",
)
def test_a_domain_change_after_an_apply_is_refused(four, playbook, nixops4):
    task = '[tasks.site]\nhost = "f1"\nfile = {{ path = "/srv/site.conf", content = "{}" }}\n'
    path = playbook(HEADER + task.format("at faults.example.org\\n"))
    first = fedi("run", path, "-i", four.inventory_path, "--json")
    assert first.exit_code == 0, first.stdout + first.stderr
    assert first.finished()["nixops4.apply"]["status"] == "changed"
    moved = HEADER.replace("faults.example.org", "moved.example.org")
    path = playbook(moved + task.format("at moved.example.org\\n"))
    before = snapshot(four)
    refused = fedi("run", path, "-i", four.inventory_path, "--json")
    assert refused.exit_code == 2
    assert "faults.example.org" in refused.stderr and "moved.example.org" in refused.stderr
    assert "--change-domain" in refused.stderr
    assert refused.events() == [] and snapshot(four) == before
    again = fedi("run", path, "-i", four.inventory_path, "--no-apply", "--json")
    assert again.exit_code == 2 and snapshot(four) == before  # --no-apply: the same guard
    changed = fedi("run", path, "-i", four.inventory_path, "--json", "--change-domain")
    assert changed.exit_code == 0, changed.stdout + changed.stderr
    assert four.read_file("f1", "/srv/site.conf") == b"at moved.example.org\n"
    with StateStore.open(default_state_path(path)) as store:
        assert store.applied_domain("faults")[0] == "moved.example.org"
    assert fedi("run", path, "-i", four.inventory_path, "--json").exit_code == 0


@pytest.mark.reliability(
    "faults",
    "the same deployment run twice at once with two --state files",
    "the second exits 3 naming the deployment, the first's pid and its command line; the "
    "first finishes (exit 0), its task done once",
)
def test_one_deployment_with_two_state_files_runs_once_at_a_time(four, playbook, tmp_path):
    path = playbook(HEADER + '[tasks.hold]\nhost = "f1"\nrun = "sleep 3; echo held >> /srv/n"\n')
    common = ("run", path, "-i", four.inventory_path, "--no-apply", "--json")
    first = Cli(*common, "--state", tmp_path / "one" / "state.db")
    try:
        first.wait_for("task_started", "tasks.hold")
        second = fedi(*common, "--state", tmp_path / "two" / "state.db")
        assert second.exit_code == 3, second.stdout + second.stderr
        assert "another run of deployment 'faults' is in progress" in second.stderr
        assert f"pid {first.process.pid}" in second.stderr
        assert f"command line: fedi-run run {path}" in second.stderr
    finally:
        done = first.finish()
    assert done.exit_code == 0, done.stdout + done.stderr
    assert four.run("f1", "cat /srv/n").stdout == "held\n"


def _on_a_terminal(args: list[str], answer: str, timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with a terminal as its stdin and stderr, typing ``answer`` at its prompt;
    its exit status and what the terminal showed."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "fedi_run.engine.cli.main", *args],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=secondary,
        close_fds=True,
    )
    os.close(secondary)
    shown, typed = b"", False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.2)
        if ready:
            try:
                data = os.read(primary, 65536)
            except OSError:
                break
            if not data:
                break
            shown += data
            if not typed and b"name to confirm" in shown:
                os.write(primary, answer.encode() + b"\n")
                typed = True
        elif process.poll() is not None:
            break
    process.communicate(timeout=timeout)
    os.close(primary)
    return process.returncode, shown.decode("utf-8", "replace")


@pytest.mark.reliability(
    "bad input",
    "a teardown: without a terminal nor --yes; on a terminal, a wrong name, then the name",
    "exit 2 saying to pass --yes, and exit 2 for the wrong name, nothing changed (bytes on "
    "every host); the name typed tears it down: the operator's original put back byte for byte "
    "('restored'), a file fedi-run created 'removed (there was no original …)', a task without "
    "an undo 'left in place' in the recap",
)
def test_a_teardown_is_confirmed_by_the_name_typed(four, playbook):
    four.run("f1", 'mkdir -p /srv && printf "the operator\'s\\n" > /srv/mine.conf', check=True)
    path = playbook(
        HEADER
        + """
[tasks.mine]
host = "f1"
file = { path = "/srv/mine.conf", content = "ours\\n" }

[tasks.fresh]
host = "f2"
file = { path = "/srv/fresh.conf", content = "new\\n" }

[tasks.hello]
host = "f3"
run = "echo hello >> /srv/hello"
"""
    )
    inventory = ("-i", str(four.inventory_path))
    assert fedi("run", path, *inventory, "--no-apply", "--json").exit_code == 0
    before = snapshot(four)
    down = ["teardown", str(path), *inventory, "--no-apply"]
    refused = fedi(*down)
    assert refused.exit_code == 2 and "pass --yes" in refused.stderr
    assert snapshot(four) == before
    status, shown = _on_a_terminal(down, "not-the-name")
    assert status == 2, shown
    assert "Type the deployment's name to confirm" in shown and "not confirmed" in shown
    assert snapshot(four) == before
    status, shown = _on_a_terminal(down, "faults")
    assert status == 0, shown
    assert four.read_file("f1", "/srv/mine.conf") == b"the operator's\n"
    assert four.run("f2", "test -e /srv/fresh.conf").exit_status != 0
    assert four.read_file("f3", "/srv/hello") == b"hello\n"  # left in place, not run again
    assert "left in place (1, no undo): tasks.hello @f3" in shown
    again = fedi("run", path, *inventory, "--no-apply", "--json")
    assert again.exit_code == 0
    listed = fedi(*down, "--yes", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert listed.finished()["tasks.mine"]["changes"] == ["restored /srv/mine.conf"]
    assert listed.finished()["tasks.fresh"]["changes"] == [
        "removed /srv/fresh.conf (there was no original to put back)"
    ]
    assert listed.finished()["tasks.hello"]["message"] == "left in place: this task has no undo"


PASSWORD = 'an admin "pass\\word" for the leak, 42/+&?='


@pytest.mark.reliability(
    "security",
    "the initial user's password printed JSON-escaped (and base64, URL-encoded) by an "
    "operator's task, in a partial run (--only) that does not place it",
    "******** in -v, JSON, JUnit and the output logs; no form of the password in any of them",
)
def test_the_password_printed_json_escaped_in_a_partial_run_is_masked(four, playbook, tmp_path):
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    path = playbook(
        HEADER
        + f"""
[initial_user]
username = "admin"
display_name = "Admin"
email = "admin@faults.example.org"
password_file = "{password}"

[services.keeper]
enable = true
host = "f1"
initial_user = true

[tasks.leak]
host = "f1"
run = '''
f=$(find /var/lib/fedi-run -name initial-user | head -n 1)
p=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["password"])' "$f")
python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$p"
printf %s "$p" | base64 -w0; echo
python3 -c 'import sys,urllib.parse as u; print(u.quote(sys.argv[1]))' "$p"
exit 3
'''
"""
    )
    base = ("run", path, "-i", four.inventory_path, "--no-apply", "--plugin", "keeper_service")
    assert fedi(*base, "--json", "--only", "keeper.*").exit_code == 0  # places the file
    junit = tmp_path / "report.xml"
    verbose = fedi(*base, "-v", "--only", "tasks.leak")
    as_json = fedi(*base, "--json", "--junit", junit, "--only", "tasks.leak")
    assert verbose.exit_code == as_json.exit_code == 1
    assert as_json.finished()["tasks.leak"]["output"].count("********") == 3
    logs = [p.read_text() for p in (path.parent / ".fedi-run" / "logs").rglob("*.log")]
    forms = [
        PASSWORD,
        json.dumps(PASSWORD)[1:-1],
        base64.b64encode(PASSWORD.encode()).decode()[:-4],
        urllib.parse.quote(PASSWORD),
    ]
    texts = [verbose.stdout, verbose.stderr, as_json.stdout, as_json.stderr, junit.read_text()]
    for text in texts + logs:
        for form in forms:
            assert form not in text, form


@pytest.mark.reliability(
    "security",
    "--check --diff over the secret of a service switched off since",
    "the diff shows ******** for the old value, in the display and in JSON; the secret on the "
    "host byte for byte the same",
)
def test_a_diff_over_a_switched_off_secret_is_masked(four, playbook):
    path = playbook(VAULT)
    base = ("run", path, "-i", four.inventory_path, "--no-apply", "--plugin", "vault_service")
    assert fedi(*base, "--json").exit_code == 0
    token, _, _ = vault_paths(path)
    value = four.read_file("f3", token)
    off = VAULT.replace("enable = true", "enable = false")
    path = playbook(
        off + f'\n[tasks.over]\nhost = "f3"\nfile = {{ path = "{token}", content = "x\\n" }}\n'
    )
    shown = fedi(*base, "--check", "--diff")
    as_json = fedi(*base, "--check", "--diff", "--json")
    assert shown.exit_code == as_json.exit_code == 0, shown.stderr
    assert "-********" in shown.stderr and "-********" in as_json.finished()["tasks.over"]["diff"]
    for text in (shown.stdout, shown.stderr, as_json.stdout):
        assert value.decode() not in text
    assert four.read_file("f3", token) == value
