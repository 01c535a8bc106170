"""What went wrong in an operator's template, in the operator's words.

:func:`explain` turns what compiling or rendering a template raised into one line: the
template's line, and for a name that is not defined the expression as the template wrote it
(``deployment.nmae``, ``hosts.mastodn``, ``deployment['nmae']``, ``nmae``), the closest name
that *is* there (``did you mean `deployment.name`?``) and what the object has. jinja2 itself
only says ``'dict object' has no attribute 'nmae'``: the sandbox's undefined values
(:class:`~fedi_run.engine.planning.template_sandbox.Sandbox`) mark the error they raise with
the object they were looked up on and the missing name (:data:`MISSING`), and the template's
syntax tree says how the template wrote the lookup.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.utils import missing

MISSING = "fedi_run_missing"
"""The attribute of a :class:`jinja2.UndefinedError` holding ``(object, name)``: the object a
lookup failed on (``jinja2.utils.missing`` for a top-level name) and the name looked up."""

MAX_LISTED = 20
"""At most this many names are listed after a name that is not defined."""


def explain(error: BaseException, source: str, context: Mapping[str, Any], globals_=()) -> str:
    """One line saying what ``error`` (raised compiling or rendering ``source`` over
    ``context``) means: ``template syntax error at line N: reason``, ``template error at line
    N: `x.y` is not defined (did you mean `x.z`?); x has: ...``, or ``template error at line N:
    <what Python said>``. ``globals_`` are the further names a template sees (``range``...)."""
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"template syntax error at line {error.lineno}: {error.message}"
    line = template_line(error)
    at = f" at line {line}" if line else ""
    if isinstance(error, jinja2.UndefinedError):
        found = getattr(error, MISSING, None)
        if found is not None:
            return f"template error{at}: " + _undefined(found, source, context, line, globals_)
    return f"template error{at}: {what(error)}"


def what(error: BaseException) -> str:
    """``error`` in a few words, with its type when that says more."""
    if isinstance(error, RecursionError):
        return "nested or recursive too deeply (RecursionError)"
    text = str(error) if not isinstance(error, MemoryError) else "out of memory"
    if isinstance(error, jinja2.TemplateError):
        return text or type(error).__name__
    return f"{text} ({type(error).__name__})" if text else type(error).__name__


def template_line(error: BaseException) -> int | None:
    """The template's line the error came from, when its traceback has it."""
    line = None
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == "<template>":
            line = frame.tb_lineno
        frame = frame.tb_next
    return line


def _undefined(
    found: tuple[Any, str], source: str, context: Mapping[str, Any], line, globals_
) -> str:
    obj, name = found
    if obj is missing:
        scope = list(context)
        close = _closest(name, [*scope, *globals_])
        hint = f" (did you mean `{close}`?)" if close else ""
        return f"`{name}` is not defined{hint}; names in scope: {_listed(scope)}"
    base, subscript = _written(obj, name, source, context, line)
    expression = f"{base}['{name}']" if subscript else f"{base}.{name}"
    if isinstance(obj, Mapping):
        keys = [str(key) for key in obj]
        close = _closest(name, keys)
        shown = f"{base}['{close}']" if subscript else f"{base}.{close}"
        hint = f" (did you mean `{shown}`?)" if close else ""
        has = f"{base} has: {_listed(keys)}" if keys else f"{base} is empty"
        return f"`{expression}` is not defined{hint}; {has}"
    kind = "a list" if isinstance(obj, (list, tuple)) else f"a {type(obj).__name__}"
    return f"`{expression}` is not defined: {base} is {kind}, not a table"


def _written(obj: Any, name: str, source: str, context: Mapping[str, Any], line) -> tuple:
    """How the template wrote the object ``obj`` that has no ``name``: ``(text, subscript)``
    — ``subscript`` when it wrote ``[...]``. Found in the syntax tree (a lookup of ``name``,
    on the error's line first, whose object is ``obj`` itself if that can be told), else by
    where ``obj`` sits in ``context``."""
    try:
        tree = jinja2.Environment().parse(source)
    except jinja2.TemplateSyntaxError:  # pragma: no cover - it rendered, so it parses
        tree = None
    candidates = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)) if tree else ():
        looked_up = node.attr if isinstance(node, nodes.Getattr) else _constant(node.arg)
        if looked_up != name:
            continue
        text = _text(node.node)
        if text is not None:
            on_line = node.lineno == line
            same = _value(node.node, context) is obj
            candidates.append((not same, not on_line, text, isinstance(node, nodes.Getitem)))
    if candidates:
        _, _, text, subscript = min(candidates)
        return text, subscript
    return _path_to(obj, context) or "the value", False


def _constant(node: nodes.Node) -> Any:
    return node.value if isinstance(node, nodes.Const) else None


def _text(node: nodes.Node) -> str | None:
    """``node`` as the template wrote it, when it is a chain of names and lookups."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = _text(node.node)
        return None if base is None else f"{base}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base = _text(node.node)
        return None if base is None else f"{base}[{node.arg.value!r}]"
    return None


def _value(node: nodes.Node, context: Mapping[str, Any]) -> Any:
    """What a chain of names and lookups is in ``context`` (``missing``: cannot tell)."""
    if isinstance(node, nodes.Name):
        return context.get(node.name, missing)
    if isinstance(node, (nodes.Getattr, nodes.Getitem)):
        base = _value(node.node, context)
        key = node.attr if isinstance(node, nodes.Getattr) else _constant(node.arg)
        if isinstance(base, Mapping) and key in base:
            return base[key]
    return missing


def _path_to(obj: Any, context: Mapping[str, Any], depth: int = 4) -> str | None:
    """The dotted path of ``obj`` in ``context`` (the first found, breadth first)."""
    level = [(str(key), value) for key, value in context.items()]
    for _ in range(depth):
        deeper = []
        for path, value in level:
            if value is obj:
                return path
            if isinstance(value, Mapping):
                deeper += [(f"{path}.{key}", child) for key, child in value.items()]
        level = deeper
    return None


def _closest(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f", ... ({len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else "")
