"""Django's settings, in code, for one panel data directory.

:func:`configure` is the one place the panel's Django settings are made: it must run before
any of the panel's Django modules (models, views) is imported, and it runs at most once per
process (Django's settings are process-wide) — a second call with the same data directory is a
no-op, with another one a :class:`~fedi_run.engine.errors.PanelError`. :func:`migrate` brings
the database up to date; ``serve`` and ``createuser`` call both.

The settings are for a panel on the deployer, reached on loopback: DEBUG off, sessions in the
database, CSRF protection on every form, cookies HttpOnly and SameSite=Lax, frames denied; the
database is SQLite in WAL mode in the data directory (web and worker processes of one machine
share it), or PostgreSQL (``database``: a ``postgresql://`` URL, :mod:`fedi_run.panel.backends`);
the broker the web processes send runs to and the workers take them from is the data
directory's own (files) or Redis (``broker``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedi_run.engine.errors import DjangoMissing, PanelError
from fedi_run.panel import paths
from fedi_run.panel.backends import Broker, broker_settings, database_settings, masked

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class Site:
    """A configured panel: its data directory, its SQLite file (None with PostgreSQL), the
    database URL (None: SQLite) and its broker."""

    data_dir: Path
    database: Path | None
    database_url: str | None = None
    broker: Broker | None = None

    @property
    def database_shown(self) -> str:
        """The database as messages name it (no password)."""
        return masked(self.database_url) if self.database_url else str(self.database)


_configured: Site | None = None


def require_django() -> None:
    """Raise :class:`DjangoMissing` (exit 2, naming the extra to install) without Django."""
    try:
        import django  # noqa: F401
    except ImportError as error:
        raise DjangoMissing(str(error)) from None


def settings_for(
    data_dir: Path, allowed_hosts: tuple[str, ...] = (), database_url: str | None = None
) -> dict:
    """The Django settings of a panel whose files live in ``data_dir`` (which must exist)."""
    return {
        "DEBUG": False,
        "SECRET_KEY": paths.secret_key(data_dir),
        "ALLOWED_HOSTS": list(dict.fromkeys([*LOOPBACK_NAMES, *allowed_hosts])),
        "ROOT_URLCONF": "fedi_run.panel.urls",
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "fedi_run.panel.apps.PanelConfig",
        ],
        "MIDDLEWARE": [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        "DATABASES": {"default": database_settings(database_url, data_dir)},
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        "AUTH_PASSWORD_VALIDATORS": [
            {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
            {
                "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
                "OPTIONS": {"min_length": 10},
            },
            {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
            {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
        ],
        "LOGIN_URL": "panel:login",
        "LOGIN_REDIRECT_URL": "panel:deployments",
        "LOGOUT_REDIRECT_URL": "panel:login",
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "USE_I18N": False,
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_NAME": "fedi_run_panel_session",
        "CSRF_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_NAME": "fedi_run_panel_csrf",
        "X_FRAME_OPTIONS": "DENY",
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "SECURE_REFERRER_POLICY": "same-origin",
        "MESSAGE_STORAGE": "django.contrib.messages.storage.session.SessionStorage",
        "FEDI_RUN_PANEL_DIR": str(data_dir),
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler"}},
            "loggers": {
                "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
                "fedi_run.panel": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            },
        },
    }


def configure(
    data_dir: Path | None = None,
    allowed_hosts: tuple[str, ...] = (),
    database: str | None = None,
    broker: str | None = None,
) -> Site:
    """Create the data directory (0700), its secret key and (SQLite) database file (0600),
    configure Django for it and the ``database`` URL (None: SQLite in the data directory), and
    the ``broker`` URL (None: the data directory's own), and set Django up. Idempotent for one
    data directory per process. A bad URL: :class:`PanelError` naming what was expected."""
    global _configured
    require_django()
    data_dir = paths.private_dir(Path(data_dir) if data_dir else paths.default_data_dir())
    if _configured is not None:
        if _configured.data_dir != data_dir:
            raise PanelError(
                f"error: this process already serves the panel of "
                f"{_configured.data_dir}, not {data_dir}"
            )
        return _configured
    import django
    from django.conf import settings

    if settings.configured:
        raise PanelError(
            "error: Django is already configured in this process by something other than the panel"
        )
    database_settings(database, data_dir)  # a bad URL is refused before anything is made
    chosen_broker = broker_settings(broker, data_dir)
    sqlite = None if database else paths.touch_private(data_dir / paths.DATABASE_FILE)
    settings.configure(**settings_for(data_dir, allowed_hosts, database))
    django.setup()
    _configured = Site(data_dir, sqlite, database or None, chosen_broker)
    return _configured


MIGRATION_LOCK = 0x66656469  # "fedi": PostgreSQL advisory lock key while migrating


def migrate() -> None:
    """Create or update the panel's tables (quietly), then check this process's secret key
    against the database's (:func:`fedi_run.panel.sealing.check_key`: another key is refused,
    exit 2). Web and worker processes starting at once take turns: a PostgreSQL advisory
    lock, or an flock in the data directory."""
    _migrate()
    from fedi_run.panel.sealing import check_key

    check_key()


def _migrate() -> None:
    import fcntl

    from django.core.management import call_command
    from django.db import connection

    site = current()
    if site.database_url:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
            try:
                call_command("migrate", interactive=False, verbosity=0)
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])
        return
    lock = paths.touch_private(site.data_dir / "migrate.lock")
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        call_command("migrate", interactive=False, verbosity=0)
    for companion in ("-wal", "-shm"):
        path = site.database.with_name(site.database.name + companion)
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o600)


def current() -> Site:
    """The configured site; PanelError if :func:`configure` has not run."""
    if _configured is None:
        raise PanelError("error: the panel is not configured in this process")
    return _configured
