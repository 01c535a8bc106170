"""The operator's own tasks, ``[tasks.<name>]``, as :class:`Task` values.

``run`` and ``undo`` are jinja2 templates rendered once per host with StrictUndefined over
:meth:`Playbook.template_context` plus ``host`` (the host's table and ``name``). A filter
``quote`` (``shlex.quote``) is there for values that must reach the shell as one word. They
render in :mod:`~fedi_run.engine.planning.template_sandbox`, which bounds the time and memory a
rendering takes. Every error a template raises, compiling or rendering — a syntax error, an
undefined name, ``1/0``, an overflow, a value too large — is a :class:`PlaybookError` naming the
file, the key, the line and what went wrong, raised while the project loads: before any host.

``env`` values and ``when`` render the same way; ``when`` must render to true or false (else a
problem of the key), and a task whose ``when`` is false is built without its operations and
``skipped="when: false"`` (its other templates are not rendered). ``changed_when`` is checked
here (its syntax, the names it uses) and rendered after its command ran, with ``result``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from fedi_run.engine.errors import PlaybookError, Problem
from fedi_run.engine.model.playbook import FileSpec, Playbook, UserTaskSection
from fedi_run.engine.model.pydantic_problems import found
from fedi_run.engine.model.validators import did_you_mean
from fedi_run.engine.planning import template_sandbox
from fedi_run.engine.planning.operations import (
    ChangedWhen,
    Command,
    Directory,
    Fetch,
    File,
    Operation,
)
from fedi_run.engine.planning.tasks import Task, per_host_id

NAMESPACE = "tasks"


def _render(
    source: str, context: dict[str, Any], where: tuple[Any, str], problems: list[Problem]
) -> str:
    """``source`` rendered (:func:`template_sandbox.render_text`); what goes wrong is a
    problem of the key ``where``."""
    text, wrong = template_sandbox.render_text(source, context)
    if wrong is not None:
        problems.append(Problem(where[0], where[1], wrong))
    return text


def user_tasks(playbook: Playbook) -> list[Task]:
    """One task per ``[tasks.<name>]`` and host; every template problem raised at once."""
    tasks, problems = checked_user_tasks(playbook)
    if problems:
        raise PlaybookError(problems)
    return tasks


def checked_user_tasks(
    playbook: Playbook, unknown: Iterable[tuple[str, ...]] = ()
) -> tuple[list[Task], list[Problem]]:
    """One task per ``[tasks.<name>]`` and host, and every problem of their templates and
    files. ``unknown``: the tables (``("deployment",)``, ``("services", "mastodon")``) that
    had problems of their own — the templates see them as values that may hold anything, so
    that a template is not blamed for what a broken table lacks."""
    base_context = _with_unknown(playbook.template_context(), unknown)
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
    return tasks, sorted(set(problems), key=lambda p: (p.key, p.message))


def _with_unknown(context: dict[str, Any], unknown: Iterable[tuple[str, ...]]) -> dict[str, Any]:
    """``context`` with each key of ``unknown`` a value every lookup and output accepts."""
    context = dict(context)
    for key in unknown:
        if len(key) == 1:
            context[key[0]] = jinja2.ChainableUndefined()
        elif len(key) == 2 and isinstance(context.get(key[0]), dict):
            context[key[0]] = {**context[key[0]], key[1]: jinja2.ChainableUndefined()}
    return context


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

    def where(key: str) -> tuple[Path, str]:
        return playbook.origin("tasks", name, key.split(".")[0]), f"tasks.{name}.{key}"

    def render(source: str, key: str) -> str:
        return _render(source, context, where(key), problems)

    def problem(key: str, message: str) -> None:
        problems.append(Problem(*where(key), message))

    task_id = per_host_id(family, host) if per_host else family
    if spec.when is not None and not _when(spec.when, render, problem, context, problems):
        return Task(
            id=task_id,
            host=host,
            requires=spec.requires,
            tags=spec.tags,
            description=spec.description or f"the operator's task {name!r}",
            undo=(),
            shares_host=spec.shares_host,
            timeout=spec.timeout,
            skipped="when: false",
        )
    env = _env(spec, render, problem)
    actions: tuple[Operation, ...]
    if spec.run is not None:
        actions = (
            Command(
                render(spec.run, "run"),
                creates=spec.creates,
                unless=spec.unless,
                env=env,
                changed_when=_changed_when(spec, name, playbook, context, problems),
            ),
        )
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
        undo = (Command(render(spec.undo, "undo"), env=env),)
    elif spec.run is not None or spec.fetch is not None:
        undo = ()
    return Task(
        id=task_id,
        host=host,
        requires=spec.requires,
        tags=spec.tags,
        description=spec.description or f"the operator's task {name!r}",
        actions=actions,
        undo=undo,
        shares_host=spec.shares_host,
        timeout=spec.timeout,
    )


def _truth(text: str) -> bool | None:
    """``True`` for ``true``, ``False`` for ``false`` (any case, surrounding spaces ignored),
    else ``None``."""
    return {"true": True, "false": False}.get(text.strip().lower())


def _not_truth(text: str) -> str:
    return f"rendered to {found(text)}, expected true or false"


def _unknown_in(context: dict[str, Any]) -> bool:
    """Whether ``context`` holds a table that had problems of its own (:func:`_with_unknown`):
    a template over it may render to nothing, which is no fault of the template's."""
    tables = [value for value in context.values() if isinstance(value, dict)]
    values = [*context.values(), *(value for table in tables for value in table.values())]
    return any(isinstance(value, jinja2.Undefined) for value in values)


def _when(when: bool | str, render, problem, context: dict[str, Any], problems: list) -> bool:
    """Whether the task runs: ``when`` itself, or its template rendered to true or false (a
    problem of ``when`` otherwise; the task is then built as if it ran, so that its other
    keys are checked too)."""
    if isinstance(when, bool):
        return when
    before = len(problems)
    text = render(when, "when")
    decided = _truth(text)
    blank = not text.strip() and _unknown_in(context)  # over a table with problems of its own
    if decided is None and len(problems) == before and not blank:
        problem("when", _not_truth(text))
    return decided is not False


def _env(spec: UserTaskSection, render, problem) -> tuple[tuple[str, str], ...]:
    """``env`` rendered: (name, value) in the playbook's order; a value holding a NUL (which
    no environment variable can) is a problem of its key."""
    env = []
    for variable, source in (spec.env or {}).items():
        value = render(source, f"env.{variable}")
        if "\x00" in value:
            problem(
                f"env.{variable}",
                "rendered to text with a NUL character, which no environment variable can hold",
            )
        env.append((variable, value))
    return tuple(env)


def _changed_when(
    spec: UserTaskSection,
    name: str,
    playbook: Playbook,
    context: dict[str, Any],
    problems: list[Problem],
) -> bool | ChangedWhen | None:
    """``changed_when``: a boolean as it is; a template checked now (its syntax, the names it
    uses) and rendered after the command ran, with ``result`` in scope, by the judge of a
    :class:`ChangedWhen`."""
    source = spec.changed_when
    if source is None or isinstance(source, bool):
        return source
    key = f"tasks.{name}.changed_when"
    where = playbook.origin("tasks", name, "changed_when")
    try:
        parsed = _parser().parse(source)
    except jinja2.TemplateSyntaxError as error:
        problems.append(
            Problem(where, key, f"template syntax error at line {error.lineno}: {error.message}")
        )
        return None
    known = {*context, "result", *_parser().globals}
    for missing in sorted(meta.find_undeclared_variables(parsed) - known):
        problems.append(
            Problem(
                where,
                key,
                f"template error: {missing!r} is undefined{did_you_mean(missing, known)}; "
                "`changed_when` sees what the other templates see and `result` (stdout, "
                "stderr, exit_status)",
            )
        )
    return ChangedWhen(source, _judge(source, context))


def _judge(source: str, context: dict[str, Any]):
    """The judge of a :class:`ChangedWhen`: ``source`` rendered with ``result`` — through the
    one render path of the operator's templates — and read as true or false."""

    def judge(result) -> bool:
        text, wrong = template_sandbox.render_text(source, {**context, "result": dict(result)})
        if wrong is not None:
            raise ValueError(f"changed_when: {wrong}")
        decided = _truth(text)
        if decided is None:
            raise ValueError(f"changed_when: {_not_truth(text)}")
        return decided

    return judge


@lru_cache(maxsize=1)
def _parser() -> template_sandbox.Sandbox:
    return template_sandbox.Sandbox()


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
