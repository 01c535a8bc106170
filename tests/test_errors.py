"""The one error hierarchy: every exception class is defined in engine/errors.py, and each one
there is a FediRunError whose docstring gives its exit status.

The source check reads engine/, plugins/ and panel/ with ``ast``. A class is an exception class
when one of its bases is: a built-in exception, a class found to be an exception class (those of
engine/errors.py first, then transitively), or a third party's class named ``…Error`` or
``…Exception`` (``paramiko.SSHException``, ``jinja2.TemplateError``). A class made by calling
``type()`` is not seen; the code has none.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import shutil
from collections.abc import Iterable
from pathlib import Path

from fedi_run.engine import errors

ROOT = Path(__file__).resolve().parent.parent
ERRORS = Path("engine") / "errors.py"
FOLDERS = ("engine", "plugins", "panel")

BUILTIN_EXCEPTIONS = frozenset(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)

KEPT_BUILTIN_BASES: dict[str, str] = {}
"""Classes of engine/errors.py that keep a built-in exception base besides FediRunError, each
with the reason. None today: ``ConnectionLost`` was an ``EOFError`` only so that
``HostConnection.run``'s ``except EOFError`` caught it; that ``except`` names it now."""


def sources(root: Path) -> list[Path]:
    """Every .py file of engine/, plugins/ and panel/ under ``root``."""
    return sorted(
        path
        for folder in FOLDERS
        for path in (root / folder).rglob("*.py")
        if "build" not in path.relative_to(root).parts
    )


def _base_name(node: ast.expr) -> str:
    """``paramiko.SSHException`` → ``SSHException``; ``Generic[T]`` → ``Generic``."""
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def exception_classes(paths: Iterable[Path], root: Path) -> list[tuple[str, int, str]]:
    """Every exception class defined in ``paths`` (at any depth), as ``(path relative to
    root, line, name)``, in file and line order."""
    classes = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                where = (str(path.relative_to(root)), node.lineno, node.name)
                classes.append((where, {_base_name(base) for base in node.bases}))
    known = set(BUILTIN_EXCEPTIONS)
    found: set[tuple[str, int, str]] = set()
    grew = True
    while grew:  # a class of a class found to be an exception class is one too
        grew = False
        for where, bases in classes:
            if where not in found and any(
                base in known or base.endswith(("Error", "Exception")) for base in bases
            ):
                found.add(where)
                known.add(where[2])
                grew = True
    return sorted(found)


def strays(paths: Iterable[Path], root: Path) -> list[str]:
    """The exception classes of ``paths`` that are defined outside engine/errors.py."""
    return [
        f"{path}:{line} {name}"
        for path, line, name in exception_classes(paths, root)
        if path != str(ERRORS)
    ]


def error_classes() -> list[type[BaseException]]:
    """The exception classes engine/errors.py defines, as imported."""
    return [
        value
        for value in vars(errors).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    ]


def test_every_exception_class_is_defined_in_engine_errors():
    assert strays(sources(ROOT), ROOT) == []


def test_the_source_check_finds_a_class_planted_in_a_file(tmp_path):
    """A negative control: exception classes of every kind, planted in a temporary copy of
    the layout, are found — and the classes of engine/errors.py, copied along, are not."""
    (tmp_path / ERRORS).parent.mkdir()
    shutil.copy(ROOT / ERRORS, tmp_path / ERRORS)
    planted = tmp_path / "plugins" / "planted.py"
    planted.parent.mkdir()
    planted.write_text(
        "import paramiko\n"
        "from fedi_run.engine.errors import HostUnreachable\n"
        "class Fine:\n"
        "    pass\n"
        "class Builtin(ValueError):\n"
        "    pass\n"
        "class Deeper(Builtin):\n"
        "    pass\n"
        "class Ours(HostUnreachable):\n"
        "    pass\n"
        "class ThirdParty(paramiko.SSHException):\n"
        "    pass\n"
        "def signal():\n"
        "    class Nested(Exception):\n"
        "        pass\n"
    )
    assert strays(sources(tmp_path), tmp_path) == [
        "plugins/planted.py:5 Builtin",
        "plugins/planted.py:7 Deeper",
        "plugins/planted.py:9 Ours",
        "plugins/planted.py:11 ThirdParty",
        "plugins/planted.py:14 Nested",
    ]


def test_the_source_check_sees_every_class_of_engine_errors():
    """The check's idea of an exception class agrees with Python's, on engine/errors.py."""
    seen = {name for _, _, name in exception_classes([ROOT / ERRORS], ROOT)}
    assert seen == {cls.__name__ for cls in error_classes()}
    assert len(seen) > 20


def test_every_class_of_engine_errors_is_a_fedi_run_error():
    assert [c.__name__ for c in error_classes() if not issubclass(c, errors.FediRunError)] == []


def test_no_error_keeps_an_undocumented_built_in_base():
    kept = {
        cls.__name__: [base.__name__ for base in cls.__bases__ if base.__module__ == "builtins"]
        for cls in error_classes()
        if cls is not errors.FediRunError
    }
    assert {name for name, bases in kept.items() if bases} == set(KEPT_BUILTIN_BASES)


def test_every_error_says_its_exit_status():
    for cls in error_classes():
        doc = " ".join((cls.__doc__ or "").split())
        assert "exit status" in doc or "exit_status" in doc, cls.__name__
        assert isinstance(cls.exit_status, int), cls.__name__


def test_action_failed_exits_as_a_failed_task():
    """The error plugins raise is a FediRunError now, exiting 1 as its traceback did."""
    assert issubclass(errors.ActionFailed, errors.FediRunError)
    assert errors.ActionFailed("x").exit_status == 1
    assert errors.OperationFailed("x", ["a"], "out").changes == ["a"]


def test_the_message_comes_without_the_prefix_and_str_is_unchanged():
    error = errors.UsageError("error: no such playbook")
    assert str(error) == "error: no such playbook" and error.message == "no such playbook"
    bare = errors.HostUnreachable("lost the connection to h1: reset", lost=True)
    assert str(bare) == bare.message == "lost the connection to h1: reset" and bare.lost
    assert errors.HostKeyRejected("refused").lost is False
    problems = errors.GraphError(["a", "b"])
    assert problems.message == str(problems).removeprefix("error: ")
