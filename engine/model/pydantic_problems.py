"""Turning pydantic's validation errors into messages that say what was found and what was
expected, with a "did you mean" for unknown keys."""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel

from fedi_run.engine.model.validators import did_you_mean

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "float_type": "a number",
    "tuple_type": "an array",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "none_required": "nothing",
}


def dotted(key: tuple[str, ...]) -> str:
    """A key path as TOML writes it: ``services.mastodon.host``, quoting odd parts."""
    return ".".join(part if BARE_KEY.fullmatch(part) else repr(part) for part in key)


def found(value: Any) -> str:
    """A short description of a found value, never more than about 60 characters."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        shown = value if len(value) <= 50 else value[:47] + "..."
        return repr(shown) if value else "an empty string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an array" if value else "an empty array"
    return type(value).__name__


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that validates the table at ``loc`` inside ``model``, if any."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    for arg in typing.get_args(annotation) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def message(error: Any, model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The message for one pydantic error dict of ``model`` at ``loc``."""
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        allowed = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
        hint = did_you_mean(str(loc[-1]), allowed)
        return f"unknown key{hint}; expected one of: {', '.join(allowed)}"
    if kind == "missing":
        return "missing; this key is required"
    if kind in EXPECTED:
        return f"found {found(value)}, expected {EXPECTED[kind]}"
    if kind == "value_error":
        text = str(ctx.get("error", error["msg"]))
        if isinstance(value, dict):
            return text
        return f"found {found(value)}, {text}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        relation = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[kind]
        limit = next(iter(ctx.values()), "?")
        return f"found {found(value)}, expected a number {relation} {limit}"
    if kind in ("string_too_short", "too_short"):
        return (
            f"found {found(value)}, expected at least {ctx.get('min_length', 1)} "
            "character(s) or item(s)"
        )
    if kind in ("string_too_long", "too_long"):
        return (
            f"found a value that is too long, expected at most {ctx.get('max_length')} "
            "character(s) or item(s)"
        )
    return f"found {found(value)}: {error['msg']}"
