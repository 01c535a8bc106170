"""pytest plugin of fedi-run: lab fixtures for this project's tests and for plugin authors.

Installed with fedi-run (entry point ``pytest11: fedi_run_lab``), so any test session in an
environment with fedi-run has these fixtures, without a conftest import:

``lab`` (session)
    A running :class:`~fedi_run.engine.lab.session.Lab` with the hosts of ``lab_hosts`` and,
    if ``lab_acme``, Pebble; in a temporary directory; stopped at the end of the session.
    ``lab.hosts`` (name → address, port, user, host_key), ``lab.inventory_path``,
    ``lab.acme`` (server, ca_file, or None), ``lab.dir``, ``lab.run(host, cmd)`` →
    ``CommandResult`` (exit_status, stdout, stderr; ``check=True`` raises on failure),
    ``lab.read_file(host, path)`` → bytes, ``lab.write_file(host, path, data)``.
``lab_hosts`` (session)
    The host names of ``lab``; default ``("garage", "mastodon", "peertube", "pixelfed")``.
    Override it in a conftest.py to get other hosts.
``lab_acme`` (session)
    Whether ``lab`` runs Pebble; default True. Override it like ``lab_hosts``.
``lab_factory`` (function)
    ``lab_factory(hosts, acme=False) -> Lab``: a lab of the test's own, in a fresh temporary
    directory, stopped when the test ends (unless the test already stopped it).

When the lab cannot start (not root, sshd or pebble missing, …) the fixtures **fail** the test
with the lab's message: they never skip, so a lab test cannot silently not run.

The plugin also registers the ``lab`` marker. Importing this module does nothing else and
loads nothing but pytest: the lab itself is imported when a fixture is first used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from fedi_run.engine.lab.session import Lab

DEFAULT_HOSTS = ("garage", "mastodon", "peertube", "pixelfed")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab: needs root, Debian's openssh-server and pebble: starts real lab hosts"
    )


class LabFactory:
    """Starts labs in fresh directories under ``base`` and stops all of them on :meth:`close`."""

    def __init__(self, base_dir: Callable[[], Path]):
        self._base_dir = base_dir
        self._labs: list[Lab] = []

    def __call__(self, hosts: Sequence[str], acme: bool = False) -> Lab:
        from fedi_run.engine.errors import LabError
        from fedi_run.engine.lab.session import Lab

        try:
            lab = Lab.up(self._base_dir() / "lab", list(hosts), acme=acme)
        except LabError as error:
            pytest.fail(f"the lab could not start:\n{error}", pytrace=False)
        self._labs.append(lab)
        return lab

    def close(self) -> None:
        """Stop every lab this factory started; raise the first failure after trying all."""
        failures = []
        for lab in reversed(self._labs):
            try:
                lab.down()
            except Exception as error:  # keep stopping the others
                failures.append(error)
        self._labs.clear()
        if failures:
            raise failures[0]


@pytest.fixture(scope="session")
def lab_hosts() -> tuple[str, ...]:
    """Host names of the session's ``lab`` (override in a conftest.py)."""
    return DEFAULT_HOSTS


@pytest.fixture(scope="session")
def lab_acme() -> bool:
    """Whether the session's ``lab`` runs Pebble (override in a conftest.py)."""
    return True


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, lab_hosts, lab_acme) -> Iterator[Lab]:
    """The session's lab (see the module docstring)."""
    factory = LabFactory(lambda: tmp_path_factory.mktemp("fedi-lab"))
    try:
        yield factory(lab_hosts, acme=lab_acme)
    finally:
        factory.close()


@pytest.fixture
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFactory]:
    """``lab_factory(hosts, acme=False) -> Lab``: labs of the test's own, stopped after it."""
    factory = LabFactory(lambda: tmp_path_factory.mktemp("fedi-lab"))
    try:
        yield factory
    finally:
        factory.close()
