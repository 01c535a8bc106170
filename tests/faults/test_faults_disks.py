"""A target's file system refuses a write: /var/lib a tiny, full tmpfs; a read-only file
system; permission denied (a non-root SSH user). The failing task names host, path and reason,
no file is left half-written (the old content or the new, no temporary file), the other hosts
finish, and --resume completes once the cause is fixed."""

from __future__ import annotations

import tomllib

import pytest
from fault_helpers import HEADER, fedi, leftovers, recorded

pytestmark = pytest.mark.lab

NEW = "new content " * 2000 + "\n"  # 24 KB: more than a full file system has room for


def _other_hosts() -> str:
    return """
[tasks.elsewhere]
host = "f2"
file = { path = "/var/lib/app.conf", content = "f2\\n" }

[tasks.also]
host = "f4"
run = "echo also >> /srv/count"
"""


@pytest.mark.reliability(
    "faults",
    "a host whose /var/lib is a tiny, full tmpfs",
    "exit 1; the file and secret tasks fail 'No space left on device' naming path and host; the "
    "old file intact, no temporary file left; other hosts finish; after space is freed, "
    "--resume completes, nothing done twice",
)
def test_full_var_lib(four, playbook):
    four.run(
        "f3",
        "mount -t tmpfs -o size=128k tmpfs /var/lib && mkdir -p /var/lib/app "
        "&& printf 'old\\n' > /var/lib/app/config "
        "&& { dd if=/dev/zero of=/var/lib/fill bs=4k 2>/dev/null; true; }",
        check=True,
    )
    path = playbook(
        HEADER
        + f"""
[tasks.config]
host = "f3"
file = {{ path = "/var/lib/app/config", content = "{NEW[:-1]}\\n", mode = "0640" }}

[tasks.fresh]
host = "f3"
file = {{ path = "/var/lib/app/fresh", content = "{NEW[:-1]}\\n" }}
requires = ["tasks.config"]
"""
        + _other_hosts()
    )
    result = fedi("run", path, "-i", four.inventory_path, "--no-apply", "--json")
    assert result.exit_code == 1, result.stdout + result.stderr
    finished = result.finished()
    config = finished["tasks.config"]
    assert config["status"] == "failed" and config["host"] == "f3"
    assert "/var/lib/app/config" in config["message"] and " on f3: " in config["message"]
    assert config["message"].endswith("No space left on device"), config["message"]
    assert finished["tasks.fresh"]["status"] == "skipped"
    assert finished["tasks.elsewhere"]["status"] == "changed"
    assert finished["tasks.also"]["status"] == "changed"
    assert four.read_file("f3", "/var/lib/app/config") == b"old\n"
    assert leftovers(four, "f3", "/var/lib") == []
    state = recorded(path)
    assert state["tasks.config"] == "failed" and state["tasks.elsewhere"] == "changed"
    assert "No space left on device" in next(t for t in _last_messages(path) if "config" in t)

    four.run("f3", "rm /var/lib/fill", check=True)
    resumed = fedi("run", path, "-i", four.inventory_path, "--no-apply", "--json", "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert set(resumed.started()) == {"tasks.config", "tasks.fresh", "nixops4.render"}
    assert four.read_file("f3", "/var/lib/app/config") == NEW.encode()
    assert four.read_file("f3", "/var/lib/app/fresh") == NEW.encode()
    assert four.read_file("f3", "/var/lib/fedi-run/faults/originals/var/lib/app/config") == b"old\n"
    assert leftovers(four, "f3", "/var/lib") == []
    assert four.run("f4", "cat /srv/count").stdout == "also\n"


@pytest.mark.reliability(
    "faults",
    "secrets to be placed on a full /var/lib",
    "exit 1; the secret task fails 'cannot write the secret <path> … No space left on device' "
    "naming the host; no secret file and no temporary file left; other hosts finish; after "
    "space is freed, --resume places them",
)
def test_secrets_on_full_var_lib(four, playbook):
    four.run(
        "f3",
        "mount -t tmpfs -o size=64k tmpfs /var/lib "
        "&& mkdir -p -m 700 /var/lib/fedi-run/faults/secrets/vault "
        "&& { dd if=/dev/zero of=/var/lib/fill bs=4k 2>/dev/null; true; }",
        check=True,
    )
    path = playbook(HEADER + '[services.vault]\nenable = true\nhost = "f3"\n' + _other_hosts())
    base = (
        "run",
        path,
        "-i",
        four.inventory_path,
        "--no-apply",
        "--json",
        "--plugin",
        "vault_service",
    )
    result = fedi(*base)
    assert result.exit_code == 1, result.stdout + result.stderr
    secrets = result.finished()["vault.secrets"]
    assert secrets["status"] == "failed" and secrets["host"] == "f3"
    token_path = "/var/lib/fedi-run/faults/secrets/vault/token"
    assert f"cannot write the secret {token_path}" in secrets["message"]
    assert secrets["message"].endswith("No space left on device"), secrets["message"]
    assert result.finished()["vault.show"]["status"] == "skipped"
    assert result.finished()["tasks.elsewhere"]["status"] == "changed"
    assert four.run("f3", "ls -A /var/lib/fedi-run/faults/secrets/vault").stdout == ""
    assert leftovers(four, "f3", "/var/lib") == []
    assert recorded(path)["vault.secrets"] == "failed"

    four.run("f3", "rm /var/lib/fill", check=True)
    resumed = fedi(*base, "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert set(resumed.started()) == {"vault.secrets", "vault.show", "nixops4.render"}
    token = four.read_file("f3", "/var/lib/fedi-run/faults/secrets/vault/token").decode()
    assert len(token) == 64
    assert token not in resumed.stdout  # vault.show prints it: masked
    assert four.run("f4", "cat /srv/count").stdout == "also\n"


def _last_messages(path) -> list[str]:
    from fault_helpers import last_run

    return [f"{t.task_id}: {t.message}" for t in last_run(path).tasks]


@pytest.mark.reliability(
    "faults",
    "a read-only file system on a host",
    "exit 1; the task fails 'cannot write <path> on f3: Read-only file system'; the old file "
    "intact, no temporary file; other hosts finish; once writable, --resume completes",
)
def test_read_only_file_system(four, playbook):
    four.run(
        "f3",
        "mkdir -p /srv/ro && printf 'old\\n' > /srv/ro/config "
        "&& mount --bind /srv/ro /srv/ro && mount -o remount,bind,ro /srv/ro",
        check=True,
    )
    path = playbook(
        HEADER
        + """
[tasks.config]
host = "f3"
file = { path = "/srv/ro/config", content = "new\\n" }
"""
        + _other_hosts()
    )
    result = fedi("run", path, "-i", four.inventory_path, "--no-apply", "--json")
    assert result.exit_code == 1
    config = result.finished()["tasks.config"]
    assert config["status"] == "failed"
    assert "cannot write /srv/ro/config on f3: Read-only file system" in config["message"]
    assert result.finished()["tasks.elsewhere"]["status"] == "changed"
    assert four.read_file("f3", "/srv/ro/config") == b"old\n"
    assert leftovers(four, "f3", "/srv") == []
    assert recorded(path)["tasks.config"] == "failed"

    four.run("f3", "umount /srv/ro", check=True)
    resumed = fedi("run", path, "-i", four.inventory_path, "--no-apply", "--json", "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert set(resumed.started()) == {"tasks.config", "nixops4.render"}
    assert four.read_file("f3", "/srv/ro/config") == b"new\n"


@pytest.mark.reliability(
    "faults",
    "permission denied on a host (a non-root SSH user)",
    "exit 1; the task fails naming the file, 'on f3: Permission denied'; the old file "
    "intact, no temporary file; other hosts finish; after a chown, --resume completes",
)
def test_permission_denied(four, playbook, tmp_path):
    four.run(
        "f3",
        "useradd -M -d /home/deploy -s /bin/sh deploy && usermod -p '*' deploy "
        "&& mkdir -p /home/deploy/.ssh && cp /root/.ssh/authorized_keys /home/deploy/.ssh/ "
        "&& chown -R deploy: /home/deploy && chmod 700 /home/deploy/.ssh "
        "&& mkdir -p /srv/app && printf 'old\\n' > /srv/app/config",
        check=True,
    )
    deploy_user = tmp_path / "deploy-user.toml"
    deploy_user.write_text('[hosts.f3]\nuser = "deploy"\n')
    path = playbook(
        HEADER
        + """
[tasks.whoami]
host = "f3"
run = "id -un > /tmp/whoami"

[tasks.config]
host = "f3"
file = { path = "/srv/app/config", content = "new\\n" }
requires = ["tasks.whoami"]
"""
        + _other_hosts()
    )
    inventories = ("-i", four.inventory_path, "-i", deploy_user)
    result = fedi("run", path, *inventories, "--no-apply", "--json")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert four.read_file("f3", "/tmp/whoami") == b"deploy\n"
    config = result.finished()["tasks.config"]
    assert config["status"] == "failed"
    # (a non-root user cannot even keep the original under /var/lib/fedi-run/originals)
    assert config["message"].startswith("file /srv/app/config (mode 644): cannot ")
    assert config["message"].endswith(" on f3: Permission denied"), config["message"]
    assert result.finished()["tasks.elsewhere"]["status"] == "changed"
    assert four.read_file("f3", "/srv/app/config") == b"old\n"
    assert leftovers(four, "f3", "/srv") == []
    assert recorded(path)["tasks.config"] == "failed"
    assert tomllib.loads(deploy_user.read_text())["hosts"]["f3"]["user"] == "deploy"

    four.run(
        "f3",
        "chown -R deploy /srv/app && mkdir -p /var/lib/fedi-run && chown deploy /var/lib/fedi-run",
        check=True,
    )
    resumed = fedi("run", path, *inventories, "--no-apply", "--json", "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert set(resumed.started()) == {"tasks.config", "nixops4.render"}
    assert four.read_file("f3", "/srv/app/config") == b"new\n"
