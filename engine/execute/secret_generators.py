"""Secret generators: how each kind of secret a plugin asks for is made, on the deployer.

A :class:`~fedi_run.engine.planning.operations.Secret` names its generator; the executor calls
:func:`generate` only when the secret must be written (absent on the host, or rotation asked
for), registers the value with the run's masker at once, and sends it to the host on stdin —
never on a command line, never to a log, the state file or the Nix store.
"""

from __future__ import annotations

import base64
import secrets as random
import string
from collections.abc import Callable

from fedi_run.engine.errors import FediRunError

ALPHANUMERIC = string.ascii_letters + string.digits


def _hex(count: int) -> Callable[[], str]:
    return lambda: random.token_hex(count)


def _alnum(count: int) -> Callable[[], str]:
    return lambda: "".join(random.choice(ALPHANUMERIC) for _ in range(count))


def _base64(count: int) -> Callable[[], str]:
    return lambda: base64.b64encode(random.token_bytes(count)).decode()


def garage_key_id() -> str:
    """A Garage access key id: ``GK`` and 24 hex digits."""
    return "GK" + random.token_hex(12)


def laravel_app_key() -> str:
    """A Laravel (Pixelfed) APP_KEY: ``base64:`` and 32 random bytes."""
    return "base64:" + base64.b64encode(random.token_bytes(32)).decode()


GENERATORS: dict[str, Callable[[], str]] = {
    "hex16": _hex(16),
    "hex32": _hex(32),
    "hex64": _hex(64),
    "alnum32": _alnum(32),
    "base64-32": _base64(32),
    "garage-key-id": garage_key_id,
    "laravel-app-key": laravel_app_key,
}


class UnknownGenerator(FediRunError):
    """A task asks for a secret generator that does not exist."""


def generate(name: str) -> str:
    """A fresh secret from the generator ``name`` (see :data:`GENERATORS`)."""
    try:
        generator = GENERATORS[name]
    except KeyError:
        raise UnknownGenerator(
            f"error: no secret generator {name!r}; known: {', '.join(sorted(GENERATORS))}"
        ) from None
    return generator()
