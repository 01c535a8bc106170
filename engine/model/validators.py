"""Checks for the names and addresses that reach a shell, a URL or a Nix file.

Each ``check_*`` function returns its argument unchanged when it is acceptable and raises
:class:`ValueError` with a message saying what was expected otherwise. They are used as pydantic
validators by the playbook model, so every value is checked where it enters.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import re
from collections.abc import Iterable

PLAIN_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
DEPLOYMENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
POSIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
USERNAME = re.compile(r"[A-Za-z0-9_]{1,30}")
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}")
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
HOST_KEY = re.compile("(" + "|".join(HOST_KEY_TYPES) + r") [A-Za-z0-9+/]{16,}={0,3}( [^\n\r]*)?")


def check_plain_name(value: str) -> str:
    """A host, service or task name: lowercase letters, digits and '-', starting with a letter."""
    if not PLAIN_NAME.fullmatch(value):
        raise ValueError(
            "expected a plain name (lowercase letters, digits and '-', starting with a letter, "
            "at most 63 characters)"
        )
    return value


def check_deployment_name(value: str) -> str:
    """A NixOps4 deployment name: letters, digits, '_' and '-', starting with a letter."""
    if not DEPLOYMENT_NAME.fullmatch(value):
        raise ValueError(
            "expected a deployment name (letters, digits, '_' and '-', starting with a letter)"
        )
    return value


def check_dns_name(value: str) -> str:
    """A fully qualified DNS name in lowercase, such as ``fediversity.net``."""
    labels = value.split(".")
    if (
        len(value) > 253
        or len(labels) < 2
        or not all(DNS_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValueError("expected a DNS name such as 'fediversity.net' (lowercase, with a dot)")
    return value


def check_address(value: str) -> str:
    """An IPv4 or IPv6 address, or a DNS name (a single label such as ``localhost`` too)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    labels = value.split(".")
    if len(value) <= 253 and all(DNS_LABEL.fullmatch(label) for label in labels):
        return value
    raise ValueError("expected an IP address or a DNS name")


def check_posix_user(value: str) -> str:
    """A login name on a target host."""
    if not POSIX_USER.fullmatch(value):
        raise ValueError("expected a user name (lowercase letters, digits, '_' and '-')")
    return value


def check_username(value: str) -> str:
    """An account name in the Fediverse services: letters, digits and '_'."""
    if not USERNAME.fullmatch(value):
        raise ValueError("expected a user name of 1 to 30 letters, digits or '_'")
    return value


def check_email(value: str) -> str:
    """An e-mail address such as ``admin@fediversity.net``."""
    if not EMAIL.fullmatch(value):
        raise ValueError("expected an e-mail address such as 'admin@example.org'")
    return value


def check_host_key(value: str) -> str:
    """A pinned SSH public key as in known_hosts: ``ssh-ed25519 AAAA...`` (comment allowed).

    The base64 blob must decode and name the same key type as the first word.
    """
    value = value.strip()
    expected = (
        "expected an SSH public key such as 'ssh-ed25519 AAAA...' "
        f"(one of {', '.join(HOST_KEY_TYPES)})"
    )
    if not HOST_KEY.fullmatch(value):
        raise ValueError(expected)
    key_type, blob = value.split()[:2]
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(expected + "; its key data is not valid base64") from None
    length = int.from_bytes(raw[:4], "big")
    if raw[4 : 4 + length] != key_type.encode():
        raise ValueError(expected + f"; its key data is not a {key_type} key")
    return value


def check_tag(value: str) -> str:
    """A task tag: letters, digits, '_', '.' and '-'."""
    if not TAG.fullmatch(value):
        raise ValueError("expected a tag (letters, digits, '_', '.' and '-')")
    return value


def check_https_url(value: str) -> str:
    """An ``https://`` URL with a host, and no spaces or quotes."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or re.search(r"[\s\"'\\`$]", value):
        raise ValueError("expected an https:// URL")
    return value


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a close match exists among ``choices``, else ``''``."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
