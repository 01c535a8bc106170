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
import codecs
import difflib
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedi_run.engine.errors import ActionFailed, OperationFailed
from fedi_run.engine.execute import jobs as jobs_module
from fedi_run.engine.execute import scripts
from fedi_run.engine.execute import secret_generators as secrets
from fedi_run.engine.execute.connection import HostConnection
from fedi_run.engine.execute.jobs import Jobs, pid_file_name, wait_output
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
from fedi_run.engine.report.live_lines import LiveLines
from fedi_run.engine.report.masking import Masker
from fedi_run.engine.report.output_log import TaskOutput

SCRIPTABLE = (File, Restore, Directory, Secret, Command, Template)


def _NO_OUTPUT(stream: str, text: str) -> None:  # noqa: N802 - a constant, as a default
    """The default ``Context.output``: nobody listens."""


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
      it before any sink sees it); ``output_of(task_id)``: that of another task of the job (a
      batch's), None: only the context's task has one. The scripts this module sends stream
      their output through them as it comes (``engine.report.live_lines``);
    * ``sent(text)``: told what each script this module sends to the host does, one line
      per operation (a command's text, a file's path: never a content) — ``-vv`` shows it;
    * ``state_dir``: the deployer's private directory for this deployment's state (0700);
    * ``secret_generators``: name → generator of every :class:`Secret` the run may make — the
      engine's generic ones and the plugins' (``Project.secret_generators``);
    * ``rotates(path)``: whether the run generates the secret at ``path`` anew on purpose
      (``--rotate-secrets``: ``rotate_secrets`` all of them, ``rotate_paths`` those named);
      ``restore``: path → the value ``--restore-secret`` puts back (a restored file is in
      place before a :class:`Call` that ``generates`` it runs).

    A :class:`Call` function is ``function(context, **kwargs)`` and returns whether it changed
    something (``bool``) or the list of what it changed (empty: nothing); it raises
    :class:`ActionFailed` with a one-line message naming what failed.
    """

    connection: HostConnection | None
    masker: Masker
    check: bool = False
    diff: bool = False
    rotate_secrets: bool = False
    """``--rotate-secrets all``: every secret is generated anew."""
    timeout: float | None = None
    output: Callable[[str, str], None] = _NO_OUTPUT
    output_of: Callable[[str], Callable[[str, str], None]] | None = None
    """task id → the ``output`` of that task of the job (None: only ``output``)."""
    sent: Callable[[str], None] = lambda text: None
    """Told what each script sent to the host does (``-vv``); see above."""
    playbook: Any = None
    task: Any = None
    pool: Any = None
    state_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    log: Any = None
    """The run's :class:`~fedi_run.engine.report.output_log.OutputLog` (None: tails only, no
    file)."""
    secret_generators: Mapping[str, Callable[[], str]] = field(
        default_factory=lambda: secrets.GENERIC
    )
    """The run's secret generators (default: only the engine's generic ones)."""
    rotate_paths: frozenset[str] = frozenset()
    """The secrets ``--rotate-secrets NAME`` generates anew."""
    restore: Mapping[str, str] = field(default_factory=dict, repr=False)
    """path → the value ``--restore-secret`` puts back (never shown)."""

    def rotates(self, path: str) -> bool:
        """Whether the secret at ``path`` is generated anew on purpose in this run."""
        return self.rotate_secrets or path in self.rotate_paths

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
    ``output`` the tail of their output and ``output_cut`` how it was cut (None: it is all of
    it); ``warnings`` what the operator should know although nothing failed."""

    changes: tuple[str, ...]
    output: str
    diff: str = ""
    warnings: tuple[str, ...] = ()
    output_cut: OutputCut | None = None


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


STDERR_TAIL = 4096
"""Bytes of a script's own stderr (outside its segments, which merge theirs) kept."""


def _run_segments(
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
        if to is None or to is _NO_OUTPUT:
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


def _stopped(exit_status: int, stderr: str, host: str) -> str:
    """Why a part did not report: the script (or the job wrapper around it, which could not
    keep the script and its input on the host: exit status 125) stopped before it."""
    from fedi_run.engine.execute.jobs import EXIT_NO_START

    if exit_status == EXIT_NO_START:
        reasons = "; ".join(line.strip() for line in stderr.splitlines() if line.strip())
        return f"not run: the script could not start on {host}: {reasons or 'failed'}"
    return f"the script stopped before it (exit status {exit_status}) {stderr.strip()}".strip()


def _run_parts(
    parts: Sequence[scripts.Part], context: Context, connection: HostConnection
) -> list[str]:
    output = context.task_output()
    [(changes, failure)] = _run_segments([parts], context, connection, context.timeout, [output])
    if failure:
        raise OperationFailed(failure, changes, output.tail(), output.cut(), output.failed_command)
    return changes


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
    [(changes, failure)] = _run_segments(
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


def _local_command(
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
                changes.extend(_local_command(op, context, output, jobs))
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
        _run_segments(
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
