"""Worker processes started by a program: the embedded default of ``panel serve`` (no broker
configured: one worker of its own) and scripts such as a benchmark that start several.

:func:`spawn` starts ``fedi-run panel worker`` as a child process in a session of its own (a
Ctrl-C on the terminal reaches the parent only, which decides), with the database and broker
passed in its environment — never on its command line. :class:`Worker` is one such child:
:meth:`Worker.stop` ends it by its pid (SIGTERM: its run is stopped as its Stop button does and
recorded; SIGKILL if it has not exited in time). With ``lifeline=True`` the child also ends
when the parent process does, however it ends (``kill -9`` too): it holds the read end of a
pipe whose only write end the parent keeps (:mod:`fedi_run.panel.lifeline`), and on EOF stops
as SIGTERM makes it. :class:`Supervised` keeps one such worker running while ``serve`` serves,
starting it again if it dies.
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

from fedi_run.panel import lifeline as lifeline_module

_log = logging.getLogger("fedi_run.panel")

STOP_WAIT = 30.0
"""Seconds a worker asked to stop may take: the engine's grace period (10 s), its local
commands ended (up to KILL_AFTER), the record stored."""


class Worker:
    """A ``fedi-run panel worker`` child process; ``lifeline``: the write end of its lifeline
    (None: it has none), closed once the process is reaped."""

    def __init__(self, process: subprocess.Popen, lifeline: int | None = None):
        self.process = process
        self.lifeline = lifeline
        self._closing = threading.Lock()

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
        return self.reaped()

    def kill(self) -> None:
        """SIGKILL (a worker dying: its run is broken off)."""
        if self.process.poll() is None:
            self.process.kill()
        self.reaped()

    def reaped(self) -> int:
        """Wait for the process to end; its lifeline's write end closed; its exit status."""
        status = self.process.wait()
        with self._closing:  # Supervised's thread and its stop() may both get here
            if self.lifeline is not None:
                os.close(self.lifeline)
                self.lifeline = None
        return status


def spawn(
    data_dir: Path,
    database: str | None = None,
    broker: str | None = None,
    env: Mapping[str, str] | None = None,
    stdout=None,
    stderr=None,
    lifeline: bool = False,
) -> Worker:
    """Start ``fedi-run panel worker`` for ``data_dir`` (and ``database``/``broker``, passed as
    ``FEDI_RUN_PANEL_DATABASE``/``FEDI_RUN_PANEL_BROKER``; None: the data directory's own).
    ``lifeline``: the worker also stops (as on SIGTERM: its run stopped and recorded) when
    this process ends, however; without it, it outlives this process until it is stopped."""
    read_end, kept = lifeline_module.pipe() if lifeline else (None, None)
    try:
        environment = lifeline_module.child_environment(
            os.environ if env is None else env, read_end
        )
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
            pass_fds=() if read_end is None else (read_end,),
        )
    except BaseException:
        if kept is not None:
            os.close(kept)
        raise
    finally:
        if read_end is not None:
            os.close(read_end)
    return Worker(process, kept)


class Supervised:
    """One worker kept running (started again, at most :data:`RESTARTS` times, if it dies)
    until :meth:`stop`, each with a lifeline: killed outright, this process takes its worker
    with it (the worker stops as on SIGTERM)."""

    RESTARTS = 5

    def __init__(self, data_dir: Path, database: str | None = None):
        self._data_dir, self._database = data_dir, database
        self._lock = threading.Lock()
        self._stopping = False
        self.worker = spawn(data_dir, database, lifeline=True)
        self._watch = threading.Thread(target=self._keep, daemon=True, name="embedded worker")
        self._watch.start()

    def _keep(self) -> None:
        restarts = 0
        while True:
            status = self.worker.reaped()
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
                self.worker = spawn(self._data_dir, self._database, lifeline=True)

    def stop(self, wait: float = STOP_WAIT) -> int | None:
        with self._lock:
            self._stopping = True
        return self.worker.stop(wait)
