"""Assembling a deployment: plugins, playbook, tasks, graph — the engine's Python API.

:func:`load_project` is what the CLI (and the panel, and tests) call: it either returns a
:class:`Project` whose graph is valid, or raises a :class:`FediRunError` with every problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fedi_run.engine.errors import GraphError
from fedi_run.engine.model.loading import load_playbook
from fedi_run.engine.model.playbook import Playbook
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.nixops.apply import apply_task, deployment_directory
from fedi_run.engine.nixops.render import render_call, render_task
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.plan import Plan, make_plan
from fedi_run.engine.planning.selection import Selection, Selector, select
from fedi_run.engine.planning.user_tasks import user_tasks
from fedi_run.engine.plugin.manager import Plugins


@dataclass(frozen=True)
class Project:
    """A loaded deployment: its playbook, the plugins that built it, and its task graph."""

    playbook: Playbook
    plugins: Plugins
    graph: TaskGraph

    def select(self, selector: Selector = Selector()) -> Selection:
        """The tasks ``selector`` picks, closed under dependencies unless asked otherwise."""
        return select(self.graph, selector)

    def plan(self, selector: Selector = Selector()) -> Plan:
        """The plan for ``selector``."""
        return make_plan(self.playbook.name, self.graph, self.select(selector))


def config_sections(plugins: Plugins) -> list[ConfigSection]:
    """The sections every loaded plugin declares."""
    return [section for _, section in plugins.config_sections()]


def load_project(
    playbook: Path,
    inventories: Iterable[Path] = (),
    configuration: Path | None = None,
    plugin_modules: Iterable[str] = (),
    plugins: Plugins | None = None,
    apply: bool = True,
) -> Project:
    """Load plugins (unless given), read the playbook, collect every task and build the graph.

    The graph ends with ``nixops4.render`` (the NixOps4 deployment written into
    ``.fedi-run/<name>/``) and, with ``apply``, ``nixops4.apply`` after it.
    """
    if plugins is None:
        plugins = Plugins.load(plugin_modules)
    from fedi_run.engine.plugin.manager import disabled_from_environment

    loaded = load_playbook(
        Path(playbook),
        config_sections(plugins),
        inventories=[Path(i) for i in inventories],
        configuration_file=configuration,
        disabled_plugins=disabled_from_environment(),
    )
    tasks = plugins.tasks(loaded) + user_tasks(loaded)
    try:
        graph = TaskGraph.build(tasks, loaded.hosts)
    except GraphError as error:
        raise GraphError(error.problems, source=loaded.source) from None
    directory = deployment_directory(loaded)
    switch_off = render_call(loaded, plugins, directory, switched_off=True)
    graph = graph.finished_with(
        lambda sinks: render_task(loaded, plugins, directory, sinks, switch_off)
    )
    if apply:
        graph = graph.finished_with(lambda sinks: apply_task(loaded, sinks, switch_off))
    return Project(loaded, plugins, graph)
