"""Secrets the panel keeps in its database, sealed: the initial users' passwords, and passwords
typed in a form round that had errors.

Contract: :func:`seal` turns a text into a token (Fernet: AES-128-CBC with HMAC-SHA256, from
the ``cryptography`` library) under a key derived (HKDF-SHA256) from the panel's secret key —
``FEDI_RUN_PANEL_SECRET_KEY``, else the data directory's ``secret-key`` file
(:func:`fedi_run.panel.paths.secret_key`); :func:`unseal` gives the text back, or raises
:class:`~fedi_run.engine.errors.SecretUnreadable` when the token was sealed under another key
(a process given another secret key) or was altered. The database never holds the text
itself, and the key is never in the database: every web and worker process of one panel must
be given the same secret key (docs/panel.md).

:func:`check_key` is run by ``serve`` and ``worker`` at start: the first process seals a known
text into the database; a process whose key cannot unseal it is refused at start (exit 2),
before it takes a run, rather than failing each run it would take.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from fedi_run.engine.errors import SecretUnreadable

_PURPOSE = b"fedi-run panel: secrets sealed in the database"
_KEY_CHECK = "fedi-run panel key check"


@lru_cache(maxsize=4)
def _fernet(secret_key: str):
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _key() -> str:
    from django.conf import settings

    return settings.SECRET_KEY


def seal(text: str) -> str:
    """``text`` sealed under the panel's key (an ASCII token, longer than the text)."""
    return _fernet(_key()).encrypt(text.encode()).decode("ascii")


def unseal(token: str, what: str = "a sealed secret") -> str:
    """The text ``token`` seals; :class:`SecretUnreadable` naming ``what`` when this process's
    key did not seal it (or the token was changed)."""
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(_key()).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError, ValueError):
        raise SecretUnreadable(what) from None


def check_key() -> None:
    """Refuse (:class:`SecretUnreadable`, exit 2) a process whose secret key is not the one
    this panel's database was sealed under; the first process records its key's check."""
    from django.db import transaction

    from fedi_run.panel.models import KeyCheck

    with transaction.atomic():
        found = KeyCheck.objects.select_for_update().filter(pk=1).first()
        if found is None:
            KeyCheck.objects.get_or_create(pk=1, defaults={"sealed": seal(_KEY_CHECK)})
            return
    if unseal(found.sealed, "the panel's key check") != _KEY_CHECK:
        raise SecretUnreadable("the panel's key check")
