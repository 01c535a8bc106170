"""Writing Nix: values as Nix literals, and the modules plugins contribute to the deployment.

:func:`to_nix` writes any JSON-like value as a Nix expression that evaluates to the same data
(strings escaped, so no value can inject Nix code). :func:`render_template` renders a plugin's
jinja2 template with the ``nix`` filter (``{{ value | nix }}``) and StrictUndefined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*")
KEYWORDS = {"if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"}


@dataclass(frozen=True)
class NixModule:
    """A plugin's part of a host's NixOS configuration: ``text`` is a NixOS module (an
    expression), written to ``hosts/<host>/<name>.nix`` and imported by the host's module."""

    name: str
    text: str


def _string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def _key(key: str) -> str:
    return key if IDENTIFIER.fullmatch(key) and key not in KEYWORDS else _string(key)


def to_nix(value: Any, indent: int = 0) -> str:
    """``value`` (None, bool, int, float, str, list/tuple, dict with str keys) as Nix."""
    pad = "  " * indent
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return "[ ]"
        items = "".join(f"{pad}  {to_nix(item, indent + 1)}\n" for item in value)
        return f"[\n{items}{pad}]"
    if isinstance(value, dict):
        if not value:
            return "{ }"
        items = "".join(f"{pad}  {_key(str(k))} = {to_nix(v, indent + 1)};\n" for k, v in value.items())
        return f"{{\n{items}{pad}}}"
    raise TypeError(f"cannot write {type(value).__name__} as Nix")


@lru_cache(maxsize=None)
def _environment(package: str):
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
    )
    environment.filters["nix"] = to_nix
    return environment


def render_template(package: str, template: str, **context: Any) -> str:
    """Render ``templates/<template>`` of the Python package ``package`` with ``context``."""
    return _environment(package).get_template(template).render(**context)
