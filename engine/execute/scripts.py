"""Compiling operations into one POSIX shell script, run in one round trip, and reading its report.

A script holds one or more *segments* — one per task; several when the executor batches the
ready tasks of one host — each a list of *parts*, one per operation. Every part compares the
host's state with the desired one, changes only what differs (unless ``k=1``, check mode), and
prints a marker line ``<marker> <segment>.<part> <0|1|F> [why]``. A segment runs in a subshell
with its stderr merged into stdout, so a failing part ends its own task only, and output is
attributed to the task that printed it.

Contents (file contents, secret values) never appear in the script: they are sent on stdin,
which the script first splits into one file per part in a private directory (0700, on
``/dev/shm`` when the host has it), removed when the script ends. So the framing of stdin never
depends on which part ran or failed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass

ORIGINALS = "/var/lib/fedi-run/originals"
"""Where a file is kept, on its host, from before fedi-run first changed it, for the undo."""


@dataclass(frozen=True)
class Part:
    """One operation's shell code, the content it reads from its payload file, and the line
    that describes its change."""

    shell: str
    payload: bytes
    summary: str
    needs_dir: bool = False
    """Whether the part writes the error file ``$E`` in the private directory (file writes)."""


def mode_text(mode: int) -> str:
    """A mode as ``stat -c %a`` prints it (``644``, ``400``)."""
    return format(mode, "o")


def _src(pid: str) -> str:
    return f'"$d/{pid.replace(".", "_")}"'


def file_part(
    pid: str, path: str, content: bytes, mode: int, owner: str | None, summary: str
) -> Part:
    """The file ``path`` holds ``content`` with ``mode`` (and ``owner``); the first change of an
    existing file keeps the original under :data:`ORIGINALS`; written to a temporary name and
    renamed."""
    q = shlex.quote(path)
    digest = hashlib.sha256(content).hexdigest()
    m = mode_text(mode)
    src = _src(pid) if content else "/dev/null"
    chown = f'&& chown {shlex.quote(owner)} "$t" ' if owner else ""
    chown_in_place = f'&& chown {shlex.quote(owner)} "$f" ' if owner else ""
    owner_differs = f' || [ "$(stat -c %U "$f")" != {shlex.quote(owner)} ]' if owner else ""
    shell = (
        f'f={q}; t="$f.fedi-run.$$"; o={shlex.quote(ORIGINALS)}{q}; c=0; '
        f'if [ -d "$f" ]; then fail {pid} "$f is a directory"; fi; '
        f'cur=$({{ sha256sum <"$f"; }} 2>/dev/null); cur=${{cur%% *}}; '
        f'if [ "$cur" != {digest} ]; then c=1; '
        f'elif [ "$(stat -c %a "$f")" != {m} ]{owner_differs}; then c=2; fi; '
        f'if [ $c != 0 ] && [ "$k" != 1 ]; then '
        f'if [ -e "$f" ] && [ ! -e "$o" ]; then '
        f'{{ mkdir -p "${{o%/*}}" && cp -p "$f" "$o.fedi-run.$$" '
        f'&& mv -f "$o.fedi-run.$$" "$o"; }} 2>"$E" '
        f'|| {{ rm -f "$o.fedi-run.$$"; why; '
        f'fail {pid} "cannot keep the original of $f in $o on $H: $e"; }}; fi; '
        # the temporary file is created 0600 (umask 077): its content is never readable by
        # others before the chmod, whatever the host's umask
        # (a subshell that becomes cat: no process more than a plain cat)
        # a temporary file left by a run whose host died between write and rename goes first
        f'if [ $c = 1 ]; then {{ stale "$f" && (umask 077 && exec cat {src} >"$t") '
        f'&& chmod {m} "$t" {chown}&& mv -f "$t" "$f"; }} 2>"$E" '
        f'|| {{ rm -f "$t"; why; fail {pid} "cannot write $f on $H: $e"; }}; '
        f'else chmod {m} "$f" {chown_in_place}2>"$E" '
        f'|| {{ why; fail {pid} "cannot set the mode or owner of $f on $H: $e"; }}; fi; fi; '
        f"[ $c = 0 ] || c=1; done_ {pid} $c"
    )
    return Part(shell, content, summary, needs_dir=True)


def restore_part(pid: str, path: str) -> Part:
    """Put back the original of ``path`` kept by :func:`file_part`, or remove the file."""
    q = shlex.quote(path)
    shell = (
        f"f={q}; o={shlex.quote(ORIGINALS)}{q}; c=0; "
        f'if [ -e "$o" ]; then c=1; [ "$k" = 1 ] || {{ mv -f "$o" "$f" && '
        f'rmdir -p --ignore-fail-on-non-empty "${{o%/*}}" 2>/dev/null; true; }}; '
        f'elif [ -e "$f" ] || [ -L "$f" ]; then c=1; [ "$k" = 1 ] || rm -f -- "$f" 2>/dev/null '
        f'|| {{ e=$(rm -f -- "$f" 2>&1); fail {pid} "cannot remove $f on $H: ${{e##*: }}"; }}; fi; '
        f"done_ {pid} $c"
    )
    return Part(shell, b"", f"restored {path}")


def absent_part(pid: str, path: str, summary: str) -> Part:
    """``path`` does not exist (removed with what it holds)."""
    q = shlex.quote(path)
    shell = (
        f"c=0; if [ -e {q} ] || [ -L {q} ]; then c=1; "
        f'[ "$k" = 1 ] || rm -rf -- {q} 2>/dev/null '
        f"|| {{ e=$(rm -rf -- {q} 2>&1); "
        f'fail {pid} "cannot remove "{q}" on $H: ${{e##*: }}"; }}; fi; '
        f"done_ {pid} $c"
    )
    return Part(shell, b"", summary)


def empty_directory_absent_part(pid: str, path: str) -> Part:
    """The directory ``path`` is removed if it is empty (others may share it)."""
    q = shlex.quote(path)
    shell = (
        f'c=0; if [ -d {q} ] && [ -z "$(ls -A {q})" ]; then c=1; '
        f'[ "$k" = 1 ] || rmdir {q} 2>/dev/null '
        f'|| {{ e=$(rmdir {q} 2>&1); fail {pid} "cannot remove "{q}" on $H: ${{e##*: }}"; }}; fi; '
        f"done_ {pid} $c"
    )
    return Part(shell, b"", f"removed empty directory {path}")


def directory_part(pid: str, path: str, mode: int, owner: str | None) -> Part:
    """The directory ``path`` exists with ``mode`` (and ``owner``)."""
    q = shlex.quote(path)
    m = mode_text(mode)
    shell = (
        f'c=0; if [ ! -d {q} ]; then c=1; [ "$k" = 1 ] || mkdir -p -m {m} {q} 2>/dev/null || '
        f"{{ e=$(mkdir -p -m {m} {q} 2>&1); "
        f'fail {pid} "cannot create "{q}" on $H: ${{e##*: }}"; }}; fi; '
        f'if [ -d {q} ] && [ "$(stat -c %a {q})" != {m} ]; then c=1; '
        f'[ "$k" = 1 ] || chmod {m} {q} 2>/dev/null || '
        f"{{ e=$(chmod {m} {q} 2>&1); "
        f'fail {pid} "cannot set the mode of "{q}" on $H: ${{e##*: }}"; }}; fi; '
    )
    if owner:
        o = shlex.quote(owner)
        shell += (
            f'if [ -d {q} ] && [ "$(stat -c %U {q})" != {o} ]; then c=1; '
            f'[ "$k" = 1 ] || chown {o} {q}; fi; '
        )
    return Part(shell + f"done_ {pid} $c", b"", f"directory {path} (mode {m})")


def secret_part(pid: str, path: str, value: bytes, mode: int, keep: bool, summary: str) -> Part:
    """A secret at ``path`` with ``mode``: with ``keep``, an existing one is left as it is;
    otherwise it must hold exactly ``value``. Never on a command line: ``value`` is payload."""
    q = shlex.quote(path)
    m = mode_text(mode)
    digest = hashlib.sha256(value).hexdigest()
    differs = '[ ! -e "$f" ]' if keep else f'[ "$cur" != {digest} ]'
    shell = (
        f'f={q}; t="$f.fedi-run.$$"; c=0; '
        f'cur=$({{ sha256sum <"$f"; }} 2>/dev/null); cur=${{cur%% *}}; '
        f'if {differs}; then c=1; if [ "$k" != 1 ]; then '
        f'{{ mkdir -p -m 700 "${{f%/*}}" && stale "$f" && (umask 077; cat {_src(pid)} >"$t") '
        f'&& chmod {m} "$t" && mv -f "$t" "$f"; }} 2>"$E" '
        f'|| {{ rm -f "$t"; why; fail {pid} "cannot write the secret $f on $H: $e"; }}; fi; fi; '
        f'if [ -e "$f" ] && [ "$(stat -c %a "$f")" != {m} ]; then c=1; '
        f'[ "$k" = 1 ] || chmod {m} "$f"; fi; '
        f"done_ {pid} $c"
    )
    return Part(shell, value, summary, needs_dir=True)


def command_part(pid: str, run: str, creates: str | None, unless: str | None) -> Part:
    """Run ``run`` unless ``creates`` exists or ``unless`` succeeds; its output is the task's."""
    guards = []
    if creates:
        guards.append(f"[ -e {shlex.quote(creates)} ]")
    if unless:
        guards.append(f"( {unless}\n) >/dev/null 2>&1 </dev/null")
    guard = f"if {' || '.join(guards)}; then c=0; else c=1; fi; " if guards else "c=1; "
    shell = (
        guard + f'if [ $c = 1 ] && [ "$k" != 1 ]; then ( {run}\n) </dev/null; rc=$?; '
        f'[ $rc = 0 ] || fail {pid} "exited with status $rc"; fi; done_ {pid} $c'
    )
    first = run.strip().splitlines()[0] if run.strip() else ""
    return Part(shell, b"", f"ran: {first[:120]}")


PRELUDE = (
    "M={marker}; k={check}; E=/dev/null; H={host}\n"
    'done_() {{ printf \'\\n%s %s %s\\n\' "$M" "$1" "$2"; }}\n'
    'fail() {{ printf \'\\n%s %s F %s\\n\' "$M" "$1" "$2"; exit 1; }}\n'
    # why: $e is the reason in the first line of $E ("No space left on device"), no fork
    'why() {{ e=; [ -s "$E" ] && IFS= read -r e <"$E"; e=${{e##*: }}; e=${{e:-failed}}; }}\n'
    # stale: remove the temporary files ($1.fedi-run.<pid>) a run whose host died between write
    # and rename left; forks rm only when there is one
    'stale() {{ for _s in "$1".fedi-run.[0-9]*; do [ ! -e "$_s" ] || rm -f -- "$_s" || return 1; '
    "done; }}\n"
)
SPLIT = (
    "d=$(mktemp -d /dev/shm/fedi-run.XXXXXX 2>/dev/null || mktemp -d) || exit 1\n"
    'trap \'rm -rf "$d"\' EXIT; E="$d/e"\n'
)


@dataclass(frozen=True)
class Script:
    """A compiled script: its text (no secret in it), the bytes for its stdin, its marker."""

    text: str
    payload: bytes
    marker: str


def compile_script(segments: Sequence[Sequence[Part]], check: bool, host: str = "") -> Script:
    """One script running each segment's parts in order, segment after segment; part ``j`` of
    segment ``i`` reports as ``i.j``. ``host`` (its inventory name) is named in the failures
    of file operations."""
    marker = "@@fedi-" + secrets.token_hex(8)
    lines = [
        PRELUDE.format(marker=marker, check=1 if check else 0, host=shlex.quote(host or "the host"))
    ]
    payload = b""
    splits = []
    for i, parts in enumerate(segments):
        for j, part in enumerate(parts):
            if part.payload:
                splits.append(f'head -c {len(part.payload)} > "$d/{i}_{j}"')
                payload += part.payload
    if splits or any(part.needs_dir for parts in segments for part in parts):
        lines.append(SPLIT + "\n".join(splits) + "\n")
    for i, parts in enumerate(segments):
        body = "\n".join(p.shell for p in parts) or ":"
        lines.append(f"printf '\\n%s %s B\\n' \"$M\" {i}\n( " + body + "\n) 2>&1\n")
    return Script("".join(lines), payload, marker)


MAX_MARKER_LINE = 16384
"""A marker line longer than this is not one (it is output): the reader's buffer stays small."""


class ReportReader:
    """Reads a script's stdout as it arrives, chunk by chunk (:meth:`feed`): the marker lines
    become each part's state in :attr:`states`; everything else goes, as it comes, to the
    ``outputs[i]`` callable of the segment that printed it. Memory stays bounded: only a
    possible marker line not yet complete is held back. Output printed before the first
    segment begins (the script's own preparations) is dropped.

    A marker line is ``\\n<marker> <segment>[.<part>] <state>[ <message>]\\n``, both newlines
    part of the marker (the script prints the first so that a marker always starts a line).
    """

    def __init__(self, marker: str, outputs: Sequence[Callable[[bytes], None]]):
        self._marker = b"\n" + marker.encode()
        self._line = re.compile(re.escape(marker.encode()) + rb" (\d+)(?:\.(\d+))? (\S+)(?: (.*))?")
        self._outputs = list(outputs)
        self.states: list[dict[int, tuple[str, str]]] = [{} for _ in self._outputs]
        self._current: int | None = None
        self._carry = b""

    def _out(self, data: bytes) -> None:
        if data and self._current is not None:
            self._outputs[self._current](data)

    def feed(self, data: bytes) -> None:
        """Take the next chunk of the script's stdout."""
        buffer = self._carry + data if self._carry else data
        self._carry = b""
        marker, size = self._marker, len(self._marker)
        position = 0
        while True:
            start = buffer.find(marker, position)
            if start < 0:
                break
            end = buffer.find(b"\n", start + size)
            if end < 0:
                if len(buffer) - start <= MAX_MARKER_LINE:
                    self._out(buffer[position:start])
                    self._carry = buffer[start:]
                    return
                end = len(buffer)  # too long to be a marker line: output
            match = self._line.fullmatch(buffer, start + 1, end)
            if match is None or int(match[1]) >= len(self.states):
                self._out(buffer[position : start + 1])
                position = start + 1
                continue
            self._out(buffer[position:start])
            segment = int(match[1])
            if match[2] is None:
                self._current = segment
            else:
                self.states[segment][int(match[2])] = (
                    match[3].decode("utf-8", "replace"),
                    (match[4] or b"").decode("utf-8", "replace"),
                )
            position = end + 1
        rest = buffer[position:] if position else buffer
        # hold back an end that may be the beginning of a marker ("\n@@fe")
        newline = rest.rfind(b"\n", max(0, len(rest) - size + 1))
        if newline >= 0 and marker.startswith(rest[newline:]):
            self._out(rest[:newline])
            self._carry = rest[newline:]
        else:
            self._out(rest)

    def close(self) -> None:
        """The stdout ended: what was held back is output."""
        carry, self._carry = self._carry, b""
        self._out(carry)
