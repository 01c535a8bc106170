"""The operator's own tasks, ``[tasks.<name>]``, as :class:`Task` values.

``run`` and ``undo`` are jinja2 templates rendered once per host with StrictUndefined over
:meth:`Playbook.template_context` plus ``host`` (the host's table and ``name``). A filter
``quote`` (``shlex.quote``) is there for values that must reach the shell as one word. A
template error is a :class:`PlaybookError` naming the file, the key and the line.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from fedi_run.engine.errors import PlaybookError, Problem
from fedi_run.engine.operations import Command
from fedi_run.engine.playbook import Playbook, UserTaskSection
from fedi_run.engine.tasks import Task, per_host_id

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


def _render(source: str, context: dict[str, Any], where: tuple[Any, str], problems: list[Problem]) -> str:
    if "{" not in source:
        return source
    try:
        return _compile(source).render(context)
    except jinja2.TemplateSyntaxError as error:
        detail = f"template syntax error at line {error.lineno}: {error.message}"
    except jinja2.UndefinedError as error:
        detail = f"template error: {error.message}; the template sees deployment, hosts, services, initial_user, host and the plugins' tables"
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
            tasks.append(_task(playbook, name, spec, host, context, per_host=spec.host is None, problems=problems))
    if problems:
        raise PlaybookError(sorted(set(problems), key=lambda p: (p.key, p.message)))
    return tasks


def _task(playbook: Playbook, name: str, spec: UserTaskSection, host: str, context: dict[str, Any], per_host: bool, problems: list[Problem]) -> Task:
    family = f"{NAMESPACE}.{name}"
    run = _render(spec.run, context, (playbook.origin("tasks", name, "run"), f"tasks.{name}.run"), problems)
    undo: tuple[Command, ...] = ()
    if spec.undo is not None:
        undo = (Command(_render(spec.undo, context, (playbook.origin("tasks", name, "undo"), f"tasks.{name}.undo"), problems)),)
    return Task(
        id=per_host_id(family, host) if per_host else family,
        host=host,
        requires=spec.requires,
        tags=spec.tags,
        description=spec.description or f"the operator's task {name!r}",
        actions=(Command(run),),
        undo=undo,
    )
