"""Fakes for testing the executor without root, SSH or the lab (importable as ``fakes``:
tests/ is on sys.path through its conftest.py). See :mod:`fakes.pool` (a fake
``ConnectionPool`` running each command with a local ``sh``, with programmable faults) and
:mod:`fakes.harness` (the real Scheduler run on it)."""
