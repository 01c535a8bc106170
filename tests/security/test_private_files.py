"""What the deployer writes is private whatever the umask, piece by piece (each case in a
subprocess of its own under umask 000, the most permissive): the state database while it is
open (``-wal``, ``-shm``) and its lock, ``--state`` directories that did not exist, files that
existed with a wider mode, the rendered deployment's missing parents, the ACME account key, a
known_hosts written by ``--accept-new-host-keys`` and the lab's keys. The full runs are in
test_security_scenario.py (umask 000) and test_secrets_travel.py (umask 022)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from security_helpers import loose_entries


def under_umask_000(code: str, tmp_path: Path) -> dict:
    """Run ``code`` (which may use ``tmp`` and must set ``result``) in a fresh Python under
    umask 000; returns ``result``."""
    program = (
        "import json, os, stat\nfrom pathlib import Path\nos.umask(0)\n"
        f"tmp = Path({str(tmp_path)!r})\nresult = {{}}\n"
        + textwrap.dedent(code)
        + "\nprint(json.dumps(result))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.reliability(
    "security",
    "the state database under umask 000",
    "new directories 0700 (every missing parent of --state); the database, "
    "its -wal and -shm while open, and the lock file 0600; an existing "
    "database or lock of a wider mode narrowed to 0600",
)
def test_the_state_database_and_its_companions_are_private(tmp_path):
    result = under_umask_000(
        """
        from fedi_run.engine.report.state import StateStore
        path = tmp / "a" / "b" / "state.db"
        with StateStore.open(path) as store, store.lock("d"):
            store.begin_run("d", "run", ["t"], ["h"], False, ["fedi-run"])
            result["open"] = {p.name: oct(p.stat().st_mode & 0o777)
                              for p in path.parent.iterdir()}
        old = tmp / "old"
        old.mkdir(mode=0o700)
        for name in ("state.db", "state.db.lock"):
            (old / name).touch()
            (old / name).chmod(0o644)
        with StateStore.open(old / "state.db") as store, store.lock("d"):
            pass
    """,
        tmp_path,
    )
    assert result["open"] == {
        "state.db": "0o600",
        "state.db-wal": "0o600",
        "state.db-shm": "0o600",
        "state.db.lock": "0o600",
    }
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700
    assert loose_entries(tmp_path / "a") == []
    assert loose_entries(tmp_path / "old") == []


@pytest.mark.reliability(
    "security",
    "the rendered deployment under umask 000",
    "every file 0600 and every directory 0700, missing parents included; a "
    "file of a wider mode is rewritten 0600",
)
def test_the_rendered_deployment_is_private(tmp_path):
    under_umask_000(
        """
        from types import SimpleNamespace
        from fedi_run.engine.nixops.render import write
        context = SimpleNamespace(check=False)
        root = tmp / "state" / "deep" / "name"
        write(context, str(root), [("flake.nix", "{}\\n"), ("hosts/a.nix", "{}\\n"),
                                   ("hosts/a/m.nix", "{}\\n")])
        (root / "data.nix").write_text("{}\\n")  # a stray file the next write will own
        (root / "data.nix").chmod(0o666)
        write(context, str(root), [("flake.nix", "{}\\n"), ("data.nix", "{ }\\n")])
    """,
        tmp_path,
    )
    assert loose_entries(tmp_path / "state") == []
    assert (tmp_path / "state" / "deep" / "name" / "data.nix").read_text() == "{ }\n"


@pytest.mark.reliability(
    "security",
    "the ACME account key under umask 000",
    "the key and its record 0600 in a 0700 directory; a leftover temporary "
    "file of a wider mode is never written into",
)
def test_the_acme_account_key_is_private(tmp_path):
    result = under_umask_000(
        """
        from fedi_run.plugins.acme.account import _write_private
        key = tmp / "state" / "acme" / "d-account.pem"
        key.parent.mkdir(parents=True)
        leftover = key.with_name(f".{key.name}.{os.getpid()}.tmp")
        leftover.write_bytes(b"stale")
        leftover.chmod(0o666)
        _write_private(key, b"-----BEGIN PRIVATE KEY-----\\nsecret\\n")
        result["leftover"] = leftover.exists()
    """,
        tmp_path,
    )
    assert result["leftover"] is False
    assert loose_entries(tmp_path / "state" / "acme") == []  # (state/ is this test's own)
    assert [p.name for p in (tmp_path / "state" / "acme").iterdir()] == ["d-account.pem"]


@pytest.mark.reliability(
    "security",
    "known_hosts written by --accept-new-host-keys, umask 000",
    "the file 0600, each missing directory 0700",
)
def test_a_recorded_host_key_is_private(tmp_path):
    under_umask_000(
        """
        import base64
        import threading
        import paramiko
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from fedi_run.engine.execute.connection import _CheckNewHostKey
        record = tmp / "home" / ".ssh" / "known_hosts"
        client = paramiko.SSHClient()
        public = Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        pkey = paramiko.PKey.from_type_string("ssh-ed25519", base64.b64decode(public.split()[1]))
        _CheckNewHostKey(record, threading.Lock()).missing_host_key(client, "127.0.0.9", pkey)
    """,
        tmp_path,
    )
    assert loose_entries(tmp_path / "home") == []
    assert (tmp_path / "home" / ".ssh" / "known_hosts").read_text().startswith("127.0.0.9 ")


@pytest.mark.reliability(
    "security",
    "the lab's keys under umask 000",
    "private keys 0600 (an existing file narrowed before it is written), public keys exactly 0644",
)
def test_the_labs_keys_are_private(tmp_path):
    under_umask_000(
        """
        from fedi_run.engine.lab import keys
        existing = tmp / "id_ed25519"
        existing.write_text("old")
        existing.chmod(0o666)
        keys.write_pair(keys.generate_ed25519(), existing, "test")
    """,
        tmp_path,
    )
    assert mode(tmp_path / "id_ed25519") == 0o600
    assert mode(tmp_path / "id_ed25519.pub") == 0o644
    assert (tmp_path / "id_ed25519").read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY")


@pytest.mark.reliability(
    "security",
    "files and secrets written on a host whose umask is 000",
    "the temporary file is 0600 before its chmod (never readable by others "
    "while it fills), the result has exactly the asked mode, and the "
    "script's umask is the host's again afterwards",
)
def test_a_target_file_is_never_readable_by_others_while_it_is_written(tmp_path):
    from fedi_run.engine.execute import scripts

    record = tmp_path / "modes-before-chmod"
    watch = (  # every chmod of a temporary file first records the mode the file had
        f'chmod() {{ case "$2" in *.fedi-run.*) stat -c %a "$2" >>{record};; esac; '
        'command chmod "$@"; }\n'
    )
    parts = [
        scripts.file_part(
            "0.0", str(tmp_path / "config"), b"password=hunter2\n", 0o600, None, "file"
        ),
        scripts.file_part("0.1", str(tmp_path / "public"), b"hello\n", 0o644, None, "file"),
        scripts.secret_part(
            "0.2",
            str(tmp_path / "s" / "token"),
            b"s3cr3t-token",
            0o400,
            keep=True,
            summary="secret",
        ),
        scripts.command_part("0.3", f"umask >{tmp_path}/umask-after", None, None),
    ]
    script = scripts.compile_script([parts], False)
    assert b"hunter2" not in script.text.encode() and b"s3cr3t" not in script.text.encode()
    done = subprocess.run(
        ["sh", "-c", watch + script.text],
        input=script.payload,
        capture_output=True,
        umask=0,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert record.read_text().split() == ["600", "600", "600"]
    assert mode(tmp_path / "config") == 0o600 and mode(tmp_path / "public") == 0o644
    assert mode(tmp_path / "s" / "token") == 0o400 and mode(tmp_path / "s") == 0o700
    assert (tmp_path / "umask-after").read_text().strip() == "0000"
