"""Start-up: each command imports only what it uses (issue 15).

Every case runs ``fedi-run`` in a fresh interpreter and looks at ``sys.modules`` when the
command has finished: a test of what is imported, not of time (bench/startup_bench.py measures
the time). No host is contacted: the run's playbook has a host but no task on it, so the run is
the local render step alone.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PLAYBOOK = """\
[deployment]
name = "startup"
domain = "example.org"

[hosts.web]
address = "127.0.0.2"
"""

ONE_TASK = PLAYBOOK + '\n[tasks.noop]\nhosts = ["web"]\nrun = "true"\n'

CODE = """\
import json, sys
from fedi_run.engine.cli.main import main
out, argv = sys.argv[1], sys.argv[2:]
try:
    main(argv)
    code = 0
except SystemExit as exit:
    code = exit.code or 0
with open(out, "w") as f:
    json.dump({"exit": code, "modules": sorted(sys.modules)}, f)
"""

# Never needed by a command that does not ask for it.
NEVER = (
    "django",  # the panel
    "acme",  # certbot's ACME client: only the acme plugin's account task
    "cryptography.x509",
    "networkx",  # replaced by plain dicts (engine/planning/graph.py)
    "tenacity",  # replaced by a loop
    "fedi_run.engine.lab.control",  # the lab machinery (only `fedi-run lab ...`)
    "fedi_run.engine.lab.session",
    "fedi_run.panel.server",
    "fedi_run.engine.report.junit",  # only with --junit
)
# What no command but one that reaches a host needs: the SSH stack.
SSH = ("fabric", "invoke", "paramiko", "cryptography")
# What --help needs none of.
HEAVY = (
    "pydantic",
    "jinja2",
    "pluggy",
    "rich",
    "sqlite3",
    "tomllib",
    "fedi_run.engine.model.playbook",
    "fedi_run.engine.project",
)


def imported(tmp_path, *argv: str) -> tuple[int, set[str]]:
    """The exit status of ``fedi-run argv`` in a fresh interpreter (cwd ``tmp_path``) and the
    modules loaded when it finished."""
    out = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", CODE, str(out), *argv],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=120,
    )
    found = json.loads(out.read_text())
    return found["exit"], set(found["modules"])


def loaded(modules: set[str], names) -> list[str]:
    """Those of ``names`` that are in ``modules``, a package counting with its submodules."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_help_imports_no_library_but_click(tmp_path):
    code, modules = imported(tmp_path, "--help")
    assert code == 0
    assert loaded(modules, NEVER + SSH + HEAVY) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("validate", "p.toml"),
        ("plan", "p.toml", "--no-apply"),
        ("plan", "p.toml", "--no-apply", "--json"),
        ("graph", "p.toml", "--no-apply"),
    ],
    ids=" ".join,
)
def test_commands_that_reach_no_host_import_no_ssh_display_or_lab(tmp_path, argv):
    (tmp_path / "p.toml").write_text(ONE_TASK)
    code, modules = imported(tmp_path, *argv)
    assert code == 0
    unwanted = NEVER + SSH + ("rich", "fedi_run.engine.report.display")
    assert loaded(modules, unwanted) == []


def test_a_json_run_imports_no_display_no_lab_no_panel(tmp_path):
    (tmp_path / "p.toml").write_text(PLAYBOOK)
    code, modules = imported(tmp_path, "run", "p.toml", "--no-apply", "--json")
    assert code == 0
    assert "fedi_run.engine.execute.scheduler" in modules  # it did run
    unwanted = NEVER + SSH + ("rich", "fedi_run.engine.report.display")
    assert loaded(modules, unwanted) == []


def test_a_run_with_the_progress_display_not_on_a_terminal_imports_no_rich(tmp_path):
    (tmp_path / "p.toml").write_text(PLAYBOOK)
    code, modules = imported(tmp_path, "p.toml", "--no-apply")
    assert code == 0
    assert "fedi_run.engine.report.display" in modules
    assert loaded(modules, NEVER + SSH + ("rich",)) == []
