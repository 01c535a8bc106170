"""Fixtures for the fault tests: a lab of four hosts of each test's own (a fault test kills,
stops, fills or locks up its hosts), and playbooks beside their state."""

from __future__ import annotations

import pytest

from fedi_run.engine.lab.pytest_plugin import LabFactory


@pytest.fixture
def four(tmp_path_factory):
    """Four fresh lab hosts, f1 … f4, stopped when the test ends."""
    factory = LabFactory(lambda: tmp_path_factory.mktemp("fedi-lab"))
    try:
        yield factory(["f1", "f2", "f3", "f4"])
    finally:
        factory.close()


@pytest.fixture
def playbook(tmp_path):
    """``playbook(text)`` writes ``deploy/playbook.toml`` (its state lives beside it)."""

    def write(text: str, name: str = "playbook.toml"):
        directory = tmp_path / "deploy"
        directory.mkdir(exist_ok=True)
        path = directory / name
        path.write_text(text)
        return path

    return write
