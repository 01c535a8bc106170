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
