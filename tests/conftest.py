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


def pytest_terminal_summary(terminalreporter):
    """Say how many generated bad-input cases ran, by kind."""
    if _FUZZ_CASES:
        from collections import Counter

        counts = Counter(_FUZZ_CASES)
        detail = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))
        terminalreporter.write_line(f"bad-input fuzz cases run: {len(_FUZZ_CASES)} ({detail})")
