"""Fixtures for the tests that run playbooks on real lab hosts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fedi_run.engine.lab.pytest_plugin import LabFactory

STANDIN = Path(__file__).resolve().parent.parent / "standin"


@pytest.fixture(scope="module")
def basic_lab(tmp_path_factory):
    """Two lab hosts, `hello` and `cowsay`, as in the seed's basic check."""
    factory = LabFactory(lambda: tmp_path_factory.mktemp("fedi-lab"))
    try:
        yield factory(["hello", "cowsay"])
    finally:
        factory.close()


@pytest.fixture
def standin_nixops4(monkeypatch, tmp_path):
    """The recording nixops4 stand-in on PATH; returns the path of its log."""
    log = tmp_path / "nixops4.log"
    monkeypatch.setenv("PATH", f"{STANDIN}:{os.environ['PATH']}")
    monkeypatch.setenv("NIXOPS4_STANDIN_LOG", str(log))
    return log


@pytest.fixture
def playbook(tmp_path):
    """``playbook(text)`` writes a playbook in tmp_path (its state lives beside it)."""

    def write(text: str, name: str = "playbook.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
