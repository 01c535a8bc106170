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
