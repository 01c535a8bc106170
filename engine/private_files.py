"""Files and directories private to the deployer's user, whatever the umask.

Contract:

* :func:`make_private_dirs` creates a directory and every missing parent with mode 0700 (not
  ``mkdir(parents=True)``, whose parents get the umask's mode); with ``narrow``, an existing
  directory of a wider mode is narrowed to 0700 too. Raises ``OSError`` (its ``filename`` the
  directory that could not be made) for the caller to word.
* :func:`write_atomically` replaces a file with new content at once — readers see the old file
  or the new one, never half of it — through a temporary file in the same directory that is
  created 0600 (``mkstemp``: never readable by others, even while it fills), set to ``mode``,
  synced, and renamed; on failure the temporary file is removed and the error raised.
* :func:`cannot_write` says why a file the run will write (a report, known_hosts) could not be
  written, before the run starts.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def make_private_dirs(directory: Path, *, narrow: bool = False) -> None:
    """``directory`` and its missing parents exist, those created with mode 0700."""
    directory = Path(directory)
    missing, parent = [], directory
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for new in reversed(missing):
        try:
            os.mkdir(new, 0o700)
        except FileExistsError:
            continue
        os.chmod(new, 0o700)  # mkdir's mode is filtered by the umask
    if narrow and directory.is_dir() and stat.S_IMODE(directory.stat().st_mode) != 0o700:
        os.chmod(directory, 0o700)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (mode ``mode``) at once; its directory must exist."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # exact: the umask may have narrowed mkstemp's 0600
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def cannot_write(path: Path, *, replaced: bool = False) -> str | None:
    """Why the file ``path`` could not be written — appended to, or with ``replaced`` replaced
    at once (:func:`write_atomically`) — creating its missing directories, or None when it
    can. Tried, not guessed from mode bits (root ignores those; a read-only or a virtual file
    system does not): an existing file is opened for appending, else (and for ``replaced``) a
    temporary file is made and removed in the nearest existing directory above it."""
    path = Path(path)
    try:
        if path.is_dir():
            return "it is a directory; expected a file's path"
        if path.exists() and not replaced:
            with open(path, "ab"):
                return None
        parent = next(p for p in path.parents if os.path.lexists(p))
        if not parent.is_dir():
            return f"{parent} is not a directory"
        descriptor, temporary = tempfile.mkstemp(dir=parent, prefix=".fedi-run-check.")
        os.close(descriptor)
        os.unlink(temporary)
    except OSError as error:
        return f"cannot be written: {error.strerror or error}"
    return None
