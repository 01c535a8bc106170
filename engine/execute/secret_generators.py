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
from collections.abc import Callable, Mapping
from types import MappingProxyType

from fedi_run.engine.errors import ActionFailed, UnknownGenerator

ALPHANUMERIC = string.ascii_letters + string.digits


def _hex(count: int) -> Callable[[], str]:
    return lambda: random.token_hex(count)


def _alnum(count: int) -> Callable[[], str]:
    return lambda: "".join(random.choice(ALPHANUMERIC) for _ in range(count))


def _base64(count: int) -> Callable[[], str]:
    return lambda: base64.b64encode(random.token_bytes(count)).decode()


GENERIC: Mapping[str, Callable[[], str]] = MappingProxyType(
    {
        "hex16": _hex(16),
        "hex32": _hex(32),
        "hex64": _hex(64),
        "alnum32": _alnum(32),
        "base64-32": _base64(32),
    }
)
"""The engine's own generators, which know no service: ``hexN`` is N random bytes as 2N hex
digits, ``alnum32`` 32 letters and digits, ``base64-32`` 32 random bytes in base64. A format of
a service's own comes from its plugin (hook ``fedi_run_secret_generators``); the project holds
the merged set (``Project.secret_generators``) and hands it to the executor in
:class:`~fedi_run.engine.execute.context.Context`."""


def generate(name: str, generators: Mapping[str, Callable[[], str]] = GENERIC) -> str:
    """A fresh secret from the generator ``name`` of ``generators`` (the run's: the generic
    ones and the plugins'). The project checks every name when it loads, so an unknown one
    here is a task built outside a project."""
    try:
        generator = generators[name]
    except KeyError:
        raise UnknownGenerator(
            f"error: no secret generator {name!r}; known: {', '.join(sorted(generators))}"
        ) from None
    value = generator()
    if not isinstance(value, str) or not value or "\n" in value:
        what = "an empty or multi-line str" if isinstance(value, str) else type(value).__name__
        raise ActionFailed(
            f"the secret generator {name!r} returned {what}; expected one line of text"
        )
    return value
