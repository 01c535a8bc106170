"""The playbook's `[vars]`, `env`, `when`, `changed_when` and `owner = "user:group"` on a real
lab host: the values reach a real command, a task whose `when` is false never touches its host,
a command's real output decides whether it changed, and an owner and group are set and kept."""

from __future__ import annotations

import json

import pytest
from lab_helpers import fedi_run

pytestmark = pytest.mark.lab

HEAD = """
[deployment]
name = "features"
domain = "features.example.org"

[hosts.web]
address = "192.0.2.30"
"""


def run(playbook, lab, *extra: str):
    done = fedi_run("run", str(playbook), "-i", str(lab.inventory_path), "--no-apply", "--json")
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    finished = {e["id"]: e for e in events if e["event"] == "task_finished"}
    return done, finished


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from fedi_run.engine.lab.pytest_plugin import LabFactory

    factory = LabFactory(lambda: tmp_path_factory.mktemp("fedi-lab"))
    try:
        lab = factory(["web"])
        lab.run(
            "web",
            "groupadd -f fedigrp && { id fediusr >/dev/null 2>&1 || "
            "useradd -M -N -g fedigrp fediusr; }",
            check=True,
        )
        yield lab
    finally:
        factory.close()


def test_env_reaches_the_command_quoted_and_vars_reach_the_templates(web, tmp_path):
    hostile = 'it\'s $(touch /tmp/injected) `id` "q" ; rm -rf /nope'
    playbook = tmp_path / "env.toml"
    playbook.write_text(
        HEAD
        + f"""
[vars]
greeting = "hello"
hostile = {json.dumps(hostile)}

[tasks.env]
host = "web"
run = 'printf "%s|%s|%s" "$GREETING" "$HOSTILE" "$WHERE" > /root/env.out'
unless = 'test "$GREETING" = never'
[tasks.env.env]
GREETING = "{{{{ vars.greeting }}}}"
HOSTILE = "{{{{ vars.hostile }}}}"
WHERE = "{{{{ host.name }}}}"
"""
    )
    done, finished = run(playbook, web)
    assert done.returncode == 0, done.stdout + done.stderr
    assert finished["tasks.env"]["status"] == "changed"
    assert web.read_file("web", "/root/env.out").decode() == f"hello|{hostile}|web"
    assert web.run("web", "test -e /tmp/injected").exit_status == 1


def test_when_false_is_skipped_without_touching_the_host_and_its_dependants_run(web, tmp_path):
    playbook = tmp_path / "when.toml"
    playbook.write_text(
        HEAD
        + """
[vars]
install = false

[tasks.off]
host = "web"
run = "touch /root/when-off"
when = "{{ vars.install }}"

[tasks.after]
host = "web"
run = "touch /root/when-after"
requires = ["tasks.off"]
when = " TRUE "
"""
    )
    done, finished = run(playbook, web)
    assert done.returncode == 0, done.stdout + done.stderr
    assert finished["tasks.off"]["status"] == "skipped"
    assert finished["tasks.off"]["message"] == "skipped: when: false"
    assert finished["tasks.after"]["status"] == "changed"
    assert web.run("web", "test -e /root/when-off").exit_status == 1
    assert web.run("web", "test -e /root/when-after").exit_status == 0


def test_changed_when_reads_the_commands_real_output(web, tmp_path):
    web.write_file("web", "/root/state", "updated\n")
    playbook = tmp_path / "changed.toml"
    playbook.write_text(
        HEAD
        + """
[tasks.judged]
host = "web"
run = "cat /root/state; echo warn >&2"
changed_when = "{{ 'updated' in result.stdout and 'warn' in result.stderr }}"

[tasks.never]
host = "web"
run = "echo anything"
changed_when = false

[tasks.unclear]
host = "web"
run = "echo maybe"
changed_when = "{{ result.stdout | trim }}"
"""
    )
    done, finished = run(playbook, web)
    assert finished["tasks.judged"]["status"] == "changed", finished["tasks.judged"]
    assert finished["tasks.never"]["status"] == "ok"
    assert finished["tasks.unclear"]["status"] == "failed"
    assert (
        "changed_when: rendered to 'maybe', expected true or false"
        in finished["tasks.unclear"]["message"]
    )
    assert done.returncode == 1

    web.write_file("web", "/root/state", "nothing to do\n")
    again, finished = run(playbook, web)
    assert finished["tasks.judged"]["status"] == "ok"


def test_owner_user_and_group_are_applied_and_kept(web, tmp_path):
    playbook = tmp_path / "owner.toml"
    playbook.write_text(
        HEAD
        + """
[tasks.dir]
host = "web"
directory = { path = "/srv/owned", mode = "0750", owner = "fediusr:fedigrp" }

[tasks.file]
host = "web"
file = { path = "/srv/owned/conf", content = "x\\n", mode = "0640", owner = "fediusr:fedigrp" }
requires = ["tasks.dir"]
"""
    )
    done, finished = run(playbook, web)
    assert done.returncode == 0, done.stdout + done.stderr
    assert finished["tasks.dir"]["status"] == "changed"
    assert finished["tasks.file"]["status"] == "changed"
    stat = "stat -c '%U:%G %a' /srv/owned /srv/owned/conf"
    assert web.run("web", stat, check=True).stdout.split("\n")[:2] == [
        "fediusr:fedigrp 750",
        "fediusr:fedigrp 640",
    ]

    again, finished = run(playbook, web)
    assert again.returncode == 0
    assert finished["tasks.dir"]["status"] == "ok"
    assert finished["tasks.file"]["status"] == "ok"

    # only the group drifted: set back, as a change
    web.run("web", "chgrp root /srv/owned /srv/owned/conf", check=True)
    third, finished = run(playbook, web)
    assert finished["tasks.dir"]["status"] == "changed"
    assert finished["tasks.file"]["status"] == "changed"
    assert web.run("web", stat, check=True).stdout.split("\n")[:2] == [
        "fediusr:fedigrp 750",
        "fediusr:fedigrp 640",
    ]
