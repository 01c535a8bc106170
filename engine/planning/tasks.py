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

from fedi_run.engine.planning.operations import Operation, undo_of

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
    the run's task timeout. ``plugin`` is filled in by the
    engine with the name of the plugin that contributed the task.
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
    plugin: str = field(default="", compare=False)

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

    def undo_actions(self) -> tuple[Operation, ...]:
        """What a teardown runs for this task."""
        if self.undo is not None:
            return self.undo
        undone = (undo_of(op) for op in reversed(self.actions))
        return tuple(op for op in undone if op is not None)


def per_host_id(family: str, host: str) -> str:
    """``family@host``: the id of a per-host step."""
    return f"{family}@{host}"
