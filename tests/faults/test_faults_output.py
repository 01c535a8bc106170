"""A command that prints 50 MB: the deployer's memory stays bounded (it keeps a 64 KiB tail),
the display, events and state get the tail under a note naming the log, and the run's log
keeps the whole output, masked."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess

import pytest
from fault_helpers import HEADER, Cli, fedi, last_run

pytestmark = pytest.mark.lab

SIZE = 50 * 1024 * 1024
LINE = "fedi-run prints this line again and again"
LOUD = f"yes '{LINE}' | head -c {SIZE}"
PEAK_LIMIT_KIB = 150 * 1024
EXTRA_LIMIT_KIB = 30 * 1024


def _expected_digest() -> str:
    data = subprocess.run(["sh", "-c", LOUD], capture_output=True, check=True).stdout
    assert len(data) == SIZE
    return hashlib.sha256(data).hexdigest()


@pytest.mark.reliability(
    "faults",
    "a command that prints 50 MB",
    "exit 0; the deployer's peak RSS stays under 150 MB (under 30 MB more than a quiet run); "
    "the event's output is the 64 KiB tail under '[… 50.0 MiB more in <log>]'; the log file "
    "(0600, in a 0700 directory) holds all 50 MB; other hosts finish",
)
def test_fifty_megabytes_of_output(four, playbook, capsys):
    quiet = playbook(
        HEADER + '[tasks.loud]\nhost = "f1"\nrun = "echo hello"\n'
        '[tasks.quiet]\nhost = "f2"\nfile = { path = "/srv/quiet", content = "q\\n" }\n',
        "quiet.toml",
    )
    baseline = Cli("run", quiet, "-i", four.inventory_path, "--no-apply", "--json").finish()
    assert baseline.exit_code == 0, baseline.stderr

    path = playbook(
        HEADER + f'[tasks.loud]\nhost = "f1"\nrun = "{LOUD}"\n'
        '[tasks.quiet]\nhost = "f2"\nfile = { path = "/srv/other", content = "q\\n" }\n'
    )
    result = Cli("run", path, "-i", four.inventory_path, "--no-apply", "--json").finish(timeout=300)
    assert result.exit_code == 0, result.stderr
    with capsys.disabled():
        print(
            f"\n50 MB of output: peak RSS {result.peak_rss_kib / 1024:.1f} MiB "
            f"(a quiet run: {baseline.peak_rss_kib / 1024:.1f} MiB), {result.duration:.1f} s"
        )
    assert result.peak_rss_kib < PEAK_LIMIT_KIB
    assert result.peak_rss_kib - baseline.peak_rss_kib < EXTRA_LIMIT_KIB

    loud = result.finished()["tasks.loud"]
    assert loud["status"] == "changed" and loud["truncated"] is True, {
        k: v for k, v in loud.items() if k != "output"
    }
    run_id = loud["run_id"]
    log = path.parent / ".fedi-run" / "logs" / str(run_id) / "tasks.loud.log"
    note, _, tail = loud["output"].partition("\n")
    assert note.startswith("[… ") and note.endswith(f" MiB more in {log}]"), note
    assert 60 * 1024 < len(tail) <= 64 * 1024
    lines = tail.splitlines()
    assert set(lines[:-1]) == {LINE} and LINE.startswith(lines[-1])  # head -c cut the last one
    assert result.finished()["tasks.quiet"]["status"] == "changed"
    assert len(result.stdout) < 200 * 1024  # every JSON line together

    assert log.stat().st_size == SIZE
    assert hashlib.sha256(log.read_bytes()).hexdigest() == _expected_digest()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.parent.parent.stat().st_mode) == 0o700
    assert not (log.parent / "tasks.quiet.log").exists()  # printed nothing: no file

    shown = fedi("show-run", path, run_id, "--json")
    [task] = [t for t in json.loads(shown.stdout)["tasks"] if t["task_id"] == "tasks.loud"]
    assert task["output_log"] == str(log)
    assert last_run(path).exit_status == 0


@pytest.mark.reliability(
    "faults",
    "a long output of a failing command, secrets in it",
    "exit 1; -v shows the tail under '[… more in <log>]'; the log keeps the whole output with "
    "every secret masked, even one split across chunks; show-run names the log",
)
def test_long_failing_output_is_logged_masked(four, playbook):
    path = playbook(
        HEADER
        + """
[services.vault]
enable = true
host = "f1"

[tasks.noisy]
host = "f1"
run = '''t=$(cat /var/lib/fedi-run/faults/secrets/vault/token); i=0; while [ $i -lt 3000 ]; do \
printf 'line %05d %s and some more words to make it long\n' $i "$t"; i=$((i+1)); done; exit 3'''
requires = ["vault.secrets"]
"""
    )
    result = fedi(
        "run", path, "-i", four.inventory_path, "--no-apply", "-v", "--plugin", "vault_service"
    )
    assert result.exit_code == 1
    token = four.read_file("f1", "/var/lib/fedi-run/faults/secrets/vault/token").decode()
    log = path.parent / ".fedi-run" / "logs" / "1" / "tasks.noisy.log"
    assert f"more in {log}]" in result.stderr  # the display
    assert "line 02999 ******** and some" in result.stderr
    text = log.read_text()
    assert text.count("\n") == 3000 and text.count("********") == 3000
    assert token not in text and token[:20] not in text and token[-20:] not in text
    shown = fedi("show-run", path, "1")
    assert f"whole output: {log}" in shown.stdout
    assert token not in result.stdout + result.stderr + shown.stdout


@pytest.mark.reliability(
    "faults",
    "a command that never stops printing",
    "its timeout fires although output keeps coming: exit 1, 'timed out after 1 s on f1'; "
    "memory bounded; the log has what came; another host's task finishes",
)
def test_endless_output_times_out(four, playbook):
    path = playbook(
        HEADER + '[tasks.endless]\nhost = "f1"\nrun = "yes"\ntimeout = 1\n'
        '[tasks.fine]\nhost = "f2"\nrun = "true"\n'
    )
    result = Cli("run", path, "-i", four.inventory_path, "--no-apply", "--json").finish(timeout=60)
    assert result.exit_code == 1, result.stderr
    assert result.duration < 15
    endless = result.finished()["tasks.endless"]
    assert endless["status"] == "failed" and endless["message"] == "timed out after 1 s on f1"
    assert result.finished()["tasks.fine"]["status"] == "changed"
    assert result.peak_rss_kib < PEAK_LIMIT_KIB
    log = path.parent / ".fedi-run" / "logs" / str(endless["run_id"]) / "tasks.endless.log"
    assert log.stat().st_size > 1024 * 1024
    assert last_run(path).exit_status == 1
