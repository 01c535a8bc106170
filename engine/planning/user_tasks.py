"""The operator's own tasks, ``[tasks.<name>]``, as :class:`Task` values.

``run`` and ``undo`` are jinja2 templates rendered once per host with StrictUndefined over
:meth:`Playbook.template_context` plus ``host`` (the host's table and ``name``). A filter
``quote`` (``shlex.quote``) is there for values that must reach the shell as one word. A
template error is a :class:`PlaybookError` naming the file, the key and the line.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from fedi_run.engine.errors import PlaybookError, Problem
from fedi_run.engine.model.playbook import FileSpec, Playbook, UserTaskSection
from fedi_run.engine.planning.operations import Command, Directory, Fetch, File, Operation
from fedi_run.engine.planning.tasks import Task, per_host_id

NAMESPACE = "tasks"


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["quote"] = lambda value: shlex.quote(str(value))
    return env


@lru_cache(maxsize=4096)
def _compile(source: str) -> jinja2.Template:
    return _environment().from_string(source)


def _render(
    source: str, context: dict[str, Any], where: tuple[Any, str], problems: list[Problem]
) -> str:
    if "{" not in source:
        return source
    try:
        return _compile(source).render(context)
    except jinja2.TemplateSyntaxError as error:
        detail = f"template syntax error at line {error.lineno}: {error.message}"
    except jinja2.UndefinedError as error:
        detail = (
            f"template error: {error.message}; the template sees deployment, hosts, services, "
            "initial_user, host and the plugins' tables"
        )
    except jinja2.TemplateError as error:
        detail = f"template error: {error}"
    problems.append(Problem(where[0], where[1], detail))
    return ""


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
