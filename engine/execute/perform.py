"""Carrying out a task's operations on its host: compare, change only what differs, report.

:func:`perform` runs a task's operations in order and returns an :class:`Outcome`. The
file-like operations and guarded commands of a task (File, Directory, Secret, Command) are
compiled into ONE shell script, run in one round trip; the contents of files and secrets go to
it on stdin — a secret is never on a command line. Each operation's part of the script prints a
marker line saying whether it changed something, so ``changed`` is honest and ``--check`` runs
the same comparisons without changing anything. Files are written to a temporary name and
renamed, so a target never holds a half-written file.
"""

from __future__ import annotations

import base64
import difflib
import importlib
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedi_run.engine.execute import scripts
from fedi_run.engine.execute import secret_generators as secrets
from fedi_run.engine.execute.connection import HostConnection
from fedi_run.engine.planning.operations import (
    Call,
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
from fedi_run.engine.report.masking import Masker
from fedi_run.engine.report.output_log import TaskOutput

SCRIPTABLE = (File, Restore, Directory, Secret, Command, Template)


class ActionFailed(Exception):
    """An operation failed; the message says which and why (already masked)."""


@dataclass
class Context:
    """What operations — and the plugin functions that :class:`Call` names — get besides their
    own values.

    * ``connection``: the task's host (``None`` for a deployer-local task); ``pool[name]`` any
      other host's connection;
    * ``playbook`` and ``task``: what is being run;
    * ``check``: change nothing, only report what would change; ``diff``: also return diffs;
    * ``masker``: every secret a function reads or makes must be ``masker.add``-ed before it
      could reach any output;
    * ``output(stream, text)``: stream a long-running program's output (the executor masks
      it before any sink sees it);
    * ``state_dir``: the deployer's private directory for this deployment's state (0700).

    A :class:`Call` function is ``function(context, **kwargs)`` and returns whether it changed
    something (``bool``) or the list of what it changed (empty: nothing); it raises
    :class:`ActionFailed` with a one-line message naming what failed.
    """

    connection: HostConnection | None
    masker: Masker
    check: bool = False
    diff: bool = False
    rotate_secrets: bool = False
    timeout: float | None = None
    output: Callable[[str, str], None] = lambda stream, text: None
    playbook: Any = None
    task: Any = None
    pool: Any = None
    state_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    log: Any = None
    """The run's :class:`~fedi_run.engine.report.output_log.OutputLog` (None: tails only, no
    file)."""

    def task_output(self, task_id: str | None = None) -> TaskOutput:
        """A :class:`TaskOutput` for ``task_id`` (default: this context's task): the task's
        output goes through it — to the run's log whole, to the report as a bounded tail."""
        task_id = task_id or getattr(self.task, "id", None) or "task"
        if self.log is None:
            return TaskOutput(None, self.masker)
        return self.log.task(task_id)


@dataclass(frozen=True)
class Outcome:
    """What a task's operations did: ``changes`` lists each change (empty: nothing changed);
    ``warnings`` what the operator should know although nothing failed."""

    changes: tuple[str, ...]
    output: str
    diff: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CallResult:
    """What a :class:`Call` function may return instead of a bool or a list of changes."""

    changes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def place_secret_files(
    context: Context, connection: HostConnection, files: dict[str, str], mode: int = 0o400
) -> list[str]:
    """Make each of ``files`` (path → secret value) exist on ``connection``'s host with that
    exact value and ``mode`` (its directory created 0700), in one round trip, values on stdin.
    The values are added to the masker first. Returns what changed (or would, in check mode)."""
    for value in files.values():
        context.masker.add(value)
    parts = [
        scripts.secret_part(
            f"0.{j}",
            path,
            value.encode(),
            mode,
            keep=False,
            summary=f"secret {path} (mode {scripts.mode_text(mode)})",
        )
        for j, (path, value) in enumerate(files.items())
    ]
    return _run_parts(parts, context, connection)


def read_secret_files(
    context: Context, connection: HostConnection, paths: Sequence[str]
) -> dict[str, str]:
    """The content of each of ``paths`` that exists on the host (path → text, one round trip),
    each added to the masker before it is returned."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    script = (
        f'for f in {quoted}; do if [ -f "$f" ]; then printf %s "$f" | base64 -w0; printf " "; '
        'base64 -w0 < "$f"; echo; fi; done; true'
    )
    result = connection.run(script, timeout=context.timeout)
    found = {}
    for line in result.stdout.decode().splitlines():
        name, _, value = line.partition(" ")
        text = base64.b64decode(value).decode("utf-8", "replace")
        context.masker.add(text)
        found[base64.b64decode(name).decode()] = text
    return found


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


def _part(pid: str, op: Operation, context: Context) -> scripts.Part:
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
        )
    if isinstance(op, Template):
        return scripts.file_part(
            pid,
            op.path,
            _template_content(op).encode(),
            op.mode,
            None,
            f"template {op.template} -> {op.path}",
        )
    if isinstance(op, Restore):
        return scripts.restore_part(pid, op.path)
    if isinstance(op, Directory):
        if op.present:
            return scripts.directory_part(pid, op.path, op.mode, op.owner)
        if op.recursive:
            return scripts.absent_part(pid, op.path, f"removed directory {op.path}")
        return scripts.empty_directory_absent_part(pid, op.path)
    if isinstance(op, Secret):
        value = b""
        if not context.check:
            generated = secrets.generate(op.generate)
            context.masker.add(generated)
            value = generated.encode()
        return scripts.secret_part(
            pid,
            op.path,
            value,
            op.mode,
            keep=not context.rotate_secrets,
            summary=f"secret {op.path} ({op.generate}, mode {scripts.mode_text(op.mode)})",
        )
    assert isinstance(op, Command)
    return scripts.command_part(pid, op.run, op.creates, op.unless)


STDERR_TAIL = 4096
"""Bytes of a script's own stderr (outside its segments, which merge theirs) kept."""


def _run_segments(
    segments: Sequence[Sequence[scripts.Part]],
    context: Context,
    connection: HostConnection,
    timeout: float | None,
    outputs: Sequence[TaskOutput],
) -> list[tuple[list[str], str | None]]:
    """Run the segments as one script, each segment's output streamed into ``outputs[i]``;
    per segment ``(changes, failure or None)``."""
    script = scripts.compile_script(segments, context.check, getattr(connection, "name", ""))
    reader = scripts.ReportReader(script.marker, [output.write for output in outputs])
    errors = bytearray()

    def stderr(data: bytes) -> None:
        errors.extend(data)
        if len(errors) > 2 * STDERR_TAIL:
            del errors[:-STDERR_TAIL]

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
    stderr_text = context.masker.mask(bytes(errors[-STDERR_TAIL:]).decode("utf-8", "replace"))
    outcomes = []
    for parts, states in zip(segments, reader.states):
        changes: list[str] = []
        failure = None
        for j, part in enumerate(parts):
            state, detail = states.get(
                j,
                (
                    "F",
                    (
                        f"the script stopped before it (exit status {result.exit_status}) "
                        f"{stderr_text.strip()}"
                    ).strip(),
                ),
            )
            if state == "F":
                failure = context.masker.mask(f"{part.summary}: {detail}")
                break
            if state == "1":
                changes.append(part.summary)
        outcomes.append((changes, failure))
    return outcomes


def _run_parts(
    parts: Sequence[scripts.Part], context: Context, connection: HostConnection
) -> list[str]:
    output = context.task_output()
    [(changes, failure)] = _run_segments([parts], context, connection, context.timeout, [output])
    if failure:
        raise _Failed(failure, changes, output.text())
    return changes


def _run_script(
    ops: Sequence[tuple[int, Operation]], context: Context, output: TaskOutput
) -> list[str]:
    """Run the scriptable ``ops`` in one round trip, their output into ``output``; the changes."""
    assert context.connection is not None
    parts = [_part(f"0.{j}", op, context) for j, (_, op) in enumerate(ops)]
    [(changes, failure)] = _run_segments(
        [parts], context, context.connection, context.timeout, [output]
    )
    if failure:
        raise _Failed(failure, changes, "")
    return changes


class _Failed(ActionFailed):
    def __init__(self, message: str, changes: list[str], output: str):
        super().__init__(message)
        self.changes = changes
        self.output = output


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


def _local_command(op: LocalCommand, context: Context, output: TaskOutput) -> list[str]:
    if context.check:
        return [f"would run: {' '.join(op.argv)}"]
    if op.cwd:
        Path(op.cwd).mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        process = subprocess.Popen(
            op.argv,
            cwd=op.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as error:
        raise _Failed(f"cannot run {op.argv[0]}: {error.strerror or error}", [], "") from None
    assert process.stdout is not None
    for line in process.stdout:
        output.write_text(line)
        context.output("stdout", line)
    status = process.wait()
    if status != 0:
        raise _Failed(f"{' '.join(op.argv)} exited with status {status}", [], "")
    return [f"ran: {' '.join(op.argv)}"]


def _call(op: Call, context: Context) -> CallResult:
    module_name, _, function_name = op.function.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise _Failed(f"cannot find {op.function}: {error}", [], "") from None
    result = function(context, **dict(op.kwargs))
    if isinstance(result, CallResult):
        return result
    if isinstance(result, bool):
        return CallResult((op.function,) if result else ())
    return CallResult(tuple(result or ()))


def perform(operations: Sequence[Operation], context: Context) -> Outcome:
    """Carry out ``operations`` in order; raises :class:`ActionFailed` (with what changed
    before the failure as ``.changes``, and the output's tail as ``.output``) when one fails.
    The whole output goes to the run's log (:meth:`Context.task_output`)."""
    changes: list[str] = []
    diffs: list[str] = []
    warnings: list[str] = []
    batch: list[tuple[int, Operation]] = []
    output = context.task_output()

    def flush() -> None:
        if batch:
            changes.extend(_run_script(batch, context, output))
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
                changes.extend(_local_command(op, context, output))
            elif isinstance(op, Call):
                result = _call(op, context)
                changes.extend(result.changes)
                warnings.extend(result.warnings)
            else:  # pragma: no cover - every Operation is handled above
                raise ActionFailed(f"unknown operation {op!r}")
        flush()
    except _Failed as failure:
        failure.changes = changes + failure.changes
        failure.output = output.text()
        raise
    finally:
        output.close()
    return Outcome(tuple(changes), output.text(), "".join(diffs), tuple(warnings))


def batchable(operations: Sequence[Operation]) -> bool:
    """Whether ``operations`` can share one script with other tasks' (file-like and guarded
    commands only)."""
    return all(isinstance(op, SCRIPTABLE) for op in operations)


def perform_batch(
    tasks: Sequence[Sequence[Operation]], context: Context, task_ids: Sequence[str] | None = None
) -> list[Outcome | ActionFailed]:
    """Carry out several tasks' operations (each :func:`batchable`) on one host in ONE round
    trip, one segment per task: a task's failure ends that task only. Returns, per task, its
    :class:`Outcome` or the :class:`ActionFailed` that ended it. ``task_ids`` name each task's
    output log."""
    assert context.connection is not None
    segments = [
        [_part(f"{i}.{j}", op, context) for j, op in enumerate(ops)] for i, ops in enumerate(tasks)
    ]
    ids = list(task_ids) if task_ids is not None else [f"task-{i}" for i in range(len(tasks))]
    outputs = [context.task_output(task_id) for task_id in ids]
    results: list[Outcome | ActionFailed] = []
    for (changes, failure), output in zip(
        _run_segments(segments, context, context.connection, context.timeout, outputs), outputs
    ):
        results.append(
            _Failed(failure, changes, output.text())
            if failure
            else Outcome(tuple(changes), output.text())
        )
    return results
