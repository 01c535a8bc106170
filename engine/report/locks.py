"""One lock per deployment, wherever its state file is.

A run holds its deployment's lock for as long as it runs (:func:`deployment_lock`): a
non-blocking ``flock`` on a file named after the deployment and the directory of its playbook,
in one lock directory of the machine (:func:`lock_directory`). Two runs of the same deployment
— the same ``[deployment] name`` beside the same playbook directory — cannot overlap, whatever
``--state`` each was given; deployments of other names, or playbooks elsewhere, do not wait for
each other. The lock is released when the run ends or its process dies (the kernel drops a
dead process's ``flock``); the file stays, empty.

The lock directory, the first that can be used of:

1. ``$FEDI_RUN_LOCK_DIR``;
2. ``/run/fedi-run/locks`` (root; ``/run`` is emptied at boot, as the locks are);
3. ``$XDG_RUNTIME_DIR/fedi-run/locks`` (the user's runtime directory);
4. ``~/.fedi-run/locks``.

Directories are made 0700, lock files 0600. While a run holds the lock, its file says who:
pid, host, start time, the command line, the playbook's directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fedi_run.engine.errors import LockHeld, StateError
from fedi_run.engine.private_files import make_private_dirs

RUN_LOCKS = Path("/run/fedi-run/locks")
"""The machine's lock directory, for root."""


def lock_candidates() -> list[Path]:
    """The lock directories to try, in order (see the module's docstring)."""
    found = []
    if os.environ.get("FEDI_RUN_LOCK_DIR"):
        return [Path(os.environ["FEDI_RUN_LOCK_DIR"])]
    found.append(RUN_LOCKS)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        found.append(Path(runtime) / "fedi-run" / "locks")
    found.append(Path.home() / ".fedi-run" / "locks")
    return found


def lock_directory(candidates: Sequence[Path] | None = None) -> Path:
    """The first of ``candidates`` (default :func:`lock_candidates`) that exists or can be
    made (0700), and is writable; :class:`StateError` naming them when none can."""
    tried = []
    for directory in lock_candidates() if candidates is None else candidates:
        try:
            make_private_dirs(directory)
        except OSError as error:
            tried.append(f"{directory}: {error.strerror or error}")
            continue
        if directory.is_dir() and os.access(directory, os.W_OK | os.X_OK):
            return directory
        tried.append(f"{directory}: not a writable directory")
    raise StateError(
        "error: cannot make a directory for the deployment's lock ("
        + "; ".join(tried)
        + "); set FEDI_RUN_LOCK_DIR to a writable directory"
    )


def lock_file_name(deployment: str, directory: Path) -> str:
    """``<deployment>-<digest of the playbook's directory>.lock`` (a plain file name: the
    deployment's name is a checked plain name; anything else is replaced)."""
    where = str(Path(directory).absolute().resolve())
    digest = hashlib.sha256(where.encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in deployment)[:80]
    return f"{safe.lstrip('.') or '_'}-{digest}.lock"


@contextmanager
def deployment_lock(
    deployment: str, playbook_dir: Path, command: Sequence[str] = ()
) -> Iterator[Path]:
    """Hold ``deployment``'s lock (the deployment of the playbook in ``playbook_dir``) for
    the ``with`` block, yielding the lock file's path; :class:`LockHeld` (exit status 3)
    naming the holder's pid and command line when another run holds it. ``command`` is this
    run's command line, as the holder's record shows it (default: ``sys.argv``)."""
    path = lock_directory() / lock_file_name(deployment, playbook_dir)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise StateError.cannot(
            "create the deployment's lock file", path, error, "set FEDI_RUN_LOCK_DIR"
        ) from None
    try:
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
        except OSError:
            pass  # not ours to change
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(deployment, path, _holder(fd)) from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": time.time(),
            "deployment": deployment,
            "command": list(command) or list(sys.argv),
            "playbook_dir": str(Path(playbook_dir).absolute()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode() + b"\n", 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(fd: int) -> dict:
    """What the lock's holder wrote, waiting briefly if it has not yet."""
    for _ in range(40):
        data = os.pread(fd, 65536, 0)
        if data.endswith(b"\n"):
            try:
                return json.loads(data)
            except ValueError:
                return {}
        time.sleep(0.005)
    return {}
