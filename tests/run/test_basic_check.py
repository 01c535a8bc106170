"""The seed's basic check on real lab hosts: `hello` on one host, `cowsay` on the other,
idempotent, and a teardown that leaves the hosts as they were."""

from __future__ import annotations

import pytest
from run_helpers import copy_example, fedi

pytestmark = pytest.mark.lab

SNAPSHOT = (
    "find /usr/local /etc /srv /opt /root /home /var/lib -xdev "
    "-printf '%p %m %u %s\\n' 2>/dev/null | grep -v '^/etc/ld.so.cache ' | sort"
)


def on_path(lab, host: str, program: str) -> bool:
    return lab.run(host, f"command -v {program}").exit_status == 0


def test_basic_check(basic_lab, tmp_path):
    lab = basic_lab
    playbook = copy_example("basic.toml", tmp_path)
    before = {h: lab.run(h, SNAPSHOT, check=True).stdout for h in ("hello", "cowsay")}
    assert not on_path(lab, "hello", "hello") and not on_path(lab, "cowsay", "cowsay")

    first = fedi("run", playbook, "-i", lab.inventory_path, "--no-apply", "--json")
    assert first.exit_code == 0, first.stdout + first.stderr
    assert first.run_finished()["recap"]["hello"]["changed"] == 2
    assert first.run_finished()["recap"]["cowsay"]["changed"] == 2

    assert (
        lab.run("hello", "hello", check=True).stdout == "Hello from hello in basic.example.org!\n"
    )
    assert "< moo >" in lab.run("cowsay", "cowsay moo", check=True).stdout
    assert not on_path(lab, "hello", "cowsay") and not on_path(lab, "cowsay", "hello")
    assert lab.read_file("cowsay", "/etc/motd") == b"Welcome to basic.example.org (cowsay)\n"
    assert lab.run("hello", "stat -c %a /usr/local/bin/hello", check=True).stdout.strip() == "755"
    # The machine itself (outside the lab hosts) got nothing.
    assert lab.run("hello", "test -e /usr/local/bin/hello").exit_status == 0
    import os

    assert not os.path.exists("/usr/local/bin/hello") and not os.path.exists(
        "/usr/local/bin/cowsay"
    )

    second = fedi("run", playbook, "-i", lab.inventory_path, "--no-apply", "--json")
    assert second.exit_code == 0
    totals = second.run_finished()["recap"]
    assert sum(h["changed"] for h in totals.values()) == 0
    assert totals["hello"]["ok"] == 2 and totals["cowsay"]["ok"] == 2
    assert totals["local"]["ok"] == 1  # nixops4.render: the rendered deployment is unchanged

    down = fedi("teardown", playbook, "-i", lab.inventory_path, "--no-apply", "--json", "--yes")
    assert down.exit_code == 0, down.stdout + down.stderr
    assert not on_path(lab, "hello", "hello") and not on_path(lab, "cowsay", "cowsay")
    after = {h: lab.run(h, SNAPSHOT, check=True).stdout for h in ("hello", "cowsay")}
    assert after == before


def test_check_changes_nothing_and_diff_shows_the_change(basic_lab, tmp_path):
    lab = basic_lab
    playbook = copy_example("basic.toml", tmp_path)
    check = fedi(
        "run", playbook, "-i", lab.inventory_path, "--no-apply", "--check", "--diff", "--json"
    )
    assert check.exit_code == 0
    finished = check.finished()
    assert finished["tasks.hello"]["status"] == "changed"
    assert finished["tasks.hello"]["changes"] == ["file /usr/local/bin/hello (mode 755)"]
    assert '+echo "Hello from hello in basic.example.org!"' in finished["tasks.hello"]["diff"]
    assert not on_path(lab, "hello", "hello")
    assert b"Welcome to basic.example.org" not in lab.read_file("hello", "/etc/motd")

    text = fedi("run", playbook, "-i", lab.inventory_path, "--no-apply", "--check", "--diff")
    assert "would change" in text.stderr and "+++ b/usr/local/bin/hello" in text.stderr
    assert not on_path(lab, "hello", "hello")


def test_human_output_has_a_recap_per_host(basic_lab, tmp_path):
    playbook = copy_example("basic.toml", tmp_path)
    result = fedi("run", playbook, "-i", basic_lab.inventory_path, "--no-apply")
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert any(
        line.startswith("hello") and "changed=" in line and "unreachable=0" in line
        for line in lines
    )
    assert any(line.startswith("cowsay") and "ok=" in line for line in lines)
    assert any("wall time" in line for line in lines)
    down = fedi("teardown", playbook, "-i", basic_lab.inventory_path, "--no-apply", "--yes")
    assert down.exit_code == 0


def test_junit_report(basic_lab, tmp_path):
    import xml.etree.ElementTree as ET

    playbook = copy_example("basic.toml", tmp_path)
    report = tmp_path / "report.xml"
    result = fedi(
        "run", playbook, "-i", basic_lab.inventory_path, "--no-apply", "--json", "--junit", report
    )
    assert result.exit_code == 0
    root = ET.parse(report).getroot()
    cases = {case.get("name") for case in root.iter("testcase")}
    assert cases == {
        "tasks.hello",
        "tasks.cowsay",
        "tasks.motd@hello",
        "tasks.motd@cowsay",
        "nixops4.render",
    }
    assert oct(report.stat().st_mode & 0o777) == "0o600"
    assert (
        fedi(
            "teardown", playbook, "-i", basic_lab.inventory_path, "--no-apply", "--json", "--yes"
        ).exit_code
        == 0
    )


def test_history_records_the_runs(basic_lab, tmp_path):
    playbook = copy_example("basic.toml", tmp_path)
    assert (
        fedi("run", playbook, "-i", basic_lab.inventory_path, "--no-apply", "--json").exit_code == 0
    )
    assert (
        fedi(
            "teardown", playbook, "-i", basic_lab.inventory_path, "--no-apply", "--json", "--yes"
        ).exit_code
        == 0
    )
    history = fedi("history", playbook, "--json")
    runs = __import__("json").loads(history.stdout)
    kinds = [r["kind"] for r in runs]
    assert kinds[:2] == ["teardown", "run"]
    shown = fedi("show-run", playbook, runs[1]["id"])
    assert "tasks.hello" in shown.stdout and "changed" in shown.stdout
