"""``--limit`` is a hard boundary, on real lab hosts (issue 15): a limited run contacts no host
outside its limit — proven by giving the other host a port where nothing listens, and by the
hosts' own sshd logs — succeeds when what it needs there is done in the deployment's state,
and exits 2 naming it, without touching any host, when it is not. The render and apply on
``local`` run with ``--limit local`` and never with ``--limit hello``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tomllib
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner
from helpers import EXAMPLES, CliResult

from fedi_run.engine.cli.main import cli

pytestmark = pytest.mark.lab

STANDIN = Path(__file__).resolve().parent.parent / "standin"
HELLO, COWSAY = "/usr/local/bin/hello", "/usr/local/bin/cowsay"


def fedi(*args: object) -> CliResult:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


def accepted(lab, host: str) -> int:
    """How many SSH logins ``host``'s sshd has accepted so far (its own log)."""
    log = lab.dir / "hosts" / host / "sshd.log"
    return log.read_text(errors="replace").count("Accepted publickey")


def unreachable_inventory(lab, tmp_path: Path, host: str) -> Path:
    """The lab's inventory, but ``host`` on a port of its address where nothing listens."""
    data = tomllib.loads(lab.inventory_path.read_text())
    with socket.socket() as probe:  # a port the kernel just handed out, then closed again
        probe.bind((data["hosts"][host]["address"], 0))
        port = probe.getsockname()[1]
    data["hosts"][host]["port"] = port
    path = tmp_path / f"no-{host}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def exists(lab, host: str, path: str) -> bool:
    return lab.run(host, f"test -e {path}").exit_status == 0


@pytest.fixture
def basic(tmp_path):
    path = tmp_path / "basic.toml"
    shutil.copy(EXAMPLES / "basic.toml", path)
    return path


@pytest.fixture
def standin(monkeypatch, tmp_path):
    """The recording nixops4 stand-in on PATH; returns its log."""
    log = tmp_path / "nixops4.log"
    monkeypatch.setenv("PATH", f"{STANDIN}:{os.environ['PATH']}")
    monkeypatch.setenv("NIXOPS4_STANDIN_LOG", str(log))
    return log


def test_limit_contacts_no_other_host(lab_factory, basic, tmp_path, standin):
    lab = lab_factory(["hello", "cowsay"])
    inventory = lab.inventory_path
    no_cowsay = unreachable_inventory(lab, tmp_path, "cowsay")
    exists(lab, "hello", "/")  # the test's own connections, opened before counting
    exists(lab, "cowsay", "/")
    logins = {h: accepted(lab, h) for h in ("hello", "cowsay")}

    # Nothing done yet: the limited run refuses, naming what it needs on cowsay, and no host
    # is contacted (neither sshd accepted a login)
    refused = fedi("run", basic, "-i", inventory, "--limit", "hello", "--json")
    assert refused.exit_code == 2, refused.stdout + refused.stderr
    assert "tasks.cowsay on cowsay (never run; needed by tasks.motd@hello)" in refused.stderr
    assert "--limit hello,cowsay" in refused.stderr
    assert refused.started() == []
    assert {h: accepted(lab, h) for h in ("hello", "cowsay")} == logins
    assert not exists(lab, "hello", HELLO)

    # The negative control: a run that does need cowsay cannot reach it with this inventory
    control = fedi("run", basic, "-i", no_cowsay, "--no-apply", "--json", "--retries", "0")
    assert control.exit_code == 1
    assert control.statuses()["tasks.cowsay"] == "unreachable"

    # cowsay done (reachable again), then limited to hello with cowsay unreachable: it runs
    assert fedi("run", basic, "-i", inventory, "--limit", "cowsay", "--json").exit_code == 0
    assert exists(lab, "cowsay", COWSAY)
    assert accepted(lab, "cowsay") > logins["cowsay"]  # the log does count fedi-run's logins
    limited = fedi("run", basic, "-i", no_cowsay, "--limit", "hello", "--json", "--retries", "0")
    assert limited.exit_code == 0, limited.stdout + limited.stderr
    assert limited.started() == ["tasks.hello", "tasks.motd@hello"]  # no render, no apply
    assert set(limited.run_finished()["recap"]) == {"hello"}
    assert lab.run("hello", "hello", check=True).stdout.startswith("Hello from hello")
    assert not standin.exists()  # local is outside --limit hello: nixops4 never ran

    # --limit local: the render and the apply, nothing on a host
    logins = {h: accepted(lab, h) for h in ("hello", "cowsay")}
    local = fedi("run", basic, "-i", no_cowsay, "--limit", "local", "--json")
    assert local.exit_code == 0, local.stdout + local.stderr
    assert local.started() == ["nixops4.render", "nixops4.apply"]
    calls = [json.loads(line)["argv"][:2] for line in standin.read_text().splitlines()]
    assert calls == [["apply", "basic"]]
    assert {h: accepted(lab, h) for h in ("hello", "cowsay")} == logins

    # plan shows what the limited run leaves out, with its state
    plan = fedi("plan", basic, "-i", no_cowsay, "--limit", "hello")
    assert plan.exit_code == 0, plan.stderr
    last = plan.stdout.splitlines()[-1].split()
    assert last[:5] == ["tasks.cowsay", "cowsay", "done", "in", "run"]

    # a teardown limited to hello needs what depends on it elsewhere undone first
    down = fedi("teardown", basic, "-i", no_cowsay, "--limit", "hello", "--yes", "--json")
    assert down.exit_code == 2, down.stdout + down.stderr
    assert "tasks.motd@cowsay on cowsay (done in run" in down.stderr
    assert "nixops4.render on local (done in run" in down.stderr
    assert down.started() == [] and exists(lab, "hello", HELLO)
    assert {h: accepted(lab, h) for h in ("hello", "cowsay")} == logins
