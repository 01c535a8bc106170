"""A :class:`~fedi_run.engine.planning.operations.LocalCommand`: one program run on the
deployer for a task.

:func:`run_local_command` runs it in a process group of its own (``engine.execute.jobs``), its
output streamed — whole lines, masked — to the task's output and live output as it comes; it
is ended (SIGTERM, then SIGKILL) when the task's timeout passes or the run's grace period
ends, and a failure says which. In ``--check`` nothing runs: it reports what would.
"""

from __future__ import annotations

import codecs
import subprocess
import time
from pathlib import Path

from fedi_run.engine.errors import OperationFailed
from fedi_run.engine.execute.context import Context
from fedi_run.engine.execute.jobs import Jobs, wait_output
from fedi_run.engine.planning.operations import LocalCommand
from fedi_run.engine.report.live_lines import LiveLines
from fedi_run.engine.report.output_log import TaskOutput


def run_local_command(
    op: LocalCommand, context: Context, output: TaskOutput, jobs: Jobs | None = None
) -> list[str]:
    """Run ``op.argv`` on the deployer in a process group of its own, its output streamed;
    ended (SIGTERM, then SIGKILL) when the task's timeout passes or the run's grace period
    ends (``jobs.stop_local``)."""
    if context.check:
        return [f"would run: {' '.join(op.argv)}"]
    if op.cwd:
        Path(op.cwd).mkdir(mode=0o700, parents=True, exist_ok=True)
    jobs = jobs if jobs is not None else Jobs()
    command = " ".join(op.argv)
    try:
        process = jobs.start_local(
            op.argv,
            cwd=op.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    except OSError as error:
        raise OperationFailed(
            f"cannot run {op.argv[0]}: {error.strerror or error}", [], ""
        ) from None
    deadline = None if context.timeout is None else time.monotonic() + context.timeout
    decode = codecs.getincrementaldecoder("utf-8")("replace").decode
    line = ""
    live = LiveLines(context.masker, lambda text: context.output("stdout", text))
    try:
        for data in wait_output(process, deadline, jobs.stopping):
            *complete, line = (line + decode(data)).split("\n")
            for text in complete:
                output.write_text(text + "\n")
                live.write_text(text + "\n")
        line += decode(b"", final=True)
        if line:
            output.write_text(line)
            live.write_text(line)
        live.close()
        while True:  # its output has ended; the process too, or soon (else: its deadline)
            try:
                status = process.wait(0.2)
                break
            except subprocess.TimeoutExpired:
                if jobs.stopping.is_set():
                    raise InterruptedError from None
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError from None
        if status != 0 and jobs.stopping.is_set():  # ended by the stop before we noticed it
            raise InterruptedError
    except TimeoutError:
        jobs.end_local(process)
        raise OperationFailed(
            f"timed out after {context.timeout:g} s on the deployer: {command} (stopped)",
            [],
            "",
            command=command,
        ) from None
    except InterruptedError:
        jobs.end_local(process)
        raise OperationFailed(
            f"interrupted: still running {jobs.stopped_when} ({command} was stopped)",
            [],
            "",
        ) from None
    finally:
        live.close()
        assert process.stdout is not None
        process.stdout.close()
        if process.poll() is None:  # something broke here while it ran
            jobs.end_local(process)
        jobs.forget(process)
    if status != 0:
        raise OperationFailed(f"{command} exited with status {status}", [], "", command=command)
    return [f"ran: {command}"]
