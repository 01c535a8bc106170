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
from typing import Any

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


RESERVED_HOST_NAMES = {
    "local": "it names the deployer itself: the tasks that run there are shown on host "
    "'local', and --limit local selects them",
}
"""Names a ``[hosts]`` table may not have, each with the reason."""


def check_host_name(value: str) -> str:
    """A ``[hosts]`` name: a plain name (:func:`check_plain_name`) that is not reserved."""
    check_plain_name(value)
    if value in RESERVED_HOST_NAMES:
        raise ValueError(
            f"the name {value!r} is reserved: {RESERVED_HOST_NAMES[value]}; give the host "
            "another name"
        )
    return value


def check_deployment_name(value: str) -> str:
    """A NixOps4 deployment name: letters, digits, '_' and '-', starting with a letter; not
    one of ``layout.RESERVED_DEPLOYMENT_NAMES`` (in any case), the names of fedi-run's own
    folders that a deployment's would collide with."""
    from fedi_run.engine.model.layout import RESERVED_DEPLOYMENT_NAMES

    if not DEPLOYMENT_NAME.fullmatch(value):
        raise ValueError(
            "expected a deployment name (letters, digits, '_' and '-', starting with a letter)"
        )
    if value.lower() in RESERVED_DEPLOYMENT_NAMES:
        raise ValueError(
            f"the name {value!r} is reserved: {RESERVED_DEPLOYMENT_NAMES[value.lower()]}; give "
            "the deployment another name"
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


SCOPE_ID = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}")
"""An IPv6 scope id (``fe80::1%eth0``): a plain interface name. The address reaches ssh's
options (``HostKeyAlias=``), which NixOps4 splits on spaces, and its known_hosts file."""


def check_address(value: str) -> str:
    """An IPv4 or IPv6 address, or a DNS name (a single label such as ``localhost`` too).

    An IPv6 address may carry a scope id that is a plain interface name (:data:`SCOPE_ID`:
    letters, digits, '_', '.' and '-', not starting with '-', at most 15 characters).
    """
    if "%" in value:
        address, _, scope = value.partition("%")
        if not SCOPE_ID.fullmatch(scope):
            raise ValueError(
                "expected an IPv6 address whose scope id (after '%') is an interface name such "
                "as 'eth0': letters, digits, '_', '.' and '-', not starting with '-', at most 15 "
                "characters"
            )
        try:
            ipaddress.IPv6Address(address)
            return value
        except ValueError:
            raise ValueError(
                "expected an IP address or a DNS name; only an IPv6 address has a scope id "
                "(after '%')"
            ) from None
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


ACCOUNT = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,31}")
"""A user or group name in POSIX's portable set (letters, digits, '.', '_', '-'; no leading
'-'), at most 32 characters — all digits: a numeric id."""
MAX_ID = 2**32 - 2
"""The largest user or group id (2**32 - 1 is ``(uid_t) -1``, "no change")."""
SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""A shell variable name (an environment variable a command sees, a template variable)."""


def check_owner(value: str) -> str:
    """A file's owner on a target host: ``user`` or ``user:group``, each a portable name
    (:data:`ACCOUNT`) or a numeric id."""
    parts = value.split(":")
    expected = (
        "expected 'user' or 'user:group', each a name of letters, digits, '.', '_' and '-' "
        "(not starting with '-', at most 32 characters) or a numeric id, such as 'www-data' "
        "or 'app:www-data'"
    )
    if len(parts) > 2 or not all(ACCOUNT.fullmatch(part) for part in parts):
        raise ValueError(expected)
    if any(part.isdigit() and int(part) > MAX_ID for part in parts):
        raise ValueError(f"{expected}; a numeric id is at most {MAX_ID}")
    return value


def check_shell_name(value: str) -> str:
    """An environment variable's name: letters, digits and '_', not starting with a digit."""
    if not SHELL_NAME.fullmatch(value):
        raise ValueError(
            "expected a variable name: letters, digits and '_', not starting with a digit "
            "(such as 'RAILS_ENV')"
        )
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

    The base64 blob must decode and name the same key type as the first word; the comment is
    one line of text (it ends up in a known_hosts line and a Nix string).
    """
    value = check_text(value.strip())
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


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Control characters (Unicode's category Cc) and the line and paragraph separators."""
CONTROL_IN_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
"""The same, but tab and newline: what a value of several lines (a script) may not hold."""
CONTROL_NAMES = {
    "\x00": "NUL",
    "\t": "tab",
    "\n": "newline",
    "\r": "carriage return",
    "\x1b": "ESC",
    "\x7f": "DEL",
    "\x85": "NEL",
    "\u2028": "line separator",
    "\u2029": "paragraph separator",
}


def check_text(value: str, lines: bool = False, hint: str = "") -> str:
    """Free text: no NUL or other control character — with ``lines``, tab and newline are
    allowed (a script, a file's content). A NUL cannot reach a command line, a file name or a
    Nix string; the others garble a terminal, a log or a known_hosts line."""
    found = (CONTROL_IN_LINES if lines else CONTROL).search(value)
    if found:
        character = found.group()
        name = CONTROL_NAMES.get(character, "")
        raise ValueError(
            f"with the control character U+{ord(character):04X}"
            + (f" ({name})" if name else "")
            + f" at position {found.start()}; expected text without control characters"
            + (" (tab and newline are allowed)" if lines else "")
            + hint
        )
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


NIXOS_PLATFORMS = (
    "x86_64-linux",
    "aarch64-linux",
    "i686-linux",
    "armv6l-linux",
    "armv7l-linux",
    "powerpc64le-linux",
    "riscv64-linux",
)
"""The Linux systems of nixpkgs' ``lib/systems/flake-systems.nix`` (nix-community/nixpkgs.lib
at de42d44212d207476489bce163375d8306a26d59): the ``nixpkgs.hostPlatform`` a host may have."""
STATE_VERSION = re.compile(r"[0-9]{2}\.(05|11)")
FLAKE_REF = re.compile(r"[a-z][a-z0-9+.-]*:[^\s\"'\\`$]+")


def check_nixos_platform(value: str) -> str:
    """A NixOS host platform of :data:`NIXOS_PLATFORMS`."""
    if value not in NIXOS_PLATFORMS:
        raise ValueError(
            f"expected a NixOS platform{did_you_mean(value, NIXOS_PLATFORMS)}: one of "
            + ", ".join(NIXOS_PLATFORMS)
        )
    return value


def check_state_version(value: str) -> str:
    """A NixOS release as ``system.stateVersion`` names it: ``"25.05"``, ``"24.11"``."""
    if not STATE_VERSION.fullmatch(value):
        raise ValueError("expected a NixOS release such as '25.05' or '24.11'")
    return value


def check_flake_ref(value: str) -> str:
    """A flake reference in URL form, ``<type>:<location>`` (``github:NixOS/nixpkgs/<rev>``,
    ``git+https://…``, ``path:/…``): no spaces or quotes."""
    if not FLAKE_REF.fullmatch(value):
        raise ValueError(
            "expected a flake reference such as 'github:NixOS/nixpkgs/<revision>' or "
            "'git+https://example.org/nixpkgs?rev=<revision>'"
        )
    return value


MAX_DEPTH = 64
"""How deep tables and arrays may nest in a playbook, an inventory or a configuration file:
far more than any needs, and little enough for every recursive walk of the data."""


def too_deep(document: Any, limit: int = MAX_DEPTH) -> tuple[str, ...] | None:
    """The key path (array items by index) of the first value of ``document`` nested more
    than ``limit`` tables and arrays deep, or None. Walks without recursion."""
    pending: list[tuple[Any, tuple[str, ...]]] = [(document, ())]
    while pending:
        value, key = pending.pop()
        if isinstance(value, dict):
            items: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, (list, tuple)):
            items = enumerate(value)
        else:
            continue
        if len(key) >= limit:
            return key
        pending.extend((item, (*key, str(name))) for name, item in items)
    return None


def nesting_message(key: tuple[str, ...]) -> str:
    """What :func:`too_deep`'s finding is told: ``nested too deeply …``."""
    shown = ".".join(key[:8]) + ("…" if len(key) > 8 else "")
    return (
        f"nested too deeply: more than {MAX_DEPTH} levels of tables and arrays (at {shown}); "
        f"expected at most {MAX_DEPTH}"
    )


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a close match exists among ``choices``, else ``''``."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(text: str) -> bool:
    """Whether ``text`` begins as a URL does (``postgresql://…``): a value that is not a path,
    though it stands where one may."""
    return _URL.match(text) is not None
