"""The task: one node of the graph, as a frozen value.

A task id is ``<namespace>.<name>`` (``mastodon.secrets``), with ``@<host>`` appended for a step
that runs once per host (``acme.trust@mastodon``). The operator's own tasks live under the
namespace ``tasks``. ``requires`` names the ids of the tasks that must finish first; naming a
per-host family without ``@`` (``acme.trust``) means "that family's task on my host", or every
member of the family when there is none on my host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fedi_run.engine.planning.operations import Operation, removed_by, undo_of

TASK_ID = re.compile(
    r"(?P<base>[a-z][a-z0-9_-]*(?:\.[a-z0-9][a-z0-9_-]*)+)(?:@(?P<host>[a-z][a-z0-9-]*))?"
)
LOCAL = "local"
"""How the deployer itself is named where a host is shown; tasks with ``host=None`` run there."""


@dataclass(frozen=True)
class Task:
    """One step of a deployment.

    ``host`` is the ``[hosts]`` name the task runs on, or ``None`` for the deployer.
    ``actions`` run in order; ``undo`` runs in a teardown — when ``None`` it is derived from
    the actions (files removed, in reverse order), when ``()`` there is nothing to undo.
    ``shares_host`` lets the task run beside others on its host; ``timeout`` (seconds) overrides
    the run's task timeout. ``reads`` names the playbook keys (dotted, ``acme.ca_file``) of the
    deployer files the task reads: each must be a readable file before any host is contacted.
    ``plugin`` is filled in by the engine with the name of the plugin that contributed the task.
    ``destructive`` says whether the task removes data (secrets, keys, buckets, files) — for
    a removal its operations do not show (a :class:`Command` or :class:`Call` that deletes a
    bucket); ``None`` derives it from them (:meth:`removes`). ``plan`` and ``--check`` mark
    such a task. ``skipped``, when not empty, says why the task is not run (``"when: false"``):
    it stays in the graph, a run (and a teardown) records it as skipped with that reason
    without contacting its host, and the tasks that require it go on as if it were done.
    """

    id: str
    host: str | None
    requires: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""
    actions: tuple[Operation, ...] = ()
    undo: tuple[Operation, ...] | None = None
    shares_host: bool = False
    timeout: float | None = None
    reads: tuple[str, ...] = ()
    plugin: str = field(default="", compare=False)
    destructive: bool | None = None
    skipped: str = ""

    def __post_init__(self) -> None:
        match = TASK_ID.fullmatch(self.id)
        if not match:
            raise ValueError(
                f"task id {self.id!r} is not of the form '<namespace>.<name>' or "
                "'<namespace>.<name>@<host>' (lowercase letters, digits, '_' and '-')"
            )
        if match["host"] is not None and match["host"] != self.host:
            raise ValueError(
                f"task id {self.id!r} names host {match['host']!r} but runs on {self.host!r}"
            )
        object.__setattr__(self, "requires", tuple(self.requires))
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "reads", tuple(self.reads))

    @property
    def namespace(self) -> str:
        """The part before the first dot: the plugin or ``tasks``."""
        return self.id.split(".", 1)[0]

    @property
    def family(self) -> str:
        """The id without ``@<host>``."""
        return self.id.split("@", 1)[0]

    @property
    def where(self) -> str:
        """The host name, or ``local`` for the deployer."""
        return self.host or LOCAL

    def removes(self, teardown: bool = False) -> tuple[str, ...]:
        """The paths the task's actions (its undo, for a ``teardown``) remove with what they
        hold (``operations.removed_by``)."""
        operations = self.undo_actions() if teardown else self.actions
        return tuple(path for path in map(removed_by, operations) if path is not None)

    def is_destructive(self, teardown: bool = False) -> bool:
        """Whether the task (its undo, for a ``teardown``) removes data: ``destructive`` when
        set (for the actions), else whether :meth:`removes` names anything."""
        if self.destructive is not None and not teardown:
            return self.destructive
        return bool(self.removes(teardown))

    def undo_actions(self) -> tuple[Operation, ...]:
        """What a teardown runs for this task."""
        if self.undo is not None:
            return self.undo
        undone = (undo_of(op) for op in reversed(self.actions))
        return tuple(op for op in undone if op is not None)


def per_host_id(family: str, host: str) -> str:
    """``family@host``: the id of a per-host step."""
    return f"{family}@{host}"
