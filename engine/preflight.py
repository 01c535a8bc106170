"""Preflight: what must hold on the deployer before a run touches any host.

:func:`preflight` is called by ``run_project`` once the selection is known; it raises every
problem of the deployer's files at once (:class:`PlaybookError`), then a missing tool
(:class:`MissingTool`). :func:`deployer_problems` is its check of the files, which
``validate`` runs over every task (``engine.project``): the files the tasks read — each host's
identity (and that it is a key a connection can log in with), every playbook key a task names
in ``Task.reads`` (the initial user's password UTF-8 and at least :data:`MIN_PASSWORD`
characters long, its length only ever said), each rendered host's base configuration — and
the files they write: each fetch's, and the directory the NixOps4 deployment is rendered into
(unless ``--check``, which renders nothing). The tools: ``git`` on PATH when the render is
selected, ``nixops4`` when the apply is (neither with ``--check``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fedi_run.engine.errors import MissingTool, PlaybookError, Problem
from fedi_run.engine.execute.connection import identity_problem
from fedi_run.engine.nixops.apply import APPLY_ID, deployment_directory
from fedi_run.engine.nixops.render import MANIFEST, RENDER_ID, missing_base_configurations
from fedi_run.engine.planning.operations import Fetch
from fedi_run.engine.planning.selection import Selection
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.private_files import cannot_write
from fedi_run.engine.report.masking import MIN_LENGTH

if TYPE_CHECKING:
    from fedi_run.engine.execute.scheduler import ExecutionOptions
    from fedi_run.engine.project import Project


def deployer_problems(playbook, tasks: Sequence[Task], check: bool = False) -> list[Problem]:
    """Every problem of the deployer's files ``tasks`` (those a run selects; all of them for
    ``validate``) would meet, before any host is contacted: :func:`_missing_files`, and when
    the render is among them each rendered host's base configuration and — unless ``check``
    (``--check`` renders nothing) — the directory the deployment is rendered into."""
    problems = _missing_files(playbook, tasks)
    render = next((task for task in tasks if task.id == RENDER_ID), None)
    if render is not None:
        problems = missing_base_configurations(playbook, render) + problems
        if not check:
            problems += render_directory_problems(playbook)
    return problems


def _missing_files(playbook, tasks: Sequence[Task]) -> list[Problem]:
    """The deployer files ``tasks`` will read that cannot be read: each host's
    ``identity`` (and whether it is a key a connection can log in with), every playbook key a
    task names in ``Task.reads`` (the initial user's password UTF-8 and long enough), and
    where each ``fetch`` writes."""
    wanted: dict[tuple[str, ...], str] = {}
    for name in sorted({t.host for t in tasks if t.host is not None}):
        if playbook.hosts[name].identity:
            wanted[("hosts", name, "identity")] = playbook.hosts[name].identity
    for task in tasks:
        for dotted in task.reads:
            key = tuple(dotted.split("."))
            path = playbook.value_at(*key)
            if path is not None:
                wanted.setdefault(key, str(path))
    problems = []
    for key, path in wanted.items():
        if not os.access(path, os.R_OK) or not os.path.isfile(path):
            problems.append(
                Problem(
                    playbook.origin(*key),
                    ".".join(key),
                    f"found {path!r}, which is not a readable file; expected the file to exist",
                )
            )
        elif key == PASSWORD_KEY:
            problems += _short_password(playbook.origin(*key), path)
        elif key[0] == "hosts" and key[-1] == "identity":
            wrong = identity_problem(path)
            if wrong:
                problems.append(
                    Problem(playbook.origin(*key), ".".join(key), f"the key file {path!r} {wrong}")
                )
    return problems + _fetch_targets(playbook, tasks)


def _fetch_targets(playbook, tasks: Sequence[Task]) -> list[Problem]:
    """A problem for each ``fetch`` of the selected tasks whose file on the deployer cannot be
    written: it is a directory, or a file stands where a directory of its path must be."""
    problems = []
    for task in tasks:
        for op in task.actions:
            if not isinstance(op, Fetch):
                continue
            local = Path(op.local)
            if local.is_dir():
                wrong = "which is a directory; expected the path of a file to fetch into"
            else:
                parent = next((p for p in local.parents if os.path.lexists(p)), None)
                if parent is None or parent.is_dir():
                    continue
                wrong = f"but {str(parent)!r} is not a directory; expected a file's path"
            name = task.family.removeprefix("tasks.")
            user_task = task.family.startswith("tasks.") and name in playbook.tasks
            problems.append(
                Problem(
                    playbook.origin("tasks", name, "fetch") if user_task else playbook.source,
                    f"tasks.{name}.fetch.local" if user_task else "",
                    f"found {op.local!r}, {wrong}"
                    + ("" if user_task else f" (the fetch of task {task.id})"),
                )
            )
    return problems


PASSWORD_KEY = ("initial_user", "password_file")


MIN_PASSWORD = max(8, MIN_LENGTH)
"""The initial user's password has at least this many characters: the apps' own minimum, and
long enough for the masker (engine/report/masking.py) to hide it in every output."""


def _short_password(origin: str, path: str) -> list[Problem]:
    """A problem if the password in ``path`` is not UTF-8 text or too short — its length only,
    never its text."""
    try:
        length = len(Path(path).read_bytes().decode("utf-8").rstrip("\n"))
    except UnicodeDecodeError as error:
        return [
            Problem(
                origin,
                "initial_user.password_file",
                f"the password in {path!r} is not valid UTF-8 (byte {error.start}); expected the "
                "password as UTF-8 text",
            )
        ]
    except OSError as error:
        return [Problem(origin, "initial_user.password_file", f"cannot read {path!r}: {error}")]
    if length >= MIN_PASSWORD:
        return []
    return [
        Problem(
            origin,
            "initial_user.password_file",
            f"found a password of {length} characters in {path!r}; expected at least "
            f"{MIN_PASSWORD}",
        )
    ]


def render_directory_problems(playbook) -> list[Problem]:
    """A problem when the directory the NixOps4 deployment is rendered into cannot be written
    (the state may live elsewhere, ``--state``, so its check does not cover this one)."""
    directory = deployment_directory(playbook)
    reason = cannot_write(directory / MANIFEST, replaced=True)
    if not reason:
        return []
    return [
        Problem(
            playbook.origin("deployment", "name"),
            "deployment.name",
            f"cannot render the NixOps4 deployment into {directory}: {reason}; expected "
            f"{directory.parent.parent} to be writable (the deployment is rendered beside the "
            "playbook, in a directory named after the deployment)",
        )
    ]


def preflight(project: Project, selection: Selection, options: ExecutionOptions) -> None:
    """What must hold before any host is touched: the deployer files the selected tasks read
    and write (:func:`deployer_problems`, all raised at once; ``validate`` checks the same for
    every task), git to commit the rendered deployment, and nixops4."""
    tasks = [project.graph.tasks[t] for t in selection.order]
    problems = deployer_problems(project.playbook, tasks, options.check)
    if problems:
        raise PlaybookError(problems)
    if RENDER_ID in selection and not options.check and shutil.which("git") is None:
        raise MissingTool(
            "error: git is not on PATH, and this run renders the NixOps4 deployment into a git "
            "repository of its own (Nix reads a flake through git). Install git (Debian: apt-get "
            "install git). Nothing was changed on any host."
        )
    if APPLY_ID in selection and not options.check and shutil.which("nixops4") is None:
        raise MissingTool(
            "error: nixops4 is not on PATH, and this run ends with `nixops4 apply`. Install "
            "NixOps4 (see its documentation), or pass --no-apply to prepare the hosts and render "
            "the deployment without applying it. Nothing was changed on any host."
        )
