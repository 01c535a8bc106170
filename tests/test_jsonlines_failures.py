"""A failed task's ``task_finished`` record in ``--json`` carries what the display shows of it
(issue 15): its whole command, its stdout and stderr apart, and its log file."""

from __future__ import annotations

import io
import json
from pathlib import Path

from fedi_run.engine.report.events import RunStarted, Status, TaskFinished
from fedi_run.engine.report.jsonlines import JsonLinesSink


def test_a_failed_tasks_record_has_its_command_streams_and_log(tmp_path):
    stream = io.StringIO()
    sink = JsonLinesSink(stream, notices=io.StringIO())
    command = "make " + " ".join(f"--option-{i}=value-{i}" for i in range(40))
    log = tmp_path / "logs" / "7" / "tasks.build.log"
    sink.handle(RunStarted(7, "d", "run", ("tasks.build",), ("web",), False, 1.0, ()))
    sink.handle(
        TaskFinished(
            7,
            "tasks.build",
            "web",
            Status.FAILED,
            0.5,
            message="ran: make …: exited with status 2",
            output="compiling\nfatal: no rule\n",
            command=command,
            stdout="compiling\n",
            stderr="fatal: no rule\n",
            log=log,
        )
    )
    sink.close()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    (finished,) = [r for r in records if r["event"] == "task_finished"]
    assert finished["command"] == command  # whole, not cut
    assert finished["stdout"] == "compiling\n"
    assert finished["stderr"] == "fatal: no rule\n"
    assert Path(finished["log"]) == log
