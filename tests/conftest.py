"""Shared helpers for fedi-run's own tests. The lab fixtures come from the installed pytest
plugin (``fedi_run.engine.lab.pytest_plugin``), exactly as a plugin author gets them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import SUPPORT


@pytest.fixture(autouse=True)
def _support_on_path(monkeypatch):
    """Make tests/support importable, for the ``--plugin`` tests."""
    monkeypatch.syspath_prepend(str(SUPPORT))
    monkeypatch.delenv("FEDI_RUN_DISABLE_PLUGINS", raising=False)


@pytest.fixture
def write(tmp_path):
    """``write(name, text)`` writes a dedented file under tmp_path and returns its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return _write


_FUZZ_CASES: list[str] = []


@pytest.fixture
def fuzz_cases():
    """A list the fuzz tests append a label to for each case they run (counted at the end)."""
    return _FUZZ_CASES


_RELIABILITY: list[dict] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Count the fuzz cases a ``reliability``-marked test ran (1 for a plain test)."""
    before = len(_FUZZ_CASES)
    yield
    item.stash[_CASES_RUN] = max(1, len(_FUZZ_CASES) - before)


_CASES_RUN = pytest.StashKey[int]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Record each ``reliability``-marked test's outcome, for bench/reliability_report.py.

    Contract of the marker: ``@pytest.mark.reliability(kind, case, outcome)`` where ``kind``
    is the table the case belongs to ("bad input", "faults", "security"), ``case`` names the
    fault or input class, and ``outcome`` says what the test asserts happens (exit status,
    message, what the state and ``--resume`` do). A parametrized test gets one row per
    parameter set; its ``case`` may use ``{param}`` placeholders filled from ``callspec``.
    """
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("reliability")
    if marker is None or report.when not in ("setup", "call"):
        return
    if report.when == "setup" and report.passed:
        return  # recorded after the call
    params = getattr(getattr(item, "callspec", None), "params", {})
    kind, case, expected = marker.args
    _RELIABILITY.append(
        {
            "kind": kind,
            "case": case.format(**{k: getattr(v, "name", v) for k, v in params.items()}),
            "outcome": expected,
            "test": item.nodeid,
            "cases": item.stash.get(_CASES_RUN, 1),
            "passed": report.passed,
            "seconds": round(report.duration, 2),
        }
    )


def pytest_sessionfinish(session):
    """Write the reliability records where ``FEDI_RUN_RELIABILITY_JSON`` says, if it is set."""
    import json
    import os

    target = os.environ.get("FEDI_RUN_RELIABILITY_JSON")
    if target:
        Path(target).write_text(json.dumps(_RELIABILITY, indent=1))


def pytest_terminal_summary(terminalreporter):
    """Say how many generated bad-input cases ran, by kind."""
    if _FUZZ_CASES:
        from collections import Counter

        counts = Counter(_FUZZ_CASES)
        detail = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))
        terminalreporter.write_line(f"bad-input fuzz cases run: {len(_FUZZ_CASES)} ({detail})")
