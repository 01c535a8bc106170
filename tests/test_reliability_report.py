"""docs/reliability.md is generated, and kept in step with the tests it reports on."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "reliability_report.py"
PAGE = ROOT / "docs" / "reliability.md"


def _report_module():
    spec = importlib.util.spec_from_file_location("reliability_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_render_groups_by_kind_counts_cases_and_shows_failures():
    report = _report_module()
    records = [
        {
            "kind": "bad input",
            "case": "garbage | files",
            "outcome": "exit 2",
            "test": "t::a",
            "cases": 120,
            "passed": True,
            "seconds": 1.5,
        },
        {
            "kind": "faults",
            "case": "sshd killed",
            "outcome": "exit 1",
            "test": "t::b",
            "cases": 1,
            "passed": False,
            "seconds": 3.0,
        },
    ]
    page = report.render(records, status=1, elapsed=10.0)
    assert "2 scenarios, 121 cases, 1 held, 1 failed; pytest exit status 1" in page
    assert page.index("## Faults") < page.index("## Bad input")  # the fixed order of kinds
    assert "| garbage \\| files | 120 | exit 2 | yes |" in page
    assert "| sshd killed | 1 | exit 1 | **no** |" in page
    assert "| faults | 1 | 1 | 0 of 1 |" in page and "| bad input | 1 | 120 | 1 of 1 |" in page


def test_the_page_lists_every_reliability_test():
    """Adding a reliability test without renewing docs/reliability.md fails here: run
    ``python3 scripts/reliability_report.py``."""
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "reliability",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    assert len(ids) >= 10, collected.stdout + collected.stderr
    page = PAGE.read_text()
    missing = [node for node in ids if f"`{node}`" not in page]
    assert not missing, (
        f"docs/reliability.md is out of date; run scripts/reliability_report.py: {missing}"
    )
    assert "**no**" not in page, "docs/reliability.md records a case that did not hold"
