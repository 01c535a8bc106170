"""Carrying out a task's operations on its host: compare, change only what differs, report.

:func:`perform` runs a task's operations in order and returns an :class:`Outcome`. The
file-like operations and guarded commands of a task (File, Directory, Secret, Command) are
compiled into ONE shell script, run in one round trip (``engine.execute.script_runner``); the
contents of files and secrets go to it on stdin — a secret is never on a command line. Each
operation's part of the script prints a marker line saying whether it changed something, so
``changed`` is honest and ``--check`` runs the same comparisons without changing anything.
Files are written to a temporary name and renamed, so a target never holds a half-written
file. :func:`perform_batch` does the same for several tasks of one host in one round trip.

What every operation gets besides its own values is the :class:`~fedi_run.engine.execute
.context.Context` (``engine.execute.context``); the secret files a :class:`Call` function
moves go through ``engine.execute.secret_files``.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fedi_run.engine.errors import ActionFailed, OperationFailed
from fedi_run.engine.execute import scripts
from fedi_run.engine.execute import secret_generators as secrets
from fedi_run.engine.execute.context import CallResult, Context
from fedi_run.engine.execute.jobs import Jobs
from fedi_run.engine.execute.local_command import run_local_command
from fedi_run.engine.execute.script_runner import run_segments
from fedi_run.engine.execute.secret_files import place_secret_files
from fedi_run.engine.model import layout
from fedi_run.engine.planning.operations import (
    Call,
    ChangedWhen,
    Command,
    Directory,
    Fetch,
    File,
    LocalCommand,
    Operation,
    Restore,
    Secret,
    Template,
)
from fedi_run.engine.report.events import OutputCut
from fedi_run.engine.report.output_log import TaskOutput

SCRIPTABLE = (File, Restore, Directory, Secret, Command, Template)


@dataclass(frozen=True)
class Outcome:
    """What a task's operations did: ``changes`` lists each change (empty: nothing changed);
    ``output`` the tail of their output and ``output_cut`` how it was cut (None: it is all of
    it); ``warnings`` what the operator should know although nothing failed."""

    changes: tuple[str, ...]
    output: str
    diff: str = ""
    warnings: tuple[str, ...] = ()
    output_cut: OutputCut | None = None


def _template_content(op: Template) -> str:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(op.package, "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    try:
        return environment.get_template(op.template).render(dict(op.context))
    except jinja2.TemplateError as error:
        line = getattr(error, "lineno", None)
        where = f"{op.package}/templates/{op.template}" + (f", line {line}" if line else "")
        raise ActionFailed(f"template {where}: {error}") from None


def _originals(context: Context, task_id: str | None) -> dict[str, str | None]:
    """Where the run's deployment keeps the originals of the files it changes on the host (its
    own directory: ``layout.originals_root``), and — when the task ran on this host in an
    earlier run, so it may have kept one there before each deployment had its own — the
    shared directory of earlier versions (``layout.LEGACY_ORIGINALS``)."""
    playbook = context.playbook
    if playbook is None:
        return {}
    task_id = task_id or getattr(context.task, "id", None)
    host = getattr(context.connection, "name", None)
    trace = playbook.history.get(task_id) if task_id else None
    legacy = trace is not None and trace.host == host
    return {
        "originals": layout.originals_root(playbook.name),
        "legacy": layout.LEGACY_ORIGINALS if legacy else None,
    }


def _part(pid: str, op: Operation, context: Context, task_id: str | None = None) -> scripts.Part:
    if isinstance(op, File):
        if not op.present:
            return scripts.absent_part(pid, op.path, f"removed {op.path}")
        return scripts.file_part(
            pid,
            op.path,
            op.content.encode(),
            op.mode,
            op.owner,
            f"file {op.path} (mode {scripts.mode_text(op.mode)})",
            **_originals(context, task_id),
        )
    if isinstance(op, Template):
        return scripts.file_part(
            pid,
            op.path,
            _template_content(op).encode(),
            op.mode,
            None,
            f"template {op.template} -> {op.path}",
            **_originals(context, task_id),
        )
    if isinstance(op, Restore):
        return scripts.restore_part(
            pid,
            op.path,
            digest=op.digest,
            shared_root=layout.HOST_ROOT if context.playbook is not None else None,
            **_originals(context, task_id),
        )
    if isinstance(op, Directory):
        if op.present:
            return scripts.directory_part(pid, op.path, op.mode, op.owner)
        if op.recursive:
            return scripts.absent_part(pid, op.path, f"removed directory {op.path}")
        return scripts.empty_directory_absent_part(pid, op.path)
    if isinstance(op, Secret):
        mode = scripts.mode_text(op.mode)
        restored = context.restore.get(op.path)
        if restored is not None:  # its exact value, also in --check (to compare)
            context.masker.add(restored)
            return scripts.secret_part(
                pid,
                op.path,
                restored.encode(),
                op.mode,
                keep=False,
                summary=f"secret {op.path} restored from its backup (mode {mode})",
            )
        value = b""
        if not context.check:
            generated = secrets.generate(op.generate, context.secret_generators)
            if not generated:
                raise ActionFailed(f"secret {op.path}: the generator {op.generate!r} made nothing")
            context.masker.add(generated)
            value = generated.encode()
        rotate = context.rotates(op.path)
        return scripts.secret_part(
            pid,
            op.path,
            value,
            op.mode,
            keep=not rotate,
            summary=f"secret {op.path} ({op.generate}, mode {mode})"
            + (": generated anew (--rotate-secrets)" if rotate else ""),
        )
    assert isinstance(op, Command)
    return scripts.command_part(
        pid,
        op.run,
        op.creates,
        op.unless,
        env=op.env,
        changed=op.changed_when is not False,
        judge=op.changed_when.judge if isinstance(op.changed_when, ChangedWhen) else None,
    )


def _shown(ops: Sequence[Operation], parts: Sequence[scripts.Part]) -> str:
    """What ``ops`` do, one line each: a command's whole text (and its guards), else its
    part's summary (a path, a mode: never a content)."""
    lines = []
    for op, part in zip(ops, parts):
        if isinstance(op, Command):
            guards = "".join(
                f" [{name}: {value}]"
                for name, value in (("creates", op.creates), ("unless", op.unless))
                if value
            )
            lines.append(f"run: {op.run.strip()}{guards}")
        else:
            lines.append(part.summary)
    return "\n".join(lines)


def _run_script(
    ops: Sequence[tuple[int, Operation]],
    context: Context,
    output: TaskOutput,
    jobs: Jobs | None = None,
) -> list[str]:
    """Run the scriptable ``ops`` in one round trip, their output into ``output``; the changes."""
    assert context.connection is not None
    parts = [_part(f"0.{j}", op, context) for j, (_, op) in enumerate(ops)]
    task_id = getattr(context.task, "id", None)
    [(changes, failure)] = run_segments(
        [parts],
        context,
        context.connection,
        context.timeout,
        [output],
        jobs,
        [task_id] if task_id else None,
        [_shown([op for _, op in ops], parts)],
    )
    if failure:
        raise OperationFailed(failure, changes, "", command=output.failed_command)
    return changes


def _diff(op: File | Template, context: Context) -> str:
    assert context.connection is not None
    new = op.content if isinstance(op, File) else _template_content(op)
    old_result = context.connection.run(
        f"cat {shlex.quote(op.path)} 2>/dev/null", timeout=context.timeout
    )
    old = old_result.stdout.decode("utf-8", "replace") if old_result.exit_status == 0 else ""
    lines = difflib.unified_diff(
        old.splitlines(True), new.splitlines(True), f"a{op.path}", f"b{op.path}"
    )
    return context.masker.mask("".join(lines))


def _fetch(op: Fetch, context: Context) -> list[str]:
    assert context.connection is not None
    data = context.connection.get(op.remote)
    local = Path(op.local)
    if local.exists() and local.read_bytes() == data:
        return []
    if not context.check:
        local.parent.mkdir(parents=True, exist_ok=True)
        temporary = local.with_name(local.name + ".fedi-run.tmp")
        temporary.write_bytes(data)
        temporary.replace(local)
    return [f"fetched {op.remote} -> {op.local}"]


def _call(op: Call, context: Context) -> CallResult:
    restored = {path: context.restore[path] for path in op.generates if path in context.restore}
    placed: list[str] = []
    if restored and context.connection is not None:  # in place before the function looks
        placed = [
            change.replace("secret ", "secret restored from its backup: ", 1)
            for change in place_secret_files(context, context.connection, restored)
        ]
    result = op.function(context, **dict(op.kwargs))
    if placed:
        result = _call_result(result, op)
        return CallResult((*placed, *result.changes), result.warnings)
    return _call_result(result, op)


def _call_result(result: object, op: Call) -> CallResult:
    if isinstance(result, CallResult):
        return result
    if isinstance(result, bool):
        return CallResult((op.name,) if result else ())
    return CallResult(tuple(result or ()))


def perform(operations: Sequence[Operation], context: Context, jobs: Jobs | None = None) -> Outcome:
    """Carry out ``operations`` in order; raises :class:`ActionFailed` (with what changed
    before the failure as ``.changes``, and the output's tail as ``.output``, cut as
    ``.output_cut`` says) when one fails.
    The whole output goes to the run's log (:meth:`Context.task_output`). ``jobs``: the run's
    (``engine.execute.jobs``): the pid files its scripts keep on the host, the local processes
    it may stop."""
    changes: list[str] = []
    diffs: list[str] = []
    warnings: list[str] = []
    batch: list[tuple[int, Operation]] = []
    output = context.task_output()

    def flush() -> None:
        if batch:
            changes.extend(_run_script(batch, context, output, jobs))
            batch.clear()

    try:
        for index, op in enumerate(operations):
            if isinstance(op, SCRIPTABLE):
                if (
                    context.diff
                    and isinstance(op, (File, Template))
                    and getattr(op, "present", True)
                ):
                    flush()
                    diffs.append(_diff(op, context))
                batch.append((index, op))
                continue
            flush()
            if isinstance(op, Fetch):
                changes.extend(_fetch(op, context))
            elif isinstance(op, LocalCommand):
                changes.extend(run_local_command(op, context, output, jobs))
            elif isinstance(op, Call):
                result = _call(op, context)
                changes.extend(result.changes)
                warnings.extend(result.warnings)
            else:  # pragma: no cover - every Operation is handled above
                raise ActionFailed(f"unknown operation {op!r}")
        flush()
    except OperationFailed as failure:
        failure.changes = changes + failure.changes
        failure.output, failure.output_cut = output.tail(), output.cut()
        _failed(failure, output)
        raise
    finally:
        output.close()
    return Outcome(tuple(changes), output.tail(), "".join(diffs), tuple(warnings), output.cut())


def _failed(failure: OperationFailed, output: TaskOutput) -> OperationFailed:
    """``failure`` with the failed command and the output's two streams of ``output``."""
    failure.command = failure.command or output.failed_command
    failure.stdout, failure.stderr = output.stream_tail("stdout"), output.stream_tail("stderr")
    return failure


def batchable(operations: Sequence[Operation]) -> bool:
    """Whether ``operations`` can share one script with other tasks' (file-like and guarded
    commands only)."""
    return all(isinstance(op, SCRIPTABLE) for op in operations)


def perform_batch(
    tasks: Sequence[Sequence[Operation]],
    context: Context,
    task_ids: Sequence[str] | None = None,
    jobs: Jobs | None = None,
) -> list[Outcome | ActionFailed]:
    """Carry out several tasks' operations (each :func:`batchable`) on one host in ONE round
    trip, one segment per task: a task's failure ends that task only. Returns, per task, its
    :class:`Outcome` or the :class:`ActionFailed` that ended it. ``task_ids`` name each task's
    output log (and, with ``jobs``, its pid file on the host)."""
    assert context.connection is not None
    segments = [
        [
            _part(f"{i}.{j}", op, context, task_ids[i] if task_ids else None)
            for j, op in enumerate(ops)
        ]
        for i, ops in enumerate(tasks)
    ]
    ids = list(task_ids) if task_ids is not None else [f"task-{i}" for i in range(len(tasks))]
    outputs = [context.task_output(task_id) for task_id in ids]
    results: list[Outcome | ActionFailed] = []
    for (changes, failure), output in zip(
        run_segments(
            segments,
            context,
            context.connection,
            context.timeout,
            outputs,
            jobs,
            task_ids,
            [_shown(ops, parts) for ops, parts in zip(tasks, segments)],
        ),
        outputs,
    ):
        results.append(
            _failed(OperationFailed(failure, changes, output.tail(), output.cut()), output)
            if failure
            else Outcome(tuple(changes), output.tail(), output_cut=output.cut())
        )
    return results
