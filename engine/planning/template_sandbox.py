"""The sandbox the operator's templates (``[tasks.*] run``, ``undo``, ``file.content``) render in.

jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` keeps a template away from
Python's internals (no attribute starting with ``_``) and from changing the values it is given
(no ``append``, ``update``, ``pop``: the hosts' tables are shared by every host's rendering). On
top of it, :func:`render` bounds what one rendering may cost, so that a template can neither hang
the run nor eat the deployer's memory:

* every value the template builds — by an operator (``*``, ``**``, ``+``, ``%`` …), a call
  (``'x'.center(n)``, ``','.join(…)``, ``'{}'.format(…)``), a filter, ``~``, or a list, tuple or
  dict literal — holds at most :data:`MAX_LENGTH` characters and items, counted through nested
  values; what would be larger is refused *before* it is built where it is built in one step
  (a repeated string, a width, a join, a replace, a ``%`` or ``format`` with widths);
* an integer has at most :data:`MAX_INT_BITS` bits; a float operation that overflows is an
  error, not ``inf``;
* at most :data:`MAX_STEPS` loop iterations and calls, at most :data:`MAX_OUTPUT` characters
  output (counted inside macros and ``{% set %}`` blocks too), within :data:`MAX_SECONDS`;
* ``range`` stops at jinja2's ``MAX_RANGE`` (100,000); ``lipsum`` is not there; ``striptags``,
  whose time grows with the square of its text, reads at most :data:`MAX_STRIPTAGS` characters.

The steps and the deadline are counted between operations: one operation runs to its end, and
the sizes above are what keep each one short.

What goes over a limit raises :class:`~jinja2.sandbox.SecurityError` saying which limit; it and
every other error a template raises while rendering are reported by
:mod:`~fedi_run.engine.planning.user_tasks` as the playbook problem of the key.
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
import shlex
import string
import time
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import missing
from jinja2.visitor import NodeTransformer

from fedi_run.engine.planning import template_errors

MAX_LENGTH = 1 << 20
"""Characters and items one value may hold, counted through nested lists and tables."""
MAX_OUTPUT = 1 << 24
"""Characters one rendering may output in all (inside macros and ``{% set %}`` blocks too)."""
MAX_INT_BITS = 1 << 16
"""Bits an integer the template computes may have."""
MAX_STEPS = 1_000_000
"""Loop iterations and calls one rendering may make."""
MAX_SECONDS = 5.0
"""How long one rendering may take."""
MAX_INDENT = 64
"""The largest ``indent`` ``tojson`` takes."""
MAX_STRIPTAGS = 100_000
"""The longest text ``striptags`` takes: its time grows with the square of the length."""

_LOOP, _VALUE, _OUT = "_fedi_run_loop", "_fedi_run_value", "_fedi_run_output"


@dataclass
class _Budget:
    deadline: float
    steps: int = 0
    output: int = 0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "fedi_run_template_budget", default=None
)


def _too(what: str) -> SecurityError:
    return SecurityError(
        f"the template {what} (a limit of the sandbox, so that no template hangs the run or "
        "fills the deployer's memory)"
    )


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is None:  # compiling: jinja2 folds constants with the filters
        return
    budget.steps += 1
    if budget.steps > MAX_STEPS:
        raise _too(f"makes more than {MAX_STEPS} loop iterations and calls")
    if time.monotonic() > budget.deadline:
        raise _too(f"takes longer than {MAX_SECONDS:g} seconds to render")


CONTAINERS = (dict, list, tuple, set, frozenset)
"""What :func:`size` counts through (the template's context is plain data)."""


def _leaf_size(item: Any) -> int:
    if isinstance(item, (str, bytes, bytearray, range)):
        return len(item)
    if isinstance(item, int) and not isinstance(item, bool):
        return 1 + item.bit_length() // 3  # about its decimal digits
    return 1


def _children(item: Any) -> Iterable[Any]:
    return chain(item.keys(), item.values()) if isinstance(item, dict) else item


def size(value: Any, limit: int = MAX_LENGTH) -> int:
    """The characters and items of ``value``, counted through lists, tuples, sets and
    mappings: an item held twice counts twice, as it prints twice. Each list or table is
    visited once (a value that holds another many times is not walked many times), and a
    count past ``limit`` is not made exact: ``limit + 1`` or more."""
    if not isinstance(value, CONTAINERS):
        return _leaf_size(value)
    known: dict[int, int] = {}
    pending: list[tuple[Any, bool]] = [(value, False)]
    while pending:
        item, expanded = pending.pop()
        if id(item) in known:
            continue
        if len(item) > limit:
            known[id(item)] = len(item)
        elif not expanded:
            pending.append((item, True))
            pending.extend(
                (child, False)
                for child in _children(item)
                if isinstance(child, CONTAINERS) and id(child) not in known
            )
        else:
            total = len(item)
            for child in _children(item):
                if isinstance(child, CONTAINERS):
                    total += known.get(id(child), limit + 1)  # not known: a cycle
                else:
                    total += _leaf_size(child)
                if total > limit:
                    break
            known[id(item)] = total
    return known[id(value)]


def checked(value: Any) -> Any:
    """``value``, when it is within :data:`MAX_LENGTH` and :data:`MAX_INT_BITS`."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise _too(f"computes an integer of more than {MAX_INT_BITS} bits")
    elif isinstance(value, (str, bytes, *CONTAINERS)):
        if size(value) > MAX_LENGTH:
            raise _too(f"builds a value of more than {MAX_LENGTH} characters and items")
    return value


def _at_most(estimate: int, how: str) -> None:
    if estimate > MAX_LENGTH:
        raise _too(f"would build a value of more than {MAX_LENGTH} characters by {how}")


def _width(value: Any, what: str) -> None:
    if isinstance(value, int) and abs(value) > MAX_LENGTH:
        raise _too(f"asks for {what} of {value}, more than {MAX_LENGTH}")


# --- operators ----------------------------------------------------------------------------------

SEQUENCES = (str, bytes, list, tuple)
PERCENT = re.compile(
    r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([diouxXeEfFgGcrsab%])"
)


def _check_percent(template: Any, values: Any) -> None:
    """Before ``template % values``: no width or precision over the limit, and a result
    within it (each conversion counted as large as the largest value)."""
    if not isinstance(template, (str, bytes)):
        return
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    conversions = PERCENT.findall(text)
    items = values if isinstance(values, tuple) else (values,)
    if isinstance(values, Mapping):
        items = tuple(values.values())
    largest = max((size(v) for v in items), default=0)
    widths = 0
    for width, precision, _ in conversions:
        for number in (width, precision):
            if number == "*":
                for value in items:
                    _width(value, "a width")
            elif number:
                _width(int(number), "a width")
                widths += int(number)
    _at_most(len(text) + widths + len(conversions) * largest, "formatting with %")


def _format_template(method: Any) -> str | None:
    """The string of a bound ``str.format`` or ``str.format_map``, else None."""
    if (
        isinstance(method, (types.MethodType, types.BuiltinMethodType))
        and method.__name__ in ("format", "format_map")
        and isinstance(method.__self__, str)
    ):
        return method.__self__
    return None


def _check_format(template: str, args: tuple, kwargs: Mapping[str, Any]) -> None:
    """Before ``template.format(*args, **kwargs)``, as :func:`_check_percent`."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # format itself says what is wrong
    values = (*args, *kwargs.values())
    largest = max((size(v) for v in values), default=0)
    widths = 0
    count = 0
    for _, name, spec, _ in fields:
        if name is None:
            continue
        count += 1
        for number in re.findall(r"\d+", spec or ""):
            _width(int(number), "a width")
            widths += int(number)
        if spec and "{" in spec:
            for value in values:
                _width(value, "a width")
            count += spec.count("{")
    _at_most(len(template) + widths + count * largest, "formatting")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    ints = all(isinstance(v, int) for v in (left, right))
    if operator == "**" and ints:
        if right > 0 and abs(left) > 1:
            if right > MAX_INT_BITS or right * (abs(left).bit_length() - 1) > MAX_INT_BITS:
                raise _too(f"computes an integer of more than {MAX_INT_BITS} bits")
    elif operator == "*":
        if ints:
            if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
                raise _too(f"computes an integer of more than {MAX_INT_BITS} bits")
        elif isinstance(left, SEQUENCES) and isinstance(right, int):
            _at_most(size(left) * max(right, 0), "repeating a value")
        elif isinstance(right, SEQUENCES) and isinstance(left, int):
            _at_most(size(right) * max(left, 0), "repeating a value")
    elif operator == "+":
        if isinstance(left, SEQUENCES) and isinstance(right, SEQUENCES):
            _at_most(size(left) + size(right), "adding")
    elif operator == "%":
        _check_percent(left, right)


def _binop(operator: str, left: Any, right: Any) -> Any:
    _check_binop(operator, left, right)
    result = ImmutableSandboxedEnvironment.default_binop_table[operator](left, right)
    if (
        isinstance(result, float)
        and not math.isfinite(result)
        and all(not isinstance(v, float) or math.isfinite(v) for v in (left, right))
    ):
        raise OverflowError(f"{left!r} {operator} {right!r} is too large for a number (overflow)")
    return checked(result)


# --- calls --------------------------------------------------------------------------------------

WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "to_bytes"})


def _check_method(obj: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
    """Before calling a method of a string or a number: what it would build is within the
    limits. Returns the arguments to call it with (an iterable to join made a list)."""
    receiver = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if not isinstance(receiver, (str, bytes, int)) or isinstance(receiver, bool):
        return args, kwargs
    if name in WIDTH_METHODS:
        for value in (*args, *kwargs.values()):
            _width(value, "a width")
    elif name == "expandtabs" and isinstance(receiver, (str, bytes)):
        tabs = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabs, int):
            tab = "\t" if isinstance(receiver, str) else b"\t"
            _at_most(len(receiver) + receiver.count(tab) * max(tabs, 0), "expanding tabs")
    elif name == "replace" and isinstance(receiver, (str, bytes)) and len(args) >= 2:
        _check_replace(receiver, args[0], args[1])
    elif name == "join" and isinstance(receiver, (str, bytes)) and len(args) == 1:
        items = list(args[0]) if isinstance(args[0], Iterable) else args[0]
        if isinstance(items, list):
            _at_most(
                sum(size(item) for item in items) + len(receiver) * max(len(items) - 1, 0),
                "joining",
            )
        args = (items,)
    elif name == "translate" and isinstance(receiver, str) and args:
        table = args[0]
        if isinstance(table, Mapping):
            largest = max((size(v) for v in table.values() if isinstance(v, str)), default=1)
            _at_most(len(receiver) * largest, "translating")
    return args, kwargs


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(old, (str, bytes)) and isinstance(new, (str, bytes)):
        if not old:
            grows = (len(text) + 1) * len(new)
        else:
            grows = text.count(old) * max(len(new) - len(old), 0) if type(old) is type(text) else 0
        _at_most(len(text) + grows, "replacing")


# --- filters ------------------------------------------------------------------------------------


def _check_filter(name: str, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
    """Before the filter ``name`` runs on ``args[0]`` (the value) with the rest."""
    if not args:
        return args, kwargs
    value, rest = args[0], args[1:]

    def arg(position: int, keyword: str, default: Any = None) -> Any:
        return rest[position] if len(rest) > position else kwargs.get(keyword, default)

    if name == "center":
        _width(arg(0, "width"), "a width")
    elif name in ("batch", "slice"):
        _width(arg(0, "linecount" if name == "batch" else "slices"), "a count")
    elif name == "indent":
        width = arg(0, "width", 4)
        _width(width, "an indent")
        if isinstance(value, str):
            each = len(width) if isinstance(width, str) else max(width or 0, 0)
            _at_most(len(value) + (value.count("\n") + 2) * each, "indenting")
    elif name == "wordwrap" and isinstance(value, str):
        width = arg(0, "width", 79)
        wrap = arg(2, "wrapstring", "\n")
        if isinstance(width, int) and isinstance(wrap, str) and width > 0:
            _at_most(len(value) + (len(value) // width + 1) * len(wrap), "wrapping lines")
    elif name == "format":
        _check_percent(value, kwargs or tuple(rest))
    elif name == "replace" and isinstance(value, str):
        _check_replace(value, arg(0, "old"), arg(1, "new"))
    elif name == "join":
        items = list(value) if isinstance(value, Iterable) and not isinstance(value, str) else value
        if isinstance(items, list):
            separator = arg(0, "d", "")
            sep = len(separator) if isinstance(separator, str) else 0
            _at_most(sum(size(i) for i in items) + sep * max(len(items) - 1, 0), "joining")
        args = (items, *rest)
    elif name == "tojson":
        indent = arg(0, "indent")
        if (isinstance(indent, int) and indent > MAX_INDENT) or (
            isinstance(indent, str) and len(indent) > MAX_INDENT
        ):
            raise _too(f"asks tojson for an indent over {MAX_INDENT}")
    elif name == "striptags" and isinstance(value, str) and len(value) > MAX_STRIPTAGS:
        raise _too(f"asks striptags to read more than {MAX_STRIPTAGS} characters")
    elif name == "urlize" and isinstance(value, str):
        added = sum(size(v) for v in (*rest, *kwargs.values()) if isinstance(v, str))
        _at_most(len(value) * (2 + added), "making links")
    return args, kwargs


def _sum(environment: jinja2.Environment, iterable: Any, attribute: Any = None, start: Any = 0):
    """jinja2's ``sum``, in linear time when it adds up lists or tuples (``start=[]``)."""
    original = jinja2.filters.FILTERS["sum"]
    if isinstance(start, (list, tuple)):
        items = list(iterable)
        if attribute is not None:
            getter = jinja2.filters.make_attrgetter(environment, attribute)
            items = [getter(item) for item in items]
        if all(isinstance(item, type(start)) for item in items):
            _at_most(size(start) + size(items), "adding")
            return start + type(start)(chain.from_iterable(items))
        return original(environment, items, start=start)
    return original(environment, iterable, attribute, start)


def _guarded_filter(name: str, function: Any) -> Any:
    passes = getattr(function, "jinja_pass_arg", None) is not None

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        head, args = (args[:1], args[1:]) if passes else ((), args)
        args, kwargs = _check_filter(name, args, kwargs)
        return checked(function(*head, *args, **kwargs))

    return guarded


@jinja2.pass_context
def _loop(context: Any, iterable: Any) -> Any:  # noqa: ARG001 - pass_context: never folded
    """What a ``{% for %}`` iterates: each item a step."""
    for item in iterable:
        _tick()
        yield item


@jinja2.pass_context
def _value(context: Any, value: Any) -> Any:  # noqa: ARG001
    """A list, tuple or dict literal, or a ``~``: within the limits."""
    _tick()
    return checked(value)


@jinja2.pass_context
def _output(context: Any, value: Any) -> str:  # noqa: ARG001
    """What ``{{ … }}`` and the text around it output, counted."""
    text = value if isinstance(value, str) else str(checked(value))
    budget = _BUDGET.get()
    if budget is not None:
        budget.output += len(text)
        if budget.output > MAX_OUTPUT:
            raise _too(f"outputs more than {MAX_OUTPUT} characters")
    return text


class _Guard(NodeTransformer):
    """Puts the steps and sizes of :func:`_loop`, :func:`_value` and :func:`_output` into a
    parsed template."""

    @staticmethod
    def _wrap(node: nodes.Node, name: str) -> nodes.Filter:
        return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = self._wrap(node.iter, _LOOP)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Output:
        self.generic_visit(node)
        node.nodes = [self._wrap(child, _OUT) for child in node.nodes]
        return node

    def visit_TemplateData(self, node: nodes.TemplateData) -> nodes.Node:
        return nodes.Const(node.data, lineno=node.lineno)

    def _literal(self, node: nodes.Node) -> nodes.Node:
        self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":
            return node
        return self._wrap(node, _VALUE)

    visit_List = visit_Tuple = visit_Dict = visit_Concat = _literal


class _Undefined(jinja2.StrictUndefined):
    """jinja2's StrictUndefined, whose :class:`~jinja2.UndefinedError` carries the object the
    lookup failed on and the name looked up (:data:`template_errors.MISSING`), for
    :func:`template_errors.explain`."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[Exception] = jinja2.UndefinedError,
    ) -> None:
        if exc is jinja2.UndefinedError and hint is None:

            def marked(message: str) -> Exception:
                error = jinja2.UndefinedError(message)
                setattr(error, template_errors.MISSING, (obj, name))
                return error

            exc = marked  # type: ignore[assignment]
        super().__init__(hint, obj, name, exc)  # type: ignore[arg-type]


class Sandbox(ImmutableSandboxedEnvironment):
    """The environment of the operator's templates (see the module docstring)."""

    intercepted_binops = frozenset(ImmutableSandboxedEnvironment.default_binop_table)

    def __init__(self) -> None:
        super().__init__(undefined=_Undefined, autoescape=False, keep_trailing_newline=True)
        self.globals.pop("lipsum", None)
        self.filters["quote"] = lambda value: shlex.quote(str(value))
        self.filters["sum"] = jinja2.pass_environment(_sum)
        self.filters = {
            name: _guarded_filter(name, function) for name, function in self.filters.items()
        }
        self.filters.update({_LOOP: _loop, _VALUE: _value, _OUT: _output})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        return _binop(operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        template = _format_template(method)
        if template is not None:
            if method.__name__ == "format_map" and args and isinstance(args[0], Mapping):
                _check_format(template, (), args[0])
            else:
                _check_format(template, args, kwargs)
        else:
            args, kwargs = _check_method(__obj, args, kwargs)
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (_loop(__context, args[0]), *args[1:])
        return checked(super().call(__context, __obj, *args, **kwargs))

    def compile_guarded(self, source: str) -> jinja2.Template:
        """``source`` parsed, with the guards put in, compiled."""
        tree = _Guard().visit(self.parse(source))
        tree.set_environment(self)
        return self.from_string(tree)


def render(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """``template`` (from :meth:`Sandbox.compile_guarded`) rendered over ``context`` within
    the limits of the module docstring."""
    token = _BUDGET.set(_Budget(deadline=time.monotonic() + MAX_SECONDS))
    try:
        return template.render(context)
    finally:
        _BUDGET.reset(token)


RENDERING_ERRORS = (
    jinja2.TemplateError,
    ArithmeticError,
    TypeError,
    ValueError,
    LookupError,
    AttributeError,
    MemoryError,
    RecursionError,
    SyntaxError,
)
"""What a template can raise while it is compiled or rendered: jinja2's own errors (a syntax
error, an undefined name, a limit of the sandbox), and what the Python operations it calls
raise (``1/0``, ``'a' + 1``, ``'%s %s' % 1``, ``'x'.encode('nope')``, an overflow, a nesting
too deep for the parser)."""


@functools.lru_cache(maxsize=1)
def _sandbox() -> Sandbox:
    return Sandbox()


@functools.lru_cache(maxsize=4096)
def _compiled(source: str) -> jinja2.Template:
    return _sandbox().compile_guarded(source)


def render_text(source: str, context: Mapping[str, Any]) -> tuple[str, str | None]:
    """The one way an operator's template is rendered: ``(output, None)``, or ``("", what
    went wrong)`` — one line from :func:`template_errors.explain` (the template's line, and for
    a name that is not defined the closest name there is). A source without ``{`` is its own
    output."""
    if "{" not in source:
        return source, None
    try:
        return render(_compiled(source), context), None
    except RENDERING_ERRORS as error:
        return "", template_errors.explain(error, source, context, _sandbox().globals)
