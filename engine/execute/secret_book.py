"""The secrets a deployment keeps: which it placed, how they are named, which a run may make
anew or put back, and what stops a run that would silently replace one.

Contract:

* a task that succeeds (not in ``--check``) has its secrets recorded in the state — *paths*
  only, per host (:func:`placed_by`): each :class:`Secret`'s path, generated; each path a
  :class:`Call` declares in ``secrets``, generated when it is in the call's ``generates``
  (else copied or derived: it can come back by itself). What a succeeding task removes —
  ``File(present=False)``, ``Directory(present=False)``, in a run or a teardown — is forgotten
  (:func:`removed_by`), with everything recorded under it;
* a run's :class:`SecretPlan` (:func:`plan_secrets`) says, per host, which recorded generated
  secrets the selected tasks would place (:attr:`SecretPlan.guarded`): the scheduler checks them
  before that host's first task, and when one is missing or empty there, none of that host's
  tasks runs (:func:`missing_error`) — unless the run restores it (``--restore-secret
  NAME=FILE``: the backup file's exact bytes are placed) or generates it anew on purpose
  (``--rotate-secrets NAME``, or ``all``), each warned about with what it breaks. A first run
  (nothing recorded) generates every secret, as always;
* a secret is named (:func:`secret_names`) by the shortest end of its path that tells it apart
  from the deployment's other secrets, two components at least (``<service>/<file>``); a NAME
  given on the command line is a secret's full path, an end of it, or a task's id (all the
  secrets that task generates).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fedi_run.engine.errors import SecretMissing, SecretUnknown
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.operations import Call, Directory, File, Operation, Secret

ROTATE_ALL = "all"
"""``--rotate-secrets all``: every secret the selected tasks place."""

GENERIC_BREAKS = "whatever used the old value stops working with it"
"""What generating a secret anew breaks, when its plugin does not say."""


@dataclass(frozen=True)
class Kept:
    """A secret a task places: its ``path`` on ``host``, the ``task`` placing it, whether it
    is ``generated`` (not copied or derived), and what generating it anew ``breaks``."""

    host: str
    path: str
    task: str
    generated: bool
    breaks: str = ""


def placed_by(operations: Sequence[Operation]) -> list[tuple[str, bool]]:
    """``(path, generated)`` of every secret ``operations`` place."""
    placed: dict[str, bool] = {}
    for op in operations:
        if isinstance(op, Secret):
            placed[op.path] = True
        elif isinstance(op, Call):
            for path in op.secrets:
                placed[path] = placed.get(path, False) or path in op.generates
    return list(placed.items())


def removed_by(operations: Sequence[Operation]) -> list[str]:
    """The paths ``operations`` remove (a recorded secret at or under one is gone)."""
    removed = []
    for op in operations:
        if isinstance(op, File) and not op.present:
            removed.append(op.path)
        elif isinstance(op, Directory) and not op.present:
            removed.append(op.path)
    return removed


def kept_by(graph: TaskGraph, order: Iterable[str]) -> list[Kept]:
    """Every secret the tasks ``order`` place on their hosts (deployer-local tasks have none)."""
    found = []
    for task_id in order:
        task = graph.tasks[task_id]
        if task.host is None:
            continue
        for op in task.actions:
            if isinstance(op, Secret):
                found.append(Kept(task.host, op.path, task.id, True, op.breaks))
            elif isinstance(op, Call):
                found += [
                    Kept(task.host, path, task.id, path in op.generates, op.breaks)
                    for path in op.secrets
                ]
    return found


def secret_names(paths: Iterable[str]) -> dict[str, str]:
    """path → its name: the shortest end of the path (two components at least, when it has
    them) that no other of ``paths`` ends with."""
    paths = sorted(set(paths))
    split = {path: [part for part in path.split("/") if part] for path in paths}
    names = {}
    for path, parts in split.items():
        for size in range(min(2, len(parts)), len(parts) + 1):
            end = "/".join(parts[-size:])
            if not any(other != path and _ends_with(other, end) for other in paths):
                names[path] = end
                break
        else:
            names[path] = path
    return names


def _ends_with(path: str, name: str) -> bool:
    name = name.strip("/")
    return bool(name) and (path.strip("/") == name or path.endswith("/" + name))


def matching(name: str, kept: Sequence[Kept]) -> list[Kept]:
    """The secrets of ``kept`` that ``name`` names: a full path, an end of one, a task id."""
    by_task = [k for k in kept if k.task == name]
    if by_task:
        return by_task
    return [k for k in kept if k.path == name or _ends_with(k.path, name)]


@dataclass(frozen=True)
class SecretPlan:
    """What a run does about the secrets it keeps (see the module's docstring)."""

    guarded: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """host → the recorded, generated secrets the selected tasks would place there: each
    must be on the host, not empty, before that host's first task."""
    recorded: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """host → every secret path this deployment placed there in earlier runs (its masker
    learns their values before that host's first task, also of services switched off)."""
    rotate_all: bool = False
    rotate: frozenset[str] = frozenset()
    """The paths generated anew on purpose (``--rotate-secrets``)."""
    restore: Mapping[str, str] = field(default_factory=dict, repr=False)
    """path → the value put back from a backup (``--restore-secret``); never shown."""
    names: Mapping[str, str] = field(default_factory=dict)
    breaks: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    """What the operator is told before the run: each secret generated anew or restored."""


def plan_secrets(
    graph: TaskGraph,
    order: Sequence[str],
    recorded: Mapping[str, Mapping[str, bool]],
    *,
    run: bool = True,
    rotate: Sequence[str] = (),
    restore: Sequence[tuple[str, Path]] = (),
) -> SecretPlan:
    """The plan of a run of ``order`` (a teardown: ``run`` False — nothing guarded, rotated or
    restored); ``recorded`` what the state says the deployment placed (host → path →
    generated). Raises :class:`SecretUnknown` for a NAME that names no secret the selected
    tasks generate, several where one is needed, or a backup file that cannot be read."""
    kept = kept_by(graph, order)
    everything = {k.path for k in kept} | {p for paths in recorded.values() for p in paths}
    names = secret_names(everything)
    breaks = {k.path: k.breaks for k in kept if k.breaks}
    recorded_paths = {host: frozenset(paths) for host, paths in recorded.items()}
    if not run:
        if rotate or restore:
            raise SecretUnknown(
                "error: --rotate-secrets and --restore-secret are for a run; a teardown "
                "removes the secrets"
            )
        return SecretPlan(recorded=recorded_paths, names=names)
    generated = [k for k in kept if k.generated]
    rotate_all = ROTATE_ALL in rotate
    rotated: set[str] = set()
    for name in (n for n in rotate if n != ROTATE_ALL):
        found = matching(name, generated)
        _one_path(found, name, "--rotate-secrets", generated, names, single=False)
        rotated.update(k.path for k in found)
    restored: dict[str, str] = {}
    for name, backup in restore:
        found = matching(name, generated)
        path = _one_path(found, name, "--restore-secret", generated, names, single=True)
        restored[path] = _read_backup(name, backup)
    if rotate_all:
        rotated = {k.path for k in generated}
    rotated -= set(restored)
    guarded: dict[str, set[str]] = {}
    for k in generated:  # recorded as generated, and neither made anew nor put back now
        if recorded.get(k.host, {}).get(k.path) and k.path not in rotated | set(restored):
            guarded.setdefault(k.host, set()).add(k.path)
    warnings = [
        f"warning: --rotate-secrets: the secret {names[path]} ({path}) is generated anew: "
        f"{breaks.get(path) or GENERIC_BREAKS}"
        for path in sorted(rotated)
    ]
    warnings += [
        f"warning: --restore-secret: the secret {names[path]} ({path}) is set to the content "
        "of its backup file"
        for path in sorted(restored)
    ]
    return SecretPlan(
        guarded={host: frozenset(paths) for host, paths in guarded.items()},
        recorded=recorded_paths,
        rotate_all=rotate_all,
        rotate=frozenset(rotated),
        restore=restored,
        names=names,
        breaks=breaks,
        warnings=tuple(warnings),
    )


def _one_path(
    found: Sequence[Kept],
    name: str,
    flag: str,
    generated: Sequence[Kept],
    names: Mapping[str, str],
    single: bool,
) -> str:
    """The one path ``found`` holds; SecretUnknown naming what there is when it holds none,
    or several (unless not ``single`` and ``name`` is a task's id)."""
    paths = sorted({k.path for k in found})
    if not paths:
        known = ", ".join(sorted(names[k.path] for k in generated)) or "none"
        raise SecretUnknown(
            f"error: {flag} {name}: no secret of that name is placed by the selected tasks "
            f"(their secrets: {known}; a name is a secret's path, its end, or a task's id"
            + (", or all" if flag == "--rotate-secrets" else "")
            + ")"
        )
    if len(paths) > 1 and (single or not any(k.task == name for k in found)):
        raise SecretUnknown(
            f"error: {flag} {name}: names {len(paths)} secrets ("
            + ", ".join(names[p] for p in paths)
            + "); name one of them"
            + (" (or pass each, or the task's id)" if not single else "")
        )
    return paths[0]


def _read_backup(name: str, backup: Path) -> str:
    """The backup file's content (exact), refused when unreadable, empty or not UTF-8 — its
    length only in a message, never its text."""
    try:
        data = Path(backup).read_bytes()
    except OSError as error:
        raise SecretUnknown(
            f"error: --restore-secret {name}={backup}: cannot read the backup file: "
            f"{error.strerror or error}"
        ) from None
    if not data:
        raise SecretUnknown(
            f"error: --restore-secret {name}={backup}: the backup file is empty; expected the "
            "secret's value"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SecretUnknown(
            f"error: --restore-secret {name}={backup}: the backup file is not UTF-8 text "
            f"(byte {error.start} of {len(data)})"
        ) from None


def missing_error(host: str, missing: Mapping[str, str], plan: SecretPlan) -> SecretMissing:
    """The error that stops ``host``'s tasks: ``missing`` maps each lost secret's path to
    ``"missing"`` or ``"empty"``."""
    lines = []
    for path, how in sorted(missing.items()):
        name = plan.names.get(path, path)
        lines.append(f"the secret {name} ({path}) is {how}")
    names = [plan.names.get(path, path) for path in sorted(missing)]
    breaks = "; ".join(
        dict.fromkeys(plan.breaks.get(path) or GENERIC_BREAKS for path in sorted(missing))
    )
    it = "it" if len(missing) == 1 else "them"
    message = (
        f"{'; '.join(lines)} on {host}: this deployment placed {it} in an earlier run, and "
        f"a new value would silently replace the one in use there. None of {host}'s tasks "
        f"was run. Put the old value back from a backup: "
        + " ".join(f"--restore-secret {name}=FILE" for name in names)
        + f"; or generate a new one on purpose: --rotate-secrets {','.join(names)} (which "
        f"breaks: {breaks})"
    )
    return SecretMissing(message, host, sorted(missing))
