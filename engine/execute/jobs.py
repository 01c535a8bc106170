"""How long what a task starts lives — on its host and on the deployer.

Contract:

* **on a host**, every command :meth:`HostConnection.run` sends runs as a *job*
  (:func:`remote_job`), in the process group sshd gives each session (else one of its own,
  from ``setsid``), beside a watcher that holds the channel's stdin — which the deployer never
  closes. When the channel ends before the command does (the task timed out, the grace period
  of a stop ended, the connection broke, the deployer was killed), sshd closes that stdin and
  the watcher ends the whole group: SIGTERM, then SIGKILL once nothing else of it runs or
  :data:`KILL_AFTER` seconds later; and it removes the job's private directory
  (:data:`PRIVATE`). A command that ends by itself leaves what it started in the background
  alone. A command of up to :data:`INLINE_LIMIT` bytes is on the command line; a longer one —
  a batch of any size — travels on stdin, ahead of its input; either way, no round trip more;
* a script of tasks records each task's job in a pid file on the host
  (``/run/fedi-run/<deployment>-<state>/<task>.pid``: its process group and the group
  leader's start time, so that a reused pid is not taken for it), emptied when the job ends.
  A task whose pid file names a group still running — its command of an earlier run may
  still be going there — waits for it (:data:`WAIT_FOR_EARLIER` seconds, half its timeout at
  most), then fails naming the host and the group instead of being started a second time.
  ``/run`` is emptied at boot, when no earlier job can have survived;
* **on the deployer**, a local command (``nixops4 apply``) runs in a process group of its own
  (:meth:`Jobs.start_local`); it is ended — SIGTERM, SIGKILL :data:`KILL_AFTER` seconds later
  — when its task's timeout passes or the scheduler's grace period ends
  (:meth:`Jobs.stop_local`), and, the same way, when the deployer process ends without ending
  it (``kill -9``): a watcher in its group holds a pipe only the deployer writes to
  (:data:`LOCAL`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

HOST_DIR = "/run/fedi-run"
"""Where a host keeps the pid files of the deployments' running tasks (a user who cannot
write there: ``$HOME/.fedi-run/run``)."""
KILL_AFTER = 2.0
"""Seconds between the SIGTERM and the SIGKILL that end a job (on a host or the deployer)."""
WAIT_FOR_EARLIER = 5.0
"""Seconds a task waits for its command of an earlier run to end on its host."""

INLINE_LIMIT = 65536
"""Bytes of a command sent on the command line itself; a longer one travels on stdin, ahead of
its input (the kernel takes at most 128 KiB as one argument)."""
EXIT_NO_START = 125
"""The exit status of a script that could not start: no private directory for its input
(scripts.SPLIT, which says why on stderr)."""
PRIVATE = "/dev/shm/fedi-run."
"""``PRIVATE<group>``: the private directory (0700) a job's script makes for its stdin's parts
(scripts.SPLIT) — named after the job's process group, so that the wrapper removes it also
when it ends the job."""

LIVE = (
    "fedi_run_live() { _lg=$1; read -r _me _ </proc/self/stat; for _p in /proc/[0-9]*; do "
    '{ IFS= read -r _l <"$_p/stat"; } 2>/dev/null || continue; _l=${_l##*") "}; set -- $_l; '
    '[ "$3" = "$_lg" ] && [ "$1" != Z ] && [ "${_p#/proc/}" != "$_me" ] && return 0; done; '
    "return 1; }\n"
)
"""``fedi_run_live GROUP``: whether a process of the process group GROUP runs — other than the
caller, and not a zombie (which ``kill -0`` would count: a killed job's processes may wait a
moment to be reaped). Builtins only: it reads ``/proc/*/stat``."""

# The wrapper, in POSIX sh for the host's login shell, which sshd starts as the leader of a
# session — a process group — of its own (else it starts itself again under setsid; without
# setsid it kills nothing). A watcher holds the channel's stdin (fd 3) and blocks reading it:
# that read only ends (EOF) when sshd closes the channel, and then the watcher ends the group
# — SIGTERM, SIGKILL once nothing else of it runs or after KILL_AFTER — and removes the job's
# private directory. When the command ends first, the watcher is ended, and the wrapper exits
# with the command's status.
_GROUP = (
    LIVE.replace("{", "{{").replace("}", "}}")
    + "G=; {{ read -r _ _ _ _ G _ </proc/self/stat; }} 2>/dev/null\n"
    'if [ "$G" != "$$" ] && [ -z "${{FEDI_RUN_SESSION:-}}" ] && command -v setsid >/dev/null '
    '2>&1; then FEDI_RUN_SESSION=1 exec setsid sh -c "$J"; fi\n'
    'K=; FEDI_RUN_JOB=; [ "$G" = "$$" ] && K=0 && FEDI_RUN_JOB=$G\n'
    "exec 3<&0 </dev/null\n"
)
_KILL = (
    '[ -z "$K" ] || {{ kill -TERM 0; w=0; while [ $w -lt {polls} ] && fedi_run_live "$G"; '
    "do sleep 0.1; w=$((w+1)); done; "
    + f'[ ! -O "{PRIVATE}$G" ] || rm -rf "{PRIVATE}$G"; '
    + "kill -KILL 0; }}"
)
# Without input, a command that fits is all on the command line: nothing is sent, and the
# watcher runs beside the command, which runs in the wrapper's own shell (as a command always
# did): the wrapper's exit ends the watcher (SIGPIPE: no shell reports that death).
_INLINE = (
    _GROUP + "{{ trap '' TERM; read -r _ <&3; " + _KILL + "; }} >/dev/null 2>&1 &\n"
    "fedi_run_watcher=$!; exec 3<&-; trap 'kill -PIPE \"$fedi_run_watcher\" 2>/dev/null' EXIT\n"
    "{command}\n"
)
# Else the watcher first copies exactly the bytes sent — the command when it is too long for
# the command line, then the input — from the channel into a pipe to the command's side (so the
# channel never closes while the deployer sends: paramiko #1705, see engine/lab/ssh.py), its
# pid ahead of them; the command's side drains what the command leaves of them.
_PIPED = (
    _GROUP
    + "{{ read -r m _ </proc/self/stat; printf '%s\\n' \"$m\"; head -c {total} <&3; exec >&-; "
    "trap '' TERM; read -r _ <&3; "
    + _KILL
    + "; }} 2>/dev/null | {{ exec 3<&-; read -r v; ( {body}\n); r=$?; "
    'while read -r _; do :; done 2>/dev/null; kill -PIPE "$v" 2>/dev/null; exit $r; }}'
)


def remote_job(command: str, input: bytes | None) -> tuple[str, bytes]:
    """The command line and the stdin that run ``command`` (``sh -c`` semantics, in the
    host's login shell) as a job on a host, ``input`` (None: nothing) on its stdin. The
    deployer sends the stdin and never an EOF: the channel's stdin staying open is the job's
    lifeline."""
    body = command.encode()
    polls = max(1, round(KILL_AFTER / 0.1))
    inline = len(body) <= INLINE_LIMIT
    if inline and input is None:
        return _wrapped(_INLINE.format(command=command, polls=polls)), b""
    data = (b"" if inline else body) + (input or b"")
    job = _PIPED.format(
        total=len(data),
        body=command if inline else f'c=$(head -c {len(body)}) && eval "$c"',
        polls=polls,
    )
    return _wrapped(job), data


def _wrapped(job: str) -> str:
    # in a variable, so that the wrapper can start itself again under setsid
    return f'J={shlex.quote(job)}; eval "$J"'


# pid files of the running tasks, on the hosts ---------------------------------------------------


def host_directory(deployment: str, state_dir: Path | str | None) -> str:
    """The directory, on every host, of the pid files of ``deployment``'s running tasks — one
    per deployment *and* state database (two runs share it only when they share the state).
    ``state_dir``: the state's directory, or the URL of a state on a server (a ``str`` with
    ``://``: ``StateLocation.identity``, the same on every deployer sharing it)."""
    if state_dir is None:
        where = ""
    elif isinstance(state_dir, str) and "://" in state_dir:
        where = state_dir
    else:
        where = str(Path(state_dir).absolute())
    digest = hashlib.sha256(where.encode()).hexdigest()[:12]
    return f"{HOST_DIR}/{_safe(deployment)}-{digest}"


def pid_file_name(task_id: str) -> str:
    """The name of ``task_id``'s pid file in a :func:`host_directory` (a plain name: only
    letters, digits, ``.``, ``_`` and ``-``; a digest keeps names that differ apart)."""
    safe = _safe(task_id)
    if safe != task_id:
        safe += "-" + hashlib.sha256(task_id.encode()).hexdigest()[:8]
    return f"{safe}.pid"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100].lstrip(".") or "_"


# local processes, on the deployer -----------------------------------------------------------------

LOCAL = (
    LIVE
    + "polls=$1; shift; exec 3<&0 </dev/null\n"
    + "{ trap '' TERM; read -r _ <&3 && exit 0; kill -TERM 0; w=0; "
    + 'while [ $w -lt "$polls" ] && fedi_run_live $$; do sleep 0.1; w=$((w+1)); done; '
    + "kill -KILL 0; } >/dev/null 2>&1 &\n"
    + 'exec 3<&-; exec "$@"\n'
)
"""The ``sh -c`` script that runs a local command (its arguments, after the number of 0.1 s
polls in :data:`KILL_AFTER`) as a job on the deployer, mirroring the hosts' wrapper. It
starts as the leader of a session of its own, and first forks a *watcher* into that
session's process group: it holds (on its fd 3, from the script's stdin) the read end of a
pipe whose only write end the deployer keeps (:meth:`Jobs.start_local`: close-on-exec, so no
other process it starts inherits it); then the script becomes the command (``exec``: the
group leader's pid, exit status and signals stay the command's). When the deployer process
ends — however: ``kill -9`` too — the kernel closes that write end, the watcher reads EOF
and ends the group: SIGTERM, then SIGKILL once nothing else of it runs or :data:`KILL_AFTER`
seconds later. When the command has ended by itself, :meth:`Jobs.forget` writes a line: the
watcher leaves without ending anything. The watcher ignores SIGTERM, so
:meth:`Jobs.end_local`'s SIGTERM leaves it there until the SIGKILL.

Why not ``prctl(PR_SET_PDEATHSIG)``: that signal fires when the *thread* that started the
child ends (the scheduler starts local commands from worker threads, which end before the
run does), reaches only the one process, not its group, and needs code run between fork and
exec (``preexec_fn``, unsafe in a process with threads). The pipe ends exactly when the
deployer process does, whichever of its threads started the command."""


def _executable(name: str, env: dict | None) -> str:
    """``name`` found on the ``PATH`` (of ``env``, as :class:`subprocess.Popen` would), so
    that a missing command still fails :meth:`Jobs.start_local` with ``FileNotFoundError``
    (not as a status 127 of the job's shell); a name with a ``/`` is left as it is."""
    if "/" in name:
        return name
    found = shutil.which(name, path=os.pathsep.join(os.get_exec_path(env)))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    return found


class Jobs:
    """A run's jobs: where its hosts keep its pid files (``host_dir``; None: none kept) and
    the local processes its tasks started, which :meth:`stop_local` ends."""

    def __init__(self, host_dir: str | None = None):
        self.host_dir = host_dir
        self.stopping = threading.Event()
        """Set by :meth:`stop_local`: a local command ending now was stopped, not failing."""
        self.stopped_when = "when the grace period ended"
        """When the run stopped its local commands, for their tasks' messages."""
        self._local: set[subprocess.Popen] = set()
        self._ending: dict[int, threading.Lock] = {}
        self._lifelines: dict[int, int] = {}
        """pid → the write end of the pipe its watcher holds (:data:`LOCAL`)."""
        self._lock = threading.Lock()

    def start_local(self, argv, **popen) -> subprocess.Popen:
        """Start ``argv`` on the deployer in a session (a process group) of its own, its stdin
        /dev/null; ended by :meth:`end_local` (or :meth:`stop_local`), and by its watcher when
        the deployer ends first (:data:`LOCAL`). Refused once the run is stopping.
        ``popen``: more arguments of :class:`subprocess.Popen` (no ``stdin``)."""
        if popen.pop("stdin", None) not in (None, subprocess.DEVNULL):
            raise ValueError("a local command reads no input")
        argv = [_executable(argv[0], popen.get("env")), *argv[1:]]
        polls = str(max(1, round(KILL_AFTER / 0.1)))
        with self._lock:
            if self.stopping.is_set():
                raise OSError("the run is stopping")
            lifeline, kept = os.pipe()  # both ends close-on-exec: only the watcher gets one
            try:
                process = subprocess.Popen(
                    ["/bin/sh", "-c", LOCAL, "fedi-run-job", polls, *argv],
                    start_new_session=True,
                    stdin=lifeline,
                    **popen,
                )
            except BaseException:
                os.close(kept)
                raise
            finally:
                os.close(lifeline)
            self._local.add(process)
            self._lifelines[process.pid] = kept
            return process

    def end_local(self, process: subprocess.Popen) -> None:
        """End ``process``'s group: SIGTERM, then — :data:`KILL_AFTER` seconds later, or as
        soon as the process has ended — SIGKILL to what is left of the group; returns once the
        process has ended. The process is not reaped before the SIGKILL, so its group's id is
        still its own when that is sent."""
        with self._lock:
            ending = self._ending.setdefault(process.pid, threading.Lock())
        with ending:
            if process.returncode is None:
                _signal_group(process, signal.SIGTERM)
                _wait_unreaped(process, KILL_AFTER)
                _signal_group(process, signal.SIGKILL)
                process.wait()
        self.forget(process)

    def forget(self, process: subprocess.Popen) -> None:
        """``process`` ended by itself: forgotten, its group left alone (what it started in
        the background is its own business)."""
        with self._lock:
            self._local.discard(process)
            self._ending.pop(process.pid, None)
            kept = self._lifelines.pop(process.pid, None)
        if kept is not None:  # the watcher leaves, ending nothing (if still there)
            try:
                os.write(kept, b"\n")
            except OSError:
                pass
            os.close(kept)

    def stop_local(self, when: str | None = None) -> None:
        """The run is stopping: no new local command starts, and each running one is ended
        (:meth:`end_local`), all at once; returns when they have ended. ``when``: when that
        happened, for the tasks' messages (default: :attr:`stopped_when`)."""
        with self._lock:
            if when is not None and not self.stopping.is_set():
                self.stopped_when = when
            self.stopping.set()
            running = list(self._local)
        enders = [threading.Thread(target=self.end_local, args=(p,)) for p in running]
        for ender in enders:
            ender.start()
        for ender in enders:
            ender.join()


def _wait_unreaped(process: subprocess.Popen, seconds: float) -> None:
    """Wait up to ``seconds`` for ``process`` to end, without reaping it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return
        except ChildProcessError:  # reaped meanwhile (by its own thread's wait)
            return
        time.sleep(0.02)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def wait_output(process: subprocess.Popen, deadline: float | None, stopping: threading.Event):
    """The chunks of ``process``'s stdout as they come (bytes), until its end; raises
    :class:`TimeoutError` at ``deadline`` (monotonic) and :class:`InterruptedError` when
    ``stopping`` is set — checking both every 0.2 s, also while the process prints nothing."""
    import selectors

    assert process.stdout is not None
    fd = process.stdout.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if stopping.is_set():
                raise InterruptedError
            wait = 0.2
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                wait = min(wait, left)
            if selector.select(wait):
                data = os.read(fd, 65536)
                if not data:
                    return
                yield data
