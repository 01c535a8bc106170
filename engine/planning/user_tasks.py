"""The operator's own tasks, ``[tasks.<name>]``, as :class:`Task` values.

``run`` and ``undo`` are jinja2 templates rendered once per host with StrictUndefined over
:meth:`Playbook.template_context` plus ``host`` (the host's table and ``name``). A filter
``quote`` (``shlex.quote``) is there for values that must reach the shell as one word. They
render in :mod:`~fedi_run.engine.planning.template_sandbox`, which bounds the time and memory a
rendering takes. Every error a template raises, compiling or rendering — a syntax error, an
undefined name, ``1/0``, an overflow, a value too large — is a :class:`PlaybookError` naming the
file, the key, the line and what went wrong, raised while the project loads: before any host.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from fedi_run.engine.errors import PlaybookError, Problem
from fedi_run.engine.model.playbook import FileSpec, Playbook, UserTaskSection
from fedi_run.engine.planning import template_sandbox
from fedi_run.engine.planning.operations import Command, Directory, Fetch, File, Operation
from fedi_run.engine.planning.tasks import Task, per_host_id
from fedi_run.engine.planning.template_sandbox import Sandbox

NAMESPACE = "tasks"


@lru_cache(maxsize=1)
def _environment() -> Sandbox:
    return Sandbox()


@lru_cache(maxsize=4096)
def _compile(source: str) -> jinja2.Template:
    return _environment().compile_guarded(source)


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


def _render(
    source: str, context: dict[str, Any], where: tuple[Any, str], problems: list[Problem]
) -> str:
    if "{" not in source:
        return source
    try:
        return template_sandbox.render(_compile(source), context)
    except jinja2.TemplateSyntaxError as error:
        detail = f"template syntax error at line {error.lineno}: {error.message}"
    except jinja2.UndefinedError as error:
        detail = (
            f"template error: {error.message}{_line(error)}; the template sees deployment, "
            "hosts, services, initial_user, host and the plugins' tables"
        )
    except RENDERING_ERRORS as error:
        detail = f"template error: {_what(error)}{_line(error)}"
    problems.append(Problem(where[0], where[1], detail))
    return ""


def _what(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "nested or recursive too deeply (RecursionError)"
    text = str(error) if not isinstance(error, MemoryError) else "out of memory"
    if isinstance(error, jinja2.TemplateError):
        return text or type(error).__name__
    return f"{text} ({type(error).__name__})" if text else type(error).__name__


def _line(error: BaseException) -> str:
    """`` (line N)``: the template's line the error came from, when the traceback has it."""
    line = None
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == "<template>":
            line = frame.tb_lineno
        frame = frame.tb_next
    return f" (line {line})" if line else ""


def user_tasks(playbook: Playbook) -> list[Task]:
    """One task per ``[tasks.<name>]`` and host; every template problem raised at once."""
    base_context = playbook.template_context()
    problems: list[Problem] = []
    tasks = []
    for name, spec in playbook.tasks.items():
        hosts = [spec.host] if spec.host else list(spec.hosts or ())
        for host in hosts:
            context = {**base_context, "host": {"name": host, **base_context["hosts"][host]}}
            tasks.append(
                _task(
                    playbook,
                    name,
                    spec,
                    host,
                    context,
                    per_host=spec.host is None,
                    problems=problems,
                )
            )
    if problems:
        raise PlaybookError(sorted(set(problems), key=lambda p: (p.key, p.message)))
    return tasks


def _task(
    playbook: Playbook,
    name: str,
    spec: UserTaskSection,
    host: str,
    context: dict[str, Any],
    per_host: bool,
    problems: list[Problem],
) -> Task:
    family = f"{NAMESPACE}.{name}"

    def render(source: str, key: str) -> str:
        return _render(
            source,
            context,
            (playbook.origin("tasks", name, key.split(".")[0]), f"tasks.{name}.{key}"),
            problems,
        )

    actions: tuple[Operation, ...]
    if spec.run is not None:
        actions = (Command(render(spec.run, "run"), creates=spec.creates, unless=spec.unless),)
    elif spec.file is not None:
        actions = (_file(spec.file, render, playbook, name, problems),)
    elif spec.directory is not None:
        d = spec.directory
        actions = (Directory(d.path, mode=int(d.mode, 8), owner=d.owner, present=d.present),)
    else:
        assert spec.fetch is not None
        actions = (Fetch(spec.fetch.remote, spec.fetch.local),)
    undo: tuple[Operation, ...] | None = None
    if spec.undo is not None:
        undo = (Command(render(spec.undo, "undo")),)
    elif spec.run is not None or spec.fetch is not None:
        undo = ()
    return Task(
        id=per_host_id(family, host) if per_host else family,
        host=host,
        requires=spec.requires,
        tags=spec.tags,
        description=spec.description or f"the operator's task {name!r}",
        actions=actions,
        undo=undo,
        shares_host=spec.shares_host,
        timeout=spec.timeout,
    )


def _file(spec: FileSpec, render, playbook: Playbook, name: str, problems: list[Problem]) -> File:
    mode = int(spec.mode, 8)
    if not spec.present:
        return File(spec.path, present=False)
    if spec.content is not None:
        return File(spec.path, render(spec.content, "file.content"), mode=mode, owner=spec.owner)
    assert spec.src is not None
    try:
        content = Path(spec.src).read_text()
    except (OSError, UnicodeDecodeError) as error:
        problems.append(
            Problem(
                playbook.origin("tasks", name, "file"),
                f"tasks.{name}.file.src",
                f"cannot read {spec.src}: {getattr(error, 'strerror', None) or error}",
            )
        )
        content = ""
    return File(spec.path, content, mode=mode, owner=spec.owner)
