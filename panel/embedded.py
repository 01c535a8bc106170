"""Worker processes started by a program: the embedded default of ``panel serve`` (no broker
configured: one worker of its own) and scripts such as a benchmark that start several.

:func:`spawn` starts ``fedi-run panel worker`` as a child process in a session of its own (a
Ctrl-C on the terminal reaches the parent only, which decides), with the database and broker
passed in its environment — never on its command line. :class:`Worker` is one such child:
:meth:`Worker.stop` ends it by its pid (SIGTERM: its run is stopped as its Stop button does and
recorded; SIGKILL if it has not exited in time). :class:`Supervised` keeps one running while
``serve`` serves, starting it again if it dies.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

_log = logging.getLogger("fedi_run.panel")

STOP_WAIT = 30.0
"""Seconds a worker asked to stop may take: the engine's grace period (10 s), its local
commands ended (up to KILL_AFTER), the record stored."""


class Worker:
    """A ``fedi-run panel worker`` child process."""

    def __init__(self, process: subprocess.Popen):
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, wait: float = STOP_WAIT) -> int | None:
        """SIGTERM, then SIGKILL after ``wait`` seconds; the exit status (None: unknown)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(wait)
            except subprocess.TimeoutExpired:
                _log.error("worker %s did not stop within %g s: killed", self.pid, wait)
                self.process.kill()
        return self.process.wait()

    def kill(self) -> None:
        """SIGKILL (a worker dying: its run is broken off)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def spawn(
    data_dir: Path,
    database: str | None = None,
    broker: str | None = None,
    env: Mapping[str, str] | None = None,
    stdout=None,
    stderr=None,
) -> Worker:
    """Start ``fedi-run panel worker`` for ``data_dir`` (and ``database``/``broker``, passed as
    ``FEDI_RUN_PANEL_DATABASE``/``FEDI_RUN_PANEL_BROKER``; None: the data directory's own)."""
    environment = dict(os.environ if env is None else env)
    environment["FEDI_RUN_PANEL_DIR"] = str(data_dir)
    for variable, value in (
        ("FEDI_RUN_PANEL_DATABASE", database),
        ("FEDI_RUN_PANEL_BROKER", broker),
    ):
        if value:
            environment[variable] = value
        else:
            environment.pop(variable, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "fedi_run.engine.cli.main", "panel", "worker"],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    return Worker(process)


class Supervised:
    """One worker kept running (started again, at most :data:`RESTARTS` times, if it dies)
    until :meth:`stop`."""

    RESTARTS = 5

    def __init__(self, data_dir: Path, database: str | None = None):
        self._data_dir, self._database = data_dir, database
        self._lock = threading.Lock()
        self._stopping = False
        self.worker = spawn(data_dir, database)
        self._watch = threading.Thread(target=self._keep, daemon=True, name="embedded worker")
        self._watch.start()

    def _keep(self) -> None:
        restarts = 0
        while True:
            status = self.worker.process.wait()
            with self._lock:
                if self._stopping:
                    return
                from fedi_run.panel.runs import check_alive

                try:
                    check_alive()  # its run, if any: broken off
                except Exception as error:  # noqa: BLE001 - logged; the restart matters more
                    _log.error("cannot check the runs of the worker that died: %s", error)
                if restarts >= self.RESTARTS:
                    _log.error(
                        "the panel's worker exited (%s) too often: not started again", status
                    )
                    return
                restarts += 1
                _log.error("the panel's worker exited (%s): starting it again", status)
                self.worker = spawn(self._data_dir, self._database)

    def stop(self, wait: float = STOP_WAIT) -> int | None:
        with self._lock:
            self._stopping = True
        return self.worker.stop(wait)
