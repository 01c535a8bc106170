"""Where the panel keeps its files, and how they are created.

The data directory (``--data-dir``, else ``$FEDI_RUN_PANEL_DIR``, else
``~/.local/share/fedi-run/panel``) is mode 0700 and holds:

================================  ==============================================================
``secret-key``                    the panel's secret key, generated once (0600), unless
                                  ``$FEDI_RUN_PANEL_SECRET_KEY`` gives it
``panel.sqlite3``                 the panel's database when it is SQLite (0600)
``environments/<key>/``           an environment's ``inventory.toml``, written from its rows
``deployments/<key>/``            one directory per deployment (0700):
``  playbook.toml``               written from the deployment's row
``  initial-user-password``       the initial user's password, only while a run needs it (0600)
``  .fedi-run/``                  the engine's local files (its SQLite state when the panel is
                                  on SQLite, output logs, rendering, ACME account key)
================================  ==============================================================

Each file is written from the database by the process that needs it
(:mod:`fedi_run.panel.deployment_files`): processes on different machines share no file.
Every function here creates directories 0700 and files 0600 whatever the umask, and raises
:class:`~fedi_run.engine.errors.DataDirError` naming the path when it cannot.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fedi_run.engine.errors import DataDirError
from fedi_run.engine.private_files import make_private_dirs, write_atomically

ENVIRONMENT = "FEDI_RUN_PANEL_DIR"
SECRET_KEY_FILE = "secret-key"
SECRET_KEY_ENVIRONMENT = "FEDI_RUN_PANEL_SECRET_KEY"
DATABASE_FILE = "panel.sqlite3"
DEPLOYMENTS = "deployments"
PLAYBOOK_FILE = "playbook.toml"
PASSWORD_FILE = "initial-user-password"


def default_data_dir() -> Path:
    """``$FEDI_RUN_PANEL_DIR``, else ``$XDG_DATA_HOME/fedi-run/panel`` (default
    ``~/.local/share/fedi-run/panel``)."""
    if os.environ.get(ENVIRONMENT):
        return Path(os.environ[ENVIRONMENT]).expanduser().absolute()
    base = os.environ.get("XDG_DATA_HOME") or Path("~/.local/share").expanduser()
    return Path(base).absolute() / "fedi-run" / "panel"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, or make an existing one 0700."""
    path = Path(path).absolute()
    try:
        make_private_dirs(path, narrow=True)
    except OSError as error:
        raise DataDirError(
            f"error: cannot create the panel's directory {path}: "
            f"{error.strerror or error}; pass --data-dir DIR (or set "
            f"{ENVIRONMENT}) to keep the panel's files elsewhere"
        ) from None
    if not path.is_dir():
        raise DataDirError(f"error: {path} is not a directory; pass --data-dir DIR")
    return path


def write_private(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` with mode 0600 (a new file renamed into place: never half
    written, never readable by others even for a moment)."""
    path = Path(path)
    try:
        write_atomically(path, data.encode() if isinstance(data, str) else data)
    except OSError as error:
        raise DataDirError(f"error: cannot write {path}: {error.strerror or error}") from None
    return path


def touch_private(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 when absent (for SQLite, before it opens it)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError as error:
        raise DataDirError(f"error: cannot create {path}: {error.strerror or error}") from None
    return path


def secret_key(data_dir: Path) -> str:
    """The panel's secret key (Django's SECRET_KEY, and the key of what it seals in its
    database, :mod:`fedi_run.panel.sealing`): ``$FEDI_RUN_PANEL_SECRET_KEY`` when set (50
    characters or more: every process of a panel on several machines is given the same), else
    read from ``<data dir>/secret-key``, generated there (0600) the first time."""
    given = os.environ.get(SECRET_KEY_ENVIRONMENT, "")
    if given:
        if len(given.strip()) < 50:
            raise DataDirError(
                f"error: {SECRET_KEY_ENVIRONMENT} holds {len(given.strip())} characters; "
                "expected a secret key of 50 characters or more (such as `python3 -c 'import "
                "secrets; print(secrets.token_urlsafe(64))'` prints), the same for every web "
                "and worker process of the panel"
            )
        return given.strip()
    path = Path(data_dir) / SECRET_KEY_FILE
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    except OSError as error:
        raise DataDirError(f"error: cannot read {path}: {error.strerror or error}") from None
    if len(existing) >= 50:
        return existing
    key = secrets.token_urlsafe(64)
    write_private(path, key + "\n")
    return key


def deployment_dir(data_dir: Path, key: str) -> Path:
    """``<data dir>/deployments/<key>``, created 0700."""
    private_dir(Path(data_dir) / DEPLOYMENTS)
    return private_dir(Path(data_dir) / DEPLOYMENTS / key)
