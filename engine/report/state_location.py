"""Where a deployment's run state lives: an SQLite file (the embedded default) or a PostgreSQL
database (``--state postgresql://user@host/db``).

Contract:

* :func:`locate_state` turns what ``--state`` (or the panel, or the Python API) gives — None, a
  path, or a ``postgresql://`` / ``postgres://`` URL — into a :class:`StateLocation`; None is
  ``.fedi-run/state.db`` beside the playbook;
* :attr:`StateLocation.shown` is what every message, record and lock holder shows of it: the
  path, or the URL without its password (a ``password`` query parameter too) — a password in
  the URL is never printed; :func:`without_passwords` does the same to a command line;
* :meth:`StateLocation.local_directory` is where the run keeps its *local* files (output logs,
  ACME account keys; 0700): the SQLite file's directory, or — the state being on a server —
  ``.fedi-run/`` beside the playbook; the rendered NixOps4 deployment is beside the playbook
  either way (``.fedi-run/<name>/``);
* :attr:`StateLocation.identity` names the state for what several deployers sharing it must
  agree on (the pid directory of running tasks on the hosts, ``engine.execute.jobs``): the
  SQLite file's directory, or the URL's server, port and database (not its user).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

POSTGRESQL_SCHEMES = ("postgresql", "postgres")
"""The URL schemes of a PostgreSQL state (libpq takes both)."""
DEFAULT_STATE = Path(".fedi-run") / "state.db"
"""The SQLite state, relative to the playbook's directory."""
_URL = re.compile(r"(?:postgresql|postgres)://[^\s'\"]*", re.IGNORECASE)
_USER = re.compile(r"[A-Za-z]+://([^@/?#]*)@")


def is_postgresql_url(value: str) -> bool:
    """Whether ``value`` is a ``postgresql://`` or ``postgres://`` URL (not a file name)."""
    scheme, sep, _ = str(value).partition("://")
    return bool(sep) and scheme.lower() in POSTGRESQL_SCHEMES


@dataclass(frozen=True)
class StateLocation:
    """An SQLite ``path`` or a PostgreSQL ``url`` (exactly one of them)."""

    path: Path | None = None
    url: str | None = field(default=None, repr=False)  # may carry a password: never shown

    def __post_init__(self):
        if (self.path is None) == (self.url is None):
            raise ValueError("a state location is a path or a URL")

    @property
    def postgresql(self) -> bool:
        return self.url is not None

    @property
    def shown(self) -> str:
        """The path, or the URL without its password."""
        return str(self.path) if self.url is None else redact_url(self.url)

    def __str__(self) -> str:
        return self.shown

    @property
    def identity(self) -> str:
        """The SQLite file's directory, or ``postgresql://host:port/database``."""
        if self.url is None:
            return str(Path(self.path).absolute().parent)
        parts = urlsplit(self.url)
        where = parts.netloc.rpartition("@")[2]
        return f"postgresql://{where}{parts.path}"

    def local_directory(self, playbook_source: Path) -> Path:
        """Where the run's local files go (see the module's docstring)."""
        if self.url is None:
            return Path(self.path).absolute().parent
        return Path(playbook_source).absolute().parent / DEFAULT_STATE.parent


def locate_state(
    value: StateLocation | Path | str | None, playbook_source: Path | None
) -> StateLocation:
    """The state ``value`` names (None: the SQLite file beside the playbook ``playbook_source``)."""
    if isinstance(value, StateLocation):
        return value
    if value is None:
        if playbook_source is None:
            raise ValueError("no state given, and no playbook to find the default one beside")
        return StateLocation(path=Path(playbook_source).absolute().parent / DEFAULT_STATE)
    if isinstance(value, str) and is_postgresql_url(value):
        return StateLocation(url=value)
    return StateLocation(path=Path(value).absolute())


def redact_url(url: str) -> str:
    """``url`` without the password of its user part or of a ``password`` query parameter."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, where = netloc.rpartition("@")
            name = user.partition(":")[0]
            netloc = f"{name}@{where}" if name else where
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        kept = [(k, v) for k, v in query if k.lower() != "password"]
        text = urlencode(kept, quote_via=quote) if len(kept) != len(query) else parts.query
        return urlunsplit((parts.scheme, netloc, parts.path, text, ""))
    except ValueError:  # not even a URL urllib can split: show its scheme only
        return url.partition("://")[0] + "://…"


def url_password(url: str) -> str | None:
    """The password ``url`` carries (user part or query), or None — to keep it out of messages."""
    found = _USER.match(url)  # by hand: also in a URL urllib cannot split
    user = found.group(1) if found else ""
    if ":" in user:
        return unquote(user.partition(":")[2]) or None
    query = url.partition("?")[2].partition("#")[0]
    for key, value in parse_qsl(query):
        if key.lower() == "password":
            return value or None
    return None


def scrubbed(text: str, url: str) -> str:
    """``text`` (a driver's message) with ``url`` shown redacted and its password, as given or
    decoded, replaced by ``***``."""
    text = text.replace(url, redact_url(url)) if url else text
    password = url_password(url)
    if not password:
        return text
    for form in {password, quote(password, safe=""), quote(password)}:
        text = text.replace(form, "***")
    return text


def without_passwords(argv: Sequence[str]) -> tuple[str, ...]:
    """``argv`` with every PostgreSQL URL in it redacted (:func:`redact_url`)."""
    return tuple(_URL.sub(lambda found: redact_url(found.group(0)), str(arg)) for arg in argv)
