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
  SQLite file's directory, or the URL's server, port and database (not its user), and its
  :attr:`~StateLocation.schema` when it names one;
* :attr:`StateLocation.schema` is the schema a PostgreSQL state's tables are in when the URL
  says (libpq's ``options`` parameter setting ``search_path``, e.g.
  ``?options=-csearch_path%3Dfedi_a``: its first schema, lower-cased as PostgreSQL does), else
  None. Several deployments of one name can so share a database, each in a schema of its own.
  A location whose search_path does not start with a plain name is a :class:`StateError`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from fedi_run.engine.errors import StateError

POSTGRESQL_SCHEMES = ("postgresql", "postgres")
"""The URL schemes of a PostgreSQL state (libpq takes both)."""
DEFAULT_STATE = Path(".fedi-run") / "state.db"
"""The SQLite state, relative to the playbook's directory."""
_URL = re.compile(r"(?:postgresql|postgres)://[^\s'\"]*", re.IGNORECASE)
_USER = re.compile(r"[A-Za-z]+://([^@/?#]*)@")
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
"""A schema name fedi-run takes: a plain SQL identifier (PostgreSQL keeps 63 bytes of a name)."""


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
        if self.url is not None:
            _url_schema(self.url)  # a search_path fedi-run cannot use is refused at once

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
    def schema(self) -> str | None:
        """The first schema of the search_path the URL's ``options`` set (lower-cased), or
        None (an SQLite file; a URL that sets no search_path)."""
        return None if self.url is None else _url_schema(self.url)

    @property
    def identity(self) -> str:
        """The SQLite file's directory, or ``postgresql://host:port/database`` (with
        ``?schema=NAME`` when the URL names a schema)."""
        if self.url is None:
            return str(Path(self.path).absolute().parent)
        parts = urlsplit(self.url)
        where = parts.netloc.rpartition("@")[2]
        schema = self.schema
        return f"postgresql://{where}{parts.path}" + (f"?schema={schema}" if schema else "")

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
        kept = [p for p in parts.query.split("&") if _key(p).lower() != "password"]
        return urlunsplit((parts.scheme, netloc, parts.path, "&".join(kept), ""))
    except ValueError:  # not even a URL urllib can split: show its scheme only
        return url.partition("://")[0] + "://…"


def _url_schema(url: str) -> str | None:
    """:attr:`StateLocation.schema` of ``url``; StateError when it is not a plain name."""
    value = _search_path(url)
    if value is None:
        return None
    first = value.split(",")[0].strip()
    if not _SCHEMA.fullmatch(first):
        raise StateError(
            f"error: --state {redact_url(url)}: its options set search_path={value!r}, whose "
            f"first schema {first!r} is not a plain name; expected "
            "options=-csearch_path%3DNAME, NAME of at most 63 letters, digits and _ "
            "(not starting with a digit), such as fedi_run_site — or no search_path, "
            "to keep the tables where the database's default search_path puts them"
        )
    return first.lower()


def _key(parameter: str) -> str:
    """The name of a query ``parameter`` (``key=value``), percent-decoded as libpq does."""
    return unquote(parameter.partition("=")[0])


def _search_path(url: str) -> str | None:
    """The search_path the ``options`` query parameter of ``url`` sets (the last one, as the
    server takes them), or None. The parameter is decoded as libpq decodes it (``%XX``; a
    ``+`` stays a ``+``) and split as the server splits it (on white space, ``\\`` escaping the
    next character); a setting is ``-c NAME=VALUE``, ``-cNAME=VALUE`` or ``--NAME=VALUE``,
    ``-`` in NAME meaning ``_``."""
    query = url.partition("?")[2].partition("#")[0]
    options = [unquote(p.partition("=")[2]) for p in query.split("&") if _key(p) == "options"]
    if not options:
        return None
    words = iter(_split_options(options[-1]))
    found = None
    for word in words:
        if word == "-c":
            setting = next(words, "")
        elif word.startswith("--"):
            setting = word[2:]
        elif word.startswith("-c"):
            setting = word[2:]
        else:
            continue
        name, sep, value = setting.partition("=")
        if sep and name.replace("-", "_").lower() == "search_path":
            found = value
    return found


def _split_options(text: str) -> list[str]:
    """``text`` split as PostgreSQL splits a connection's ``options`` (``pg_split_opts``)."""
    words: list[str] = []
    word: str | None = None
    escaped = False
    for character in text:
        if escaped or not (character == "\\" or character.isspace()):
            word, escaped = (word or "") + character, False
        elif character == "\\":
            word, escaped = word or "", True
        elif word is not None:
            words.append(word)
            word = None
    return words if word is None else [*words, word]


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
