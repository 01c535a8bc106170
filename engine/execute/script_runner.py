"""Sending one compiled script to a host and reading its report, segment by segment.

:func:`run_segments` is the one round trip every scriptable operation goes through: the
segments' parts (``engine.execute.scripts``) become one script, run on the connection with
the files' and secrets' contents on stdin; each segment's output streams into its
:class:`TaskOutput` and, as it comes, to its task's live output (masked,
``engine.report.live_lines``); and each segment comes back as ``(changes, failure or
None)`` — its parts' markers say what changed, a ``changed_when`` judge says it of a command
that ran, and a part that did not report failed with why the script stopped before it.
:func:`run_parts` is the same for one segment of the context's task, raising its failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fedi_run.engine.errors import OperationFailed
from fedi_run.engine.execute import jobs as jobs_module
from fedi_run.engine.execute import scripts
from fedi_run.engine.execute.connection import HostConnection
from fedi_run.engine.execute.context import NO_OUTPUT, Context
from fedi_run.engine.execute.jobs import Jobs, pid_file_name
from fedi_run.engine.report.live_lines import LiveLines
from fedi_run.engine.report.output_log import TaskOutput

STDERR_TAIL = 4096
"""Bytes of a script's own stderr (outside its segments, which merge theirs) kept."""


def run_segments(
    segments: Sequence[Sequence[scripts.Part]],
    context: Context,
    connection: HostConnection,
    timeout: float | None,
    outputs: Sequence[TaskOutput],
    jobs: Jobs | None = None,
    task_ids: Sequence[str] | None = None,
    shown: Sequence[str] | None = None,
) -> list[tuple[list[str], str | None]]:
    """Run the segments as one script, each segment's output streamed into ``outputs[i]``
    and, as it comes, to its task's live output (:class:`Context`); per segment ``(changes,
    failure or None)``. With ``jobs`` keeping pid files on the hosts, segment ``i`` is
    recorded there as ``task_ids[i]``'s job (and fails while an earlier job of that task still
    runs). ``shown[i]``: what segment ``i`` does, for ``context.sent`` (default: its parts'
    summaries)."""
    pid_dir = jobs.host_dir if jobs is not None and task_ids else None
    host = getattr(connection, "name", "") or "the host"
    script = scripts.compile_script(
        segments,
        context.check,
        getattr(connection, "name", ""),
        pid_dir=pid_dir,
        pid_names=[pid_file_name(t) for t in task_ids] if pid_dir and task_ids else None,
        # an earlier job is waited for within the timeout, so that the task says why it fails
        pid_wait=None if timeout is None else min(jobs_module.WAIT_FOR_EARLIER, timeout / 2),
    )
    lives = _live_outputs(context, len(outputs), task_ids)
    reader = scripts.ReportReader(
        script.marker,
        [_tee(o.stdout, live, "stdout") for o, live in zip(outputs, lives)],
        [_tee(o.stderr, live, "stderr") for o, live in zip(outputs, lives)],
    )
    errors = bytearray()

    def stderr(data: bytes) -> None:
        errors.extend(data)
        if len(errors) > 2 * STDERR_TAIL:
            del errors[:-STDERR_TAIL]

    context.sent(_sent_text(segments, shown, task_ids))
    try:
        result = connection.run(
            script.text,
            input=script.payload or None,
            timeout=timeout,
            stdout=reader.feed,
            stderr=stderr,
        )
    finally:
        reader.close()
        for output in outputs:
            output.close()
        for live in lives:
            for stream in (live or {}).values():
                stream.close()
    stderr_text = context.masker.mask(bytes(errors[-STDERR_TAIL:]).decode("utf-8", "replace"))
    outcomes = []
    for parts, states, output in zip(segments, reader.states, outputs):
        changes: list[str] = []
        failure = None
        if states.get(-1, ("", ""))[0] == "F":  # not started: its earlier job still runs
            outcomes.append((changes, context.masker.mask(states[-1][1])))
            continue
        for j, part in enumerate(parts):
            state, detail = states.get(j, ("F", _stopped(result.exit_status, stderr_text, host)))
            if state == "F":
                failure = context.masker.mask(f"{part.summary}: {detail}")
                output.failed_command = context.masker.mask(part.command)
                break
            if state == "1" and part.judge is not None and not context.check:
                judged = _changed_when(part, output)  # a command that ran: did it change?
                if isinstance(judged, str):
                    failure = context.masker.mask(f"{part.summary}: {judged}")
                    output.failed_command = context.masker.mask(part.command)
                    break
                if not judged:
                    continue
            if state == "1":  # a part may say what it did instead (a removal, not a restore)
                changes.append(context.masker.mask(detail) if detail else part.summary)
        outcomes.append((changes, failure))
    return outcomes


def _changed_when(part: scripts.Part, output: TaskOutput) -> bool | str:
    """What the ``changed_when`` judge of ``part``, a command that ran and succeeded, says of
    its result (the tails of its stdout and stderr, masked): changed or not — or why it
    cannot tell (the task fails with it)."""
    assert part.judge is not None
    result = {
        "stdout": output.stream_tail("stdout"),
        "stderr": output.stream_tail("stderr"),
        "exit_status": 0,
    }
    try:
        return bool(part.judge(result))
    except ValueError as error:
        return str(error)


def _live_outputs(
    context: Context, count: int, task_ids: Sequence[str] | None
) -> list[dict[str, LiveLines] | None]:
    """Per segment, the live streams (``"stdout"``, ``"stderr"``) of its task's output
    (None: nobody listens)."""
    lives: list[dict[str, LiveLines] | None] = []
    for i in range(count):
        if context.output_of is not None and task_ids:
            to = context.output_of(task_ids[i])
        else:  # only the context's task has an output: a job of one segment
            to = context.output if count == 1 else None
        if to is None or to is NO_OUTPUT:
            lives.append(None)
            continue
        lives.append(
            {
                stream: LiveLines(context.masker, lambda text, to=to, s=stream: to(s, text))
                for stream in ("stdout", "stderr")
            }
        )
    return lives


def _tee(
    write: Callable[[bytes], None], live: dict[str, LiveLines] | None, stream: str
) -> Callable[[bytes], None]:
    """``write``, and the live ``stream`` too when there is one."""
    if live is None:
        return write
    also = live[stream].write

    def both(data: bytes) -> None:
        write(data)
        also(data)

    return both


def _sent_text(
    segments: Sequence[Sequence[scripts.Part]],
    shown: Sequence[str] | None,
    task_ids: Sequence[str] | None,
) -> str:
    """What a script does, for ``context.sent``: per segment ``shown[i]`` or its parts'
    summaries, each line under its task's id when the script has several."""
    texts = shown or ["\n".join(part.summary for part in parts) for parts in segments]
    if len(texts) == 1 or not task_ids:
        return "\n".join(texts)
    return "\n".join(
        f"{task_id}: {line}" for task_id, text in zip(task_ids, texts) for line in text.splitlines()
    )


def _stopped(exit_status: int, stderr: str, host: str) -> str:
    """Why a part did not report: the script (or the job wrapper around it, which could not
    keep the script and its input on the host: exit status 125) stopped before it."""
    from fedi_run.engine.execute.jobs import EXIT_NO_START

    if exit_status == EXIT_NO_START:
        reasons = "; ".join(line.strip() for line in stderr.splitlines() if line.strip())
        return f"not run: the script could not start on {host}: {reasons or 'failed'}"
    return f"the script stopped before it (exit status {exit_status}) {stderr.strip()}".strip()


def run_parts(
    parts: Sequence[scripts.Part], context: Context, connection: HostConnection
) -> list[str]:
    """Run ``parts`` as one segment of the context's task, its output into the task's; the
    changes, or the failure raised (:class:`OperationFailed`, with the output's tail)."""
    output = context.task_output()
    [(changes, failure)] = run_segments([parts], context, connection, context.timeout, [output])
    if failure:
        raise OperationFailed(failure, changes, output.tail(), output.cut(), output.failed_command)
    return changes
