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
import hashlib
import importlib
import re
import secrets as random
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedi_run.engine import secrets
from fedi_run.engine.connection import HostConnection
from fedi_run.engine.masking import Masker
from fedi_run.engine.operations import (
    Call, Command, Directory, Fetch, File, LocalCommand, Operation, Restore, Secret, Template,
)

OUTPUT_LIMIT = 64 * 1024
"""Bytes of a task's output kept in memory for its report (the tail)."""
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
    * ``output(stream, text)``: stream a long-running program's output (masked by the caller);
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


def _secret_value_part(index: int, path: str, value: bytes, mode: int) -> _Part:
    q = shlex.quote(path)
    digest = hashlib.sha256(value).hexdigest()
    shell = (
        f"f={q}; t=\"$f.fedi-run.$$\"; c=0; "
        f'cur=$(sha256sum "$f" 2>/dev/null); cur=${{cur%% *}}; '
        f'if [ "$cur" = {digest} ] || [ "$k" = 1 ]; then [ "$cur" = {digest} ] || c=1; head -c {len(value)} >/dev/null; '
        f'else c=1; mkdir -p -m 700 "${{f%/*}}" && (umask 077; head -c {len(value)} >"$t") && chmod {_mode(mode)} "$t" && mv -f "$t" "$f" '
        f'|| {{ rm -f "$t"; fail {index} "cannot write the secret $f"; }}; fi; '
        f'if [ -e "$f" ] && [ "$(stat -c %a "$f")" != {_mode(mode)} ]; then c=1; [ "$k" = 1 ] || chmod {_mode(mode)} "$f"; fi; '
        f"done_ {index} $c"
    )
    return _Part(shell, value, f"secret {path} (mode {_mode(mode)})")


def place_secret_files(context: Context, connection: HostConnection, files: dict[str, str], mode: int = 0o400) -> list[str]:
    """Make each of ``files`` (path → secret value) exist on ``connection``'s host with that
    exact value and ``mode`` (its directory created 0700), in one round trip, values on stdin.
    The values are added to the masker first. Returns what changed (or would, in check mode)."""
    for value in files.values():
        context.masker.add(value)
    parts = [(i, _secret_value_part(i, path, value.encode(), mode)) for i, (path, value) in enumerate(files.items())]
    return _run_parts(parts, context, connection)


def read_secret_files(context: Context, connection: HostConnection, paths: Sequence[str]) -> dict[str, str]:
    """The content of each of ``paths`` that exists on the host (path → text, one round trip),
    each added to the masker before it is returned."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    script = f'for f in {quoted}; do if [ -f "$f" ]; then printf %s "$f" | base64 -w0; printf " "; base64 -w0 < "$f"; echo; fi; done; true'
    result = connection.run(script, timeout=context.timeout)
    found = {}
    for line in result.stdout.decode().splitlines():
        name, _, value = line.partition(" ")
        text = base64.b64decode(value).decode("utf-8", "replace")
        context.masker.add(text)
        found[base64.b64decode(name).decode()] = text
    return found


@dataclass(frozen=True)
class _Part:
    shell: str
    payload: bytes
    summary: str


def _mode(mode: int) -> str:
    return format(mode, "o")


ORIGINALS = "/var/lib/fedi-run/originals"
"""Where a file is kept, on its host, from before fedi-run first changed it, for the undo."""


def _file_part(index: int, path: str, content: bytes, mode: int, owner: str | None, summary: str) -> _Part:
    q = shlex.quote(path)
    digest = hashlib.sha256(content).hexdigest()
    size = len(content)
    wanted_owner = shlex.quote(owner) if owner else ""
    owner_differs = f' || [ "$(stat -c %U "$f")" != {wanted_owner} ]' if owner else ""
    shell = (
        f"f={q}; t=\"$f.fedi-run.$$\"; o={shlex.quote(ORIGINALS)}{q}; c=0; "
        f'if [ -d "$f" ]; then head -c {size} >/dev/null; fail {index} "is a directory"; fi; '
        f'cur=$(sha256sum "$f" 2>/dev/null); cur=${{cur%% *}}; '
        f'if [ "$cur" != {digest} ]; then c=1; elif [ "$(stat -c %a "$f")" != {_mode(mode)} ]{owner_differs}; then c=2; fi; '
        f'if [ $c = 0 ] || [ "$k" = 1 ]; then head -c {size} >/dev/null; else '
        f'if [ -e "$f" ] && [ ! -e "$o" ]; then mkdir -p "${{o%/*}}" && cp -p "$f" "$o" || fail {index} "cannot keep the original of $f"; fi; '
        f'if [ $c = 1 ]; then {{ head -c {size} >"$t" && chmod {_mode(mode)} "$t" '
        + (f'&& chown {wanted_owner} "$t" ' if owner else "")
        + f'&& mv -f "$t" "$f"; }} || {{ rm -f "$t"; fail {index} "cannot write $f"; }}; '
        f'else head -c {size} >/dev/null; chmod {_mode(mode)} "$f" '
        + (f'&& chown {wanted_owner} "$f" ' if owner else "")
        + f'|| fail {index} "cannot set the mode or owner of $f"; fi; fi; '
        f"[ $c = 0 ] || c=1; done_ {index} $c"
    )
    return _Part(shell, content, summary)


def _restore_part(index: int, path: str) -> _Part:
    q = shlex.quote(path)
    shell = (
        f"f={q}; o={shlex.quote(ORIGINALS)}{q}; c=0; "
        f'if [ -e "$o" ]; then c=1; [ "$k" = 1 ] || {{ mv -f "$o" "$f" && '
        f'rmdir -p --ignore-fail-on-non-empty "${{o%/*}}" 2>/dev/null; true; }}; '
        f'elif [ -e "$f" ] || [ -L "$f" ]; then c=1; [ "$k" = 1 ] || rm -f -- "$f" || fail {index} "cannot remove $f"; fi; '
        f"done_ {index} $c"
    )
    return _Part(shell, b"", f"restored {path}")


def _absent_part(index: int, path: str, summary: str) -> _Part:
    q = shlex.quote(path)
    shell = (
        f"c=0; if [ -e {q} ] || [ -L {q} ]; then c=1; "
        f"[ \"$k\" = 1 ] || rm -rf -- {q} || fail {index} 'cannot remove'; fi; done_ {index} $c"
    )
    return _Part(shell, b"", summary)


def _directory_part(index: int, op: Directory) -> _Part:
    if not op.present and op.recursive:
        return _absent_part(index, op.path, f"removed directory {op.path}")
    if not op.present:
        q = shlex.quote(op.path)
        shell = f"c=0; if [ -d {q} ] && [ -z \"$(ls -A {q})\" ]; then c=1; [ \"$k\" = 1 ] || rmdir {q} || fail {index} 'cannot remove'; fi; done_ {index} $c"
        return _Part(shell, b"", f"removed empty directory {op.path}")
    q = shlex.quote(op.path)
    mode = _mode(op.mode)
    shell = (
        f"c=0; if [ ! -d {q} ]; then c=1; [ \"$k\" = 1 ] || mkdir -p -m {mode} {q} || fail {index} 'cannot create'; fi; "
        f"if [ -d {q} ] && [ \"$(stat -c %a {q})\" != {mode} ]; then c=1; [ \"$k\" = 1 ] || chmod {mode} {q}; fi; "
    )
    if op.owner:
        o = shlex.quote(op.owner)
        shell += f"if [ -d {q} ] && [ \"$(stat -c %U {q})\" != {o} ]; then c=1; [ \"$k\" = 1 ] || chown {o} {q}; fi; "
    return _Part(shell + f"done_ {index} $c", b"", f"directory {op.path} (mode {mode})")


def _secret_part(index: int, op: Secret, context: Context) -> _Part:
    value = b""
    if not context.check:
        generated = secrets.generate(op.generate)
        context.masker.add(generated)
        value = generated.encode()
    q = shlex.quote(op.path)
    mode = _mode(op.mode)
    keep = "" if context.rotate_secrets else f'if [ -e {q} ]; then head -c {len(value)} >/dev/null; '
    shell = (
        f"f={q}; t=\"$f.fedi-run.$$\"; c=0; "
        + (keep + "else " if keep else "if true; then ")
        + f'c=1; if [ "$k" = 1 ]; then head -c {len(value)} >/dev/null; '
        f'else (umask 077; head -c {len(value)} >"$t") && chmod {mode} "$t" && mv -f "$t" "$f" '
        f'|| {{ rm -f "$t"; fail {index} "cannot write the secret $f"; }}; fi; fi; '
        f'if [ -e "$f" ] && [ "$(stat -c %a "$f")" != {mode} ]; then c=1; [ "$k" = 1 ] || chmod {mode} "$f"; fi; '
        f"done_ {index} $c"
    )
    return _Part(shell, value, f"secret {op.path} ({op.generate}, mode {mode})")


def _command_part(index: int, op: Command) -> _Part:
    guards = []
    if op.creates:
        guards.append(f"[ -e {shlex.quote(op.creates)} ]")
    if op.unless:
        guards.append(f"( {op.unless}\n) >/dev/null 2>&1 </dev/null")
    guard = f"if {' || '.join(guards)}; then c=0; else c=1; fi; " if guards else "c=1; "
    shell = (
        guard
        + f'if [ $c = 1 ] && [ "$k" != 1 ]; then ( {op.run}\n) </dev/null; rc=$?; '
        f'[ $rc = 0 ] || fail {index} "exited with status $rc"; fi; done_ {index} $c'
    )
    first = op.run.strip().splitlines()[0] if op.run.strip() else ""
    return _Part(shell, b"", f"ran: {first[:120]}")


def _template_content(op: Template) -> str:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(op.package, "templates"),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
    )
    try:
        return environment.get_template(op.template).render(dict(op.context))
    except jinja2.TemplateError as error:
        line = getattr(error, "lineno", None)
        where = f"{op.package}/templates/{op.template}" + (f", line {line}" if line else "")
        raise ActionFailed(f"template {where}: {error}") from None


def _part(index: int, op: Operation, context: Context) -> _Part:
    if isinstance(op, File):
        if not op.present:
            return _absent_part(index, op.path, f"removed {op.path}")
        return _file_part(index, op.path, op.content.encode(), op.mode, op.owner, f"file {op.path} (mode {_mode(op.mode)})")
    if isinstance(op, Template):
        return _file_part(index, op.path, _template_content(op).encode(), op.mode, None, f"template {op.template} -> {op.path}")
    if isinstance(op, Restore):
        return _restore_part(index, op.path)
    if isinstance(op, Directory):
        return _directory_part(index, op)
    if isinstance(op, Secret):
        return _secret_part(index, op, context)
    assert isinstance(op, Command)
    return _command_part(index, op)


PRELUDE = (
    "M={marker}; k={check}; "
    "done_() {{ printf '\\n%s %s %s\\n' \"$M\" \"$1\" \"$2\"; }}; "
    "fail() {{ printf '\\n%s %s F %s\\n' \"$M\" \"$1\" \"$2\"; exit 1; }}; "
)


def _run_script(ops: Sequence[tuple[int, Operation]], context: Context) -> tuple[list[str], str]:
    """Run the scriptable ``ops`` in one round trip; the changes and the output."""
    assert context.connection is not None
    parts = [(index, _part(index, op, context)) for index, op in ops]
    return _run_parts_with_output(parts, context, context.connection)


def _run_parts(parts: Sequence[tuple[int, _Part]], context: Context, connection: HostConnection) -> list[str]:
    return _run_parts_with_output(parts, context, connection)[0]


def _run_parts_with_output(parts: Sequence[tuple[int, _Part]], context: Context, connection: HostConnection) -> tuple[list[str], str]:
    marker = "@@fedi-" + random.token_hex(8)
    script = PRELUDE.format(marker=marker, check=1 if context.check else 0) + "\n".join(p.shell for _, p in parts)
    payload = b"".join(p.payload for _, p in parts)
    result = connection.run(script, input=payload or None, timeout=context.timeout)
    stdout = result.stdout.decode("utf-8", "replace")
    reports = {}
    pattern = re.compile(r"\n" + re.escape(marker) + r" (\d+) (\S+)(?: (.*))?\n")
    for match in pattern.finditer(stdout):
        reports[int(match[1])] = (match[2], match[3] or "")
    output = pattern.sub("", stdout) + result.stderr.decode("utf-8", "replace")
    output = context.masker.mask(output)
    changes = []
    for index, part in parts:
        state, detail = reports.get(index, ("F", f"exited with status {result.exit_status} before reporting"))
        if state == "F":
            raise _Failed(context.masker.mask(f"{part.summary}: {detail}"), changes, output)
        if state == "1":
            changes.append(part.summary)
    if result.exit_status != 0:
        raise _Failed(f"exited with status {result.exit_status}", changes, output)
    return changes, output


class _Failed(ActionFailed):
    def __init__(self, message: str, changes: list[str], output: str):
        super().__init__(message)
        self.changes = changes
        self.output = output


def _diff(op: File | Template, context: Context) -> str:
    assert context.connection is not None
    new = op.content if isinstance(op, File) else _template_content(op)
    old_result = context.connection.run(f"cat {shlex.quote(op.path)} 2>/dev/null", timeout=context.timeout)
    old = old_result.stdout.decode("utf-8", "replace") if old_result.exit_status == 0 else ""
    lines = difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a{op.path}", f"b{op.path}")
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


def _local_command(op: LocalCommand, context: Context) -> tuple[list[str], str]:
    if context.check:
        return [f"would run: {' '.join(op.argv)}"], ""
    if op.cwd:
        Path(op.cwd).mkdir(mode=0o700, parents=True, exist_ok=True)
    tail: list[str] = []
    size = 0
    try:
        process = subprocess.Popen(op.argv, cwd=op.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace")
    except OSError as error:
        raise _Failed(f"cannot run {op.argv[0]}: {error.strerror or error}", [], "") from None
    assert process.stdout is not None
    for line in process.stdout:
        line = context.masker.mask(line)
        context.output("stdout", line)
        tail.append(line)
        size += len(line)
        while size > OUTPUT_LIMIT and len(tail) > 1:
            size -= len(tail.pop(0))
    status = process.wait()
    output = "".join(tail)
    if status != 0:
        raise _Failed(f"{' '.join(op.argv)} exited with status {status}", [], output)
    return [f"ran: {' '.join(op.argv)}"], output


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
    before the failure as ``.changes``) when one fails."""
    changes: list[str] = []
    outputs: list[str] = []
    diffs: list[str] = []
    warnings: list[str] = []
    batch: list[tuple[int, Operation]] = []

    def flush() -> None:
        if batch:
            done, output = _run_script(batch, context)
            changes.extend(done)
            outputs.append(output)
            batch.clear()

    try:
        for index, op in enumerate(operations):
            if isinstance(op, SCRIPTABLE):
                if context.diff and isinstance(op, (File, Template)) and getattr(op, "present", True):
                    flush()
                    diffs.append(_diff(op, context))
                batch.append((index, op))
                continue
            flush()
            if isinstance(op, Fetch):
                changes.extend(_fetch(op, context))
            elif isinstance(op, LocalCommand):
                done, output = _local_command(op, context)
                changes.extend(done)
                outputs.append(output)
            elif isinstance(op, Call):
                result = _call(op, context)
                changes.extend(result.changes)
                warnings.extend(result.warnings)
            else:  # pragma: no cover - every Operation is handled above
                raise ActionFailed(f"unknown operation {op!r}")
        flush()
    except _Failed as failure:
        failure.changes = changes + failure.changes
        failure.output = "".join(outputs) + failure.output
        raise
    return Outcome(tuple(changes), "".join(outputs)[-OUTPUT_LIMIT:], "".join(diffs), tuple(warnings))
