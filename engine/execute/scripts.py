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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").fullmatch
"""An environment variable's name (the playbook checks it; checked again before one reaches
a script)."""
ORIGINALS = "/var/lib/fedi-run/originals"
"""Where a file is kept, on its host, from before fedi-run first changed it, for the undo —
unless the part names its deployment's own directory (``originals``: each deployment keeps
its own, ``/var/lib/fedi-run/<deployment>/originals``, see ``engine.model.layout``)."""


@dataclass(frozen=True)
class Part:
    """One operation's shell code, the content it reads from its payload file, and the line
    that describes its change."""

    shell: str
    payload: bytes
    summary: str
    needs_dir: bool = False
    """Whether the part writes the error file ``$E`` in the private directory (file writes)."""
    extra: bytes = b""
    """A second payload (a command's ``unless`` guard), in the file ``<payload's>_g``."""
    command: str = ""
    """A command part's whole command (what its failure shows; not masked here)."""
    env: bytes = b""
    """A third payload (a command's environment, as ``export NAME='value'`` lines), in the
    file ``<payload's>_v``."""
    judge: Callable[[Mapping[str, object]], bool] | None = None
    """A command's ``changed_when`` judge (``operations.ChangedWhen``): asked, once the
    command ran, whether it changed something — the part itself then reports it changed."""


def mode_text(mode: int) -> str:
    """A mode as ``stat -c %a`` prints it (``644``, ``400``)."""
    return format(mode, "o")


def _src(pid: str) -> str:
    return f'"$d/{pid.replace(".", "_")}"'


def _content_kept(src: str) -> str:
    """Shell that fails (``$e`` saying why) when the part's content file ``src`` is not there:
    splitting stdin into the private directory failed (``$S``: "No space left on device")."""
    return (
        f'{{ [ -e {src} ] || {{ e="cannot keep its content in $d: ${{S:-missing}}"; false; }}; }}'
        " && "
    )


def _original(q: str, originals: str | None, legacy: str | None) -> str:
    """Shell setting ``o`` to where the original of the file ``q`` (quoted) is kept: under
    ``originals`` (default :data:`ORIGINALS`) — or under ``legacy``, the shared directory of
    earlier versions, when one was kept there and none of the deployment's own is."""
    shell = f"o={shlex.quote(originals or ORIGINALS)}{q}; "
    if legacy:
        shell += f'l={shlex.quote(legacy)}{q}; [ -e "$o" ] || [ ! -e "$l" ] || o=$l; '
    return shell


def _owner_words(owner: str) -> str:
    """``owner`` (``user`` or ``user:group``) as the two quoted arguments of ``own_``: the
    user and the group (``''``: any group)."""
    user, _, group = owner.partition(":")
    return f"{shlex.quote(user)} {shlex.quote(group)}"


def file_part(
    pid: str,
    path: str,
    content: bytes,
    mode: int,
    owner: str | None,
    summary: str,
    originals: str | None = None,
    legacy: str | None = None,
) -> Part:
    """The file ``path`` holds ``content`` with ``mode`` (and ``owner``); the first change of an
    existing file keeps the original under ``originals`` (the deployment's own directory;
    default :data:`ORIGINALS`), or finds it under ``legacy`` (:func:`_original`); written to a
    temporary name and renamed."""
    q = shlex.quote(path)
    digest = hashlib.sha256(content).hexdigest()
    m = mode_text(mode)
    src = _src(pid) if content else "/dev/null"
    kept = _content_kept(src) if content else ""
    # the owner before the mode: chown clears the setuid and setgid bits
    chown = f'chown {shlex.quote(owner)} "$t" && ' if owner else ""
    chown_in_place = f'chown {shlex.quote(owner)} "$f" && ' if owner else ""
    owner_differs = f' || ! own_ "$f" {_owner_words(owner)}' if owner else ""
    shell = (
        f'f={q}; t="$f.fedi-run.$$"; {_original(q, originals, legacy)}c=0; '
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
        # the bytes on the host are checked against the bytes sent before the rename: a full
        # disk never leaves a short file in place of the old one
        f'if [ $c = 1 ]; then e=; {kept}{{ stale "$f" && (umask 077 && exec cat {src} >"$t"); }} '
        f'2>"$E" && same_ "$t" {digest} {len(content)} '
        f'&& {{ {chown}chmod {m} "$t" && mv -f "$t" "$f"; }} 2>"$E" '
        f'|| {{ rm -f "$t"; [ -n "$e" ] || why; fail {pid} "cannot write $f on $H: $e"; }}; '
        f'else {{ {chown_in_place}chmod {m} "$f"; }} 2>"$E" '
        f'|| {{ why; fail {pid} "cannot set the mode or owner of $f on $H: $e"; }}; fi; fi; '
        f"[ $c = 0 ] || c=1; done_ {pid} $c"
    )
    return Part(shell, content, summary, needs_dir=True)


def _handed_on(pid: str, q: str, digest: str, shared_root: str | None) -> str:
    """Shell for a teardown of a file that another deployment changed after this one did: when
    ``$f`` no longer holds this deployment's content (``digest``) and another deployment's
    original of it (under ``shared_root/<name>/originals``) is exactly that content, the file
    is left as it is and this deployment's original — or, without one, the absence of any —
    becomes that deployment's, which its own teardown puts back. An ``if … elif`` head."""
    if not digest or not shared_root:
        return "if false; then :; el"
    root = shlex.quote(shared_root)
    return (
        f'h=; if [ -e "$f" ]; then v=$({{ sha256sum <"$f"; }} 2>/dev/null); '
        f'if [ "${{v%% *}}" != {digest} ]; then for x in {root}/*/originals{q}; do '
        f'[ "$x" != "$o" ] && [ -f "$x" ] || continue; v=$(sha256sum <"$x"); '
        f'[ "${{v%% *}}" = {digest} ] && {{ h=$x; break; }}; done; fi; fi; '
        f'if [ -n "$h" ]; then c=1; n=${{h#{root}/}}; n=${{n%%/*}}; '
        f'w="left $f as it is: deployment $n changed it since, and its teardown puts back what '
        f'was there before"; [ "$k" = 1 ] || {{ if [ -e "$o" ]; then mv -f "$o" "$h" && '
        f'{{ rmdir -p --ignore-fail-on-non-empty "${{o%/*}}"; true; }}; else rm -f "$h" && '
        f'{{ rmdir -p --ignore-fail-on-non-empty "${{h%/*}}"; true; }}; fi; }} 2>/dev/null || '
        f'fail {pid} "cannot hand the original of $f on to deployment $n on $H"; el'
    )


def restore_part(
    pid: str,
    path: str,
    originals: str | None = None,
    legacy: str | None = None,
    digest: str = "",
    shared_root: str | None = None,
) -> Part:
    """Put back the original of ``path`` kept by :func:`file_part` (with the same
    ``originals`` and ``legacy``), or remove the file — unless another deployment changed it
    since (its original of the file is this one's content, whose sha256 is ``digest``): then
    the file stays, and that deployment gets this one's original (:func:`_handed_on`)."""
    q = shlex.quote(path)
    shell = (
        f"f={q}; {_original(q, originals, legacy)}c=0; w=; "
        + _handed_on(pid, q, digest, shared_root)
        + f'if [ -e "$o" ]; then c=1; [ "$k" = 1 ] || {{ mv -f "$o" "$f" && '
        f'rmdir -p --ignore-fail-on-non-empty "${{o%/*}}" 2>/dev/null; true; }}; '
        # no original kept: fedi-run created the file, so it goes (and is said to)
        f'elif [ -e "$f" ] || [ -L "$f" ]; then c=1; '
        f'w="removed $f (there was no original to put back)"; '
        f'[ "$k" = 1 ] || rm -f -- "$f" 2>/dev/null '
        f'|| {{ e=$(rm -f -- "$f" 2>&1); fail {pid} "cannot remove $f on $H: ${{e##*: }}"; }}; fi; '
        f'done_ {pid} $c "$w"'
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
    """The directory ``path`` exists with ``mode`` (and ``owner``): its owner set first (chown
    may clear the setuid and setgid bits), then its mode — exactly, also a setgid bit it
    inherited from its parent (``chmod 0NNNN``: GNU chmod keeps a directory's setgid bit for a
    plain ``NNN``). A chown or chmod that fails fails the task, naming the path and the host."""
    q = shlex.quote(path)
    m = mode_text(mode)
    shell = (
        f'c=0; if [ ! -d {q} ]; then c=1; [ "$k" = 1 ] || mkdir -p -m {m} {q} 2>/dev/null || '
        f"{{ e=$(mkdir -p -m {m} {q} 2>&1); "
        f'fail {pid} "cannot create "{q}" on $H: ${{e##*: }}"; }}; fi; '
    )
    if owner:
        o = shlex.quote(owner)
        shell += (
            f"if [ -d {q} ] && ! own_ {q} {_owner_words(owner)}; then c=1; "
            f'[ "$k" = 1 ] || chown {o} {q} 2>/dev/null || {{ e=$(chown {o} {q} 2>&1); '
            f'e=${{e#chown: }}; fail {pid} "cannot set the owner of "{q}" on $H: '
            f'${{e#changing ownership of *: }}"; }}; fi; '
        )
    shell += (
        f'if [ -d {q} ] && [ "$(stat -c %a {q})" != {m} ]; then c=1; '
        f'[ "$k" = 1 ] || chmod {mode:05o} {q} 2>/dev/null || '
        f"{{ e=$(chmod {mode:05o} {q} 2>&1); "
        f'fail {pid} "cannot set the mode of "{q}" on $H: ${{e##*: }}"; }}; fi; '
    )
    return Part(shell + f"done_ {pid} $c", b"", f"directory {path} (mode {m})")


def secret_part(pid: str, path: str, value: bytes, mode: int, keep: bool, summary: str) -> Part:
    """A secret at ``path`` with ``mode``: with ``keep``, an existing one is left as it is;
    otherwise it must hold exactly ``value``. Never on a command line: ``value`` is payload."""
    q = shlex.quote(path)
    m = mode_text(mode)
    digest = hashlib.sha256(value).hexdigest()
    # kept: an existing one stays — unless it is empty, which is no secret (a run that
    # recorded placing it stops before this: engine.execute.secret_book)
    differs = '[ ! -s "$f" ]' if keep else f'[ "$cur" != {digest} ]'
    src = _src(pid)
    shell = (
        f'f={q}; t="$f.fedi-run.$$"; c=0; '
        f'cur=$({{ sha256sum <"$f"; }} 2>/dev/null); cur=${{cur%% *}}; '
        f'if {differs}; then c=1; if [ "$k" != 1 ]; then e=; {_content_kept(src)}'
        f'{{ mkdir -p -m 700 "${{f%/*}}" && stale "$f" && (umask 077; cat {src} >"$t"); }} '
        f'2>"$E" && same_ "$t" {digest} {len(value)} && {{ chmod {m} "$t" && mv -f "$t" "$f"; }} '
        f'2>"$E" '
        f'|| {{ rm -f "$t"; [ -n "$e" ] || why; '
        f'fail {pid} "cannot write the secret $f on $H: $e"; }}; fi; fi; '
        f'if [ -e "$f" ] && [ "$(stat -c %a "$f")" != {m} ]; then c=1; '
        f'[ "$k" = 1 ] || chmod {m} "$f"; fi; '
        f"done_ {pid} $c"
    )
    return Part(shell, value, summary, needs_dir=True)


def command_part(
    pid: str,
    run: str,
    creates: str | None,
    unless: str | None,
    env: Sequence[tuple[str, str]] = (),
    changed: bool = True,
    judge: Callable[[Mapping[str, object]], bool] | None = None,
) -> Part:
    """Run ``run`` unless ``creates`` exists or ``unless`` succeeds; its output is the task's:
    its stdout as it comes, its stderr line by line as the segment's ``E`` marker lines
    (:class:`ReportReader` tells them apart; the order between the two streams is kept only
    to the line, as two pipes give it).

    ``run`` and ``unless`` are the task's own shell code: each is payload, read by a ``sh`` of
    its own from its file — never part of the script — so whatever it holds (a syntax error,
    an unbalanced parenthesis or quote, a here-document left open) is that task's failure
    only, and it sees none of the script's names. ``env`` (name, value) is exported to both:
    payload too, a file of ``export NAME='value'`` lines (each value quoted) that the ``sh``
    running them reads first. With ``changed=False`` a command that ran reports no change;
    ``judge`` is kept on the part for the reader (:attr:`Part.judge`)."""
    src = _src(pid)
    bad = [name for name, _ in env if not _SHELL_NAME(name)]
    if bad:
        raise ValueError(f"not an environment variable's name: {bad[0]!r}")
    environment = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env)

    def sh(script: str) -> str:
        if not environment:
            return f"sh {script}"
        return f'sh -c \'. "$1" && exec sh "$2"\' sh {src[:-1]}_v" {script}'

    guards = []
    if creates:
        guards.append(f"[ -e {shlex.quote(creates)} ]")
    if unless:
        guards.append(f"{sh(src[:-1] + '_g' + src[-1])} >/dev/null 2>&1 </dev/null")
    guard = f"if {' || '.join(guards)}; then c=0; else c=1; fi; " if guards else "c=1; "
    # a script (or guard) the host could not keep whole is never run (nor taken as failed)
    kept = f'[ -e {src} ] || fail {pid} "cannot keep its script in $d on $H: ${{S:-missing}}"; '
    if unless:
        kept += (
            f'[ -e {src[:-1]}_g" ] || '
            f'fail {pid} "cannot keep its unless guard in $d on $H: ${{S:-missing}}"; '
        )
    if environment:
        kept += (
            f'[ -e {src[:-1]}_v" ] || '
            f'fail {pid} "cannot keep its environment in $d on $H: ${{S:-missing}}"; '
        )
    # its stderr goes, line by line, through err_ (its segment's marker lines "E <line>"), its
    # stdout as it is, its exit status through fd 4 into rc
    run_it = (
        f"{{ rc=$( {{ {{ {sh(src)} </dev/null 3>&- 4>&-; echo $? >&4; }} 2>&1 1>&3 "
        f"| err_ {pid.partition('.')[0]} >&3 4>&-; }} 4>&1 ); }} 3>&1; "
    )
    shell = (
        kept + guard + f'if [ $c = 1 ] && [ "$k" != 1 ]; then {run_it}'
        f'[ "$rc" = 0 ] || fail {pid} "exited with status ${{rc:-unknown}}"; fi; '
        + ("" if changed else "c=0; ")
        + f"done_ {pid} $c"
    )
    first = run.strip().splitlines()[0] if run.strip() else ""
    return Part(
        shell,
        run.encode() + b"\n",
        f"ran: {_shortened(first)}",
        extra=unless.encode() + b"\n" if unless else b"",
        command=run.strip(),
        env=environment.encode(),
        judge=judge,
    )


def _shortened(line: str, width: int = 120) -> str:
    """``line`` if it is at most ``width`` characters, else its beginning cut after a whole
    word (mid-word only if its first word alone is longer), followed by `` …``."""
    if len(line) <= width:
        return line
    cut = line.rfind(" ", 0, width + 1)
    return (line[:cut] if cut > 0 else line[:width]).rstrip() + " …"


PRELUDE = (
    "M={marker}; k={check}; E=/dev/null; H={host}; S=\n"
    'done_() {{ printf \'\\n%s %s %s%s\\n\' "$M" "$1" "$2" "${{3:+ $3}}"; }}\n'
    'fail() {{ printf \'\\n%s %s F %s\\n\' "$M" "$1" "$2"; exit 1; }}\n'
    # why: $e is the reason in the first line of $E ("No space left on device"), no fork
    'why() {{ e=; [ -s "$E" ] && IFS= read -r e <"$E"; e=${{e##*: }}; e=${{e:-failed}}; }}\n'
    # own_ FILE USER GROUP: FILE's owner is USER and (unless GROUP is empty) its group GROUP,
    # each given as a name or a numeric id
    "own_() {{ _o=$(stat -c '%U %u %G %g' -- \"$1\" 2>/dev/null) || return 1; "
    'set -- "$2" "$3" $_o; {{ [ "$1" = "$3" ] || [ "$1" = "$4" ]; }} && '
    '{{ [ -z "$2" ] || [ "$2" = "$5" ] || [ "$2" = "$6" ]; }}; }}\n'
    # stale: remove the temporary files ($1.fedi-run.<pid>) a run whose host died between write
    # and rename left; forks rm only when there is one
    'stale() {{ for _s in "$1".fedi-run.[0-9]*; do [ ! -e "$_s" ] || rm -f -- "$_s" || return 1; '
    "done; }}\n"
    # same_ FILE SHA256 LENGTH: FILE holds exactly the bytes sent, else $e says what it holds
    'same_() {{ _v=$(sha256sum <"$1") && [ "${{_v%% *}}" = "$2" ] && return 0; '
    '_n=$(wc -c <"$1" 2>/dev/null); e="the bytes written are not the bytes sent: ${{_n:-no}} '
    'bytes of $3, or a different content"; return 1; }}\n'
    # sp_ LENGTH FILE: the next LENGTH bytes of stdin into FILE; once one fails, $S says why
    # ("No space left on device"), and neither that FILE nor the ones after it are there
    'sp_() {{ [ -z "$S" ] || return 0; _e=$(head -c "$1" 2>&1 >"$2") && return 0; rm -f "$2"; '
    "_e=${{_e##*: }}; S=${{_e:-failed}}; }}\n"
    # err_ SEGMENT: each line of stdin (a command's stderr), as it comes, as the marker line
    # "SEGMENT E <line>" written whole at once (awk flushes each: the command's stdout, written
    # to the same pipe meanwhile, never falls inside one; a shell's printf may write it in
    # pieces). -W interactive: mawk reads line by line only so (gawk ignores it, busybox
    # refuses it: then plain awk). Without awk: as plain output (cat).
    'EP_=\'{{ printf "%s", "\\n" m " " s " E " $0 "\\n"; fflush() }}\'\n'
    'err_() {{ if command -v awk >/dev/null 2>&1; then awk -W interactive -v m="$M" -v s="$1" '
    '"$EP_" 2>/dev/null || awk -v m="$M" -v s="$1" "$EP_" 2>/dev/null; else cat; fi; }}\n'
)
# The private directory: named after the job's process group when the script runs as a job
# (engine.execute.jobs: its wrapper removes it, also when it ends the job), else any new one.
SPLIT = (
    'if [ -n "${FEDI_RUN_JOB:-}" ] && mkdir -m 700 "%s$FEDI_RUN_JOB" 2>/dev/null; then '
    'd="%s$FEDI_RUN_JOB"; else d=$(mktemp -d /dev/shm/fedi-run.XXXXXX 2>/dev/null || mktemp -d '
    "2>/dev/null) || { echo 'fedi-run: cannot make a private directory on this host (in "
    '/dev/shm or $TMPDIR)\' >&2; exit 125; }; fi; trap \'rm -rf "$d"\' EXIT; E="$d/e"\n'
).replace("%s", "/dev/shm/fedi-run.")
# Once split, stdin goes (its data is in the part files now).
SPLIT_DONE = "exec </dev/null\n"
# The pid files of the tasks' jobs (engine.execute.jobs): $R their directory (empty: none
# kept), $G this job's process group and $T its leader's start time; alive FILE says whether
# the job FILE names still runs (its group, with the same leader — a pid may be reused — and
# a process in it that is no zombie, see jobs.LIVE); held
# SEGMENT NAME waits for the task's earlier job, then reports the segment failed while it
# still runs (true), else records this job for the task (false).
PIDS = (
    'R={directory}; if [ ! -w "$R" ]; then mkdir -p -m 700 "$R" 2>/dev/null; '
    '[ -w "$R" ] || {{ R="${{HOME:-/nonexistent}}/.fedi-run/run/"{base}; '
    'mkdir -p -m 700 "$R" 2>/dev/null; [ -w "$R" ] || R=; }}; fi; W=; G=; T=\n'
    '{{ read -r _ _ _ _ G _ </proc/self/stat && read -r {skip} T _ <"/proc/$G/stat"; }} '
    "2>/dev/null || R=\n"
    "{live}"
    'alive() {{ [ -f "$1" ] || return 1; _g=; _t=; {{ read -r _g _t _ <"$1"; }} 2>/dev/null; '
    "case $_g in ''|*[!0-9]*) return 1 ;; esac; "
    '[ "$_g" -gt 1 ] && [ "$_g" != "$G" ] && kill -0 -"$_g" 2>/dev/null || return 1; '
    '_s=; if {{ IFS= read -r _s <"/proc/$_g/stat"; }} 2>/dev/null; then _s=${{_s##*") "}}; '
    'set -- $_s; [ "${{20}}" = "$_t" ] || return 1; fi; fedi_run_live "$_g"; }}\n'
    'held() {{ [ -n "$R" ] || return 1; _w=0; while alive "$R/$2"; do '
    'if [ $_w -ge {polls} ]; then printf \'\\n%s %s F %s\\n\' "$M" "$1" "still running on $H: '
    "its command of an earlier run (process group $_g, recorded in $R/$2) has not ended, so it "
    "was not started again; wait for it to end (or end it: kill -TERM -- -$_g), then run "
    'again"; return 0; fi; sleep 0.1; _w=$((_w+1)); done; '
    '[ "$k" = 1 ] || {{ printf \'%s %s\\n\' "$G" "$T" >"$R/$2" && W="$W $2"; }} 2>/dev/null; '
    "return 1; }}\n"
)
# An ended job's pid files are emptied (no fork): an empty one names no job.
PIDS_DONE = 'for _n in $W; do : >"$R/$_n"; done\n'


@dataclass(frozen=True)
class Script:
    """A compiled script: its text (no secret in it), the bytes for its stdin, its marker."""

    text: str
    payload: bytes
    marker: str


def compile_script(
    segments: Sequence[Sequence[Part]],
    check: bool,
    host: str = "",
    pid_dir: str | None = None,
    pid_names: Sequence[str | None] | None = None,
    pid_wait: float | None = None,
) -> Script:
    """One script running each segment's parts in order, segment after segment; part ``j`` of
    segment ``i`` reports as ``i.j``. ``host`` (its inventory name) is named in the failures
    of file operations. With ``pid_dir`` (the host's directory of the deployment's pid files,
    ``engine.execute.jobs``), segment ``i`` is recorded there as ``pid_names[i]`` while it
    runs — and not run, but failed, while an earlier job recorded under that name still
    runs, once ``pid_wait`` seconds (default ``jobs.WAIT_FOR_EARLIER``) have passed."""
    from fedi_run.engine.execute import jobs

    marker = "@@fedi-" + secrets.token_hex(8)
    lines = [
        PRELUDE.format(marker=marker, check=1 if check else 0, host=shlex.quote(host or "the host"))
    ]
    names = list(pid_names or ()) if pid_dir else []
    wait = jobs.WAIT_FOR_EARLIER if pid_wait is None else pid_wait
    if any(names):
        lines.append(
            PIDS.format(
                directory=shlex.quote(pid_dir),
                base=shlex.quote(pid_dir.rstrip("/").rsplit("/", 1)[-1]),
                skip=" ".join("_" * 21),
                live=jobs.LIVE,
                polls=max(1, round(wait / 0.1)),
            )
        )
    payload = b""
    splits = []
    for i, parts in enumerate(segments):
        for j, part in enumerate(parts):
            if part.payload:
                splits.append(f'sp_ {len(part.payload)} "$d/{i}_{j}"')
                payload += part.payload
            if part.extra:
                splits.append(f'sp_ {len(part.extra)} "$d/{i}_{j}_g"')
                payload += part.extra
            if part.env:
                splits.append(f'sp_ {len(part.env)} "$d/{i}_{j}_v"')
                payload += part.env
    if splits or any(part.needs_dir for parts in segments for part in parts):
        lines.append(SPLIT + "\n".join(splits) + "\n" + SPLIT_DONE)
    for i, parts in enumerate(segments):
        body = "\n".join(p.shell for p in parts) or ":"
        name = names[i] if i < len(names) else None
        hold = f"held {i} {shlex.quote(name)} || " if name else ""
        lines.append(f"printf '\\n%s %s B\\n' \"$M\" {i}\n{hold}( " + body + "\n) 2>&1\n")
    if any(names):
        lines.append(PIDS_DONE)
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
    part of the marker (the script prints the first so that a marker always starts a line). A
    segment's own line says ``B`` as it begins, or ``F <message>`` when it failed before any of
    its parts ran (its task's earlier job still runs): that is ``states[segment][-1]``. A
    segment's line ``E <text>`` is a line its command wrote to stderr: it goes to
    ``errors[segment]`` (without ``errors``: to ``outputs[segment]``, as its other output).
    """

    def __init__(
        self,
        marker: str,
        outputs: Sequence[Callable[[bytes], None]],
        errors: Sequence[Callable[[bytes], None]] | None = None,
    ):
        self._marker = b"\n" + marker.encode()
        self._line = re.compile(re.escape(marker.encode()) + rb" (\d+)(?:\.(\d+))? (\S+)(?: (.*))?")
        self._outputs = list(outputs)
        self._errors = list(errors) if errors is not None else None
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
            if match[2] is None and match[3] == b"E":  # a line its command wrote to stderr
                (self._errors or self._outputs)[segment]((match[4] or b"") + b"\n")
            elif match[2] is None and match[3] == b"B":
                self._current = segment
            elif match[2] is None:  # the segment failed before any part ran
                self.states[segment][-1] = (
                    match[3].decode("utf-8", "replace"),
                    (match[4] or b"").decode("utf-8", "replace"),
                )
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
