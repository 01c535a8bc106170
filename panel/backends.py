"""Where the panel's processes meet: the database (``--database``) and the broker (``--broker``).

:func:`database_settings` turns a ``--database`` value into Django's ``DATABASES["default"]``:
none — the SQLite file in the data directory, in WAL mode (web and worker processes of one
machine share it); ``postgresql://[USER[:PASSWORD]@][HOST][:PORT]/NAME[?host=/socket/dir&…]``
— PostgreSQL through psycopg (every web and worker process on any machine).
:func:`broker_settings` turns ``--broker`` into Celery's broker: none — kombu's filesystem
transport in ``<data dir>/broker/`` (the embedded default: ``panel serve`` and the worker it
starts, on one machine, no server); ``redis://[:PASSWORD@]HOST[:PORT][/DB]`` (or
``rediss://``) — Redis.

A password belongs in the environment variable (``FEDI_RUN_PANEL_DATABASE``,
``FEDI_RUN_PANEL_BROKER``), in ``~/.pgpass``, or nowhere (peer authentication on a socket),
never on a command line (:func:`refuse_password_on_command_line`); :func:`masked` is the form
every message shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from fedi_run.engine.errors import PanelError

POSTGRESQL_SCHEMES = ("postgresql", "postgres")
REDIS_SCHEMES = ("redis", "rediss")
BROKER_DIR = "broker"


@dataclass(frozen=True)
class Broker:
    """Celery's broker: its URL and transport options (the embedded one: folders)."""

    url: str
    options: dict
    embedded: bool

    @property
    def shown(self) -> str:
        return (
            "the panel's own broker (files in the data directory)"
            if self.embedded
            else masked(self.url)
        )


def masked(url: str) -> str:
    """``url`` with its password, if any, replaced by ``********``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{user}:********@{host}").geturl()


def refuse_password_on_command_line(option: str, url: str | None, variable: str) -> None:
    """A URL with a password given as a command-line option is refused (others on the machine
    can read a command line)."""
    if url and urlsplit(url).password is not None:
        raise PanelError(
            f"error: {option} {masked(url)} holds a password, and a command line can be read by "
            f"every user of the machine; expected the URL without its password on the command "
            f"line: put the whole URL in the environment variable {variable} instead (or, for "
            "PostgreSQL, the password in ~/.pgpass)"
        )


def database_settings(url: str | None, data_dir: Path) -> dict:
    """Django's ``DATABASES["default"]`` for ``url`` (None: the data directory's SQLite)."""
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(Path(data_dir) / "panel.sqlite3"),
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if parts.scheme not in POSTGRESQL_SCHEMES or not name:
        raise PanelError(
            f"error: --database {masked(url)} is not a PostgreSQL URL; expected "
            "postgresql://[USER@][HOST][:PORT]/NAME (with ?host=/socket/directory for a Unix "
            "socket), or no --database for the SQLite file in the data directory"
        )
    options = dict(parse_qsl(parts.query))
    host = options.pop("host", "") or unquote(parts.hostname or "")
    try:
        port = parts.port
    except ValueError:
        raise PanelError(f"error: --database {masked(url)}: the port is not a number") from None
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(port or ""),
        "OPTIONS": options,
        "CONN_HEALTH_CHECKS": True,
    }


def broker_settings(url: str | None, data_dir: Path) -> Broker:
    """Celery's broker for ``url`` (None: the embedded filesystem broker in the data dir)."""
    if not url:
        from fedi_run.panel import paths

        base = paths.private_dir(Path(data_dir) / BROKER_DIR)
        queue = paths.private_dir(base / "queue")
        control = paths.private_dir(base / "control")
        return Broker(
            "filesystem://localhost//",
            {
                "data_folder_in": str(queue),
                "data_folder_out": str(queue),
                "control_folder": str(control),
                "store_processed": False,
                "polling_interval": 0.2,
            },
            True,
        )
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES or not parts.hostname:
        raise PanelError(
            f"error: --broker {masked(url)} is not a Redis URL; expected "
            "redis://HOST[:PORT][/DB] (or rediss:// for TLS), or no --broker for the panel's "
            "own broker in the data directory (one machine)"
        )
    return Broker(url, {"visibility_timeout": 24 * 3600}, False)
