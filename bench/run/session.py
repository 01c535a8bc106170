"""What every benchmark here does around its measurements.

:func:`in_work_directory` runs the measurements in a work directory of their own — removed at
the end unless kept (``--keep``, an interruption, an error: then its path is printed) — with
SIGTERM taken as Ctrl-C, so that whatever the measurements started (a lab, servers) comes down
either way. :func:`report_header` is the header every report starts with."""

from __future__ import annotations

import datetime
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from run.report import machine

T = TypeVar("T")


def _terminated(signum, frame):
    raise KeyboardInterrupt  # SIGTERM as Ctrl-C: what the benchmark started comes down


def in_work_directory(
    prefix: str, keep: bool, measure: Callable[[Path], T], interrupted: str
) -> T | None:
    """``measure(work directory)``'s result; None when interrupted (``interrupted`` says
    what was stopped, on stderr). An error is raised, the directory kept."""
    signal.signal(signal.SIGTERM, _terminated)
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return measure(workdir)
    except KeyboardInterrupt:
        keep = True
        print(f"interrupted; {interrupted}", file=sys.stderr)
        return None
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def report_header(script: str, argv: Sequence[str] | None) -> dict:
    """The date, the machine and the command line (``python bench/<script> …``) of a run."""
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "argv": f"python bench/{script} " + shlex.join(sys.argv[1:] if argv is None else argv),
    }
