"""Assembling a deployment: plugins, playbook, tasks, graph — the engine's Python API.

:func:`load_project` is what the CLI (and the panel, and tests) call: it either returns a
:class:`Project` whose graph is valid, or raises a :class:`FediRunError` with every problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from fedi_run.engine.errors import GraphError, PluginError
from fedi_run.engine.execute.secret_generators import GENERIC
from fedi_run.engine.model.loading import load_playbook
from fedi_run.engine.model.playbook import Playbook, TaskTrace
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.nixops.apply import apply_task, deployment_directory
from fedi_run.engine.nixops.render import render_call, render_task
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.operations import Secret
from fedi_run.engine.planning.plan import Plan, make_plan
from fedi_run.engine.planning.selection import Selection, Selector, select
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.planning.user_tasks import user_tasks
from fedi_run.engine.plugin.manager import Plugins


@dataclass(frozen=True)
class Project:
    """A loaded deployment: its playbook, the plugins that built it, its task graph, and the
    secret generators its tasks' :class:`Secret` operations name (the engine's generic ones
    and the plugins', hook ``fedi_run_secret_generators``), which the run hands to the
    executor."""

    playbook: Playbook
    plugins: Plugins
    graph: TaskGraph
    secret_generators: Mapping[str, Callable[[], str]] = field(default_factory=lambda: GENERIC)

    def select(self, selector: Selector = Selector()) -> Selection:
        """The tasks ``selector`` picks, closed under dependencies unless asked otherwise."""
        return select(self.graph, selector)

    def plan(self, selector: Selector = Selector()) -> Plan:
        """The plan for ``selector``."""
        return make_plan(self.playbook.name, self.graph, self.select(selector))


def config_sections(plugins: Plugins) -> list[ConfigSection]:
    """The sections every loaded plugin declares."""
    return [section for _, section in plugins.config_sections()]


def check_secret_generators(
    tasks: Sequence[Task], generators: Mapping[str, Callable[[], str]], owners: Mapping[str, str]
) -> None:
    """Every :class:`Secret` of ``tasks`` (in their actions and their undo) names one of
    ``generators``; else a :class:`PluginError` naming the task, its plugin and the known
    generators (with who offers each, from ``owners``)."""
    for task in tasks:
        for op in (*task.actions, *(task.undo or ())):
            if isinstance(op, Secret) and op.generate not in generators:
                known = ", ".join(
                    name if owners.get(name) == "fedi-run" else f"{name} (plugin {owners[name]})"
                    for name in sorted(generators)
                )
                raise PluginError(
                    f"error: task {task.id!r} of plugin {task.plugin or 'unknown'!r} asks for the "
                    f"secret generator {op.generate!r}, which no loaded plugin offers; known "
                    f"generators: {known}"
                )


def with_history(playbook: Playbook, state_path: Path | str | None = None) -> Playbook:
    """``playbook`` with its deployment's :class:`TaskTrace` history from the state database
    at ``state_path`` (a file or a ``postgresql://`` URL; default: beside the playbook), read
    only."""
    from fedi_run.engine.report.state import read_history
    from fedi_run.engine.report.state_location import locate_state

    found = read_history(locate_state(state_path, playbook.source), playbook.name)
    history = {task: TaskTrace(*trace) for task, trace in found.items()}
    return replace(playbook, history=history)


def load_project(
    playbook: Path,
    inventories: Iterable[Path] = (),
    configuration: Path | None = None,
    plugin_modules: Iterable[str] = (),
    plugins: Plugins | None = None,
    apply: bool = True,
    state_path: Path | str | None = None,
) -> Project:
    """Load plugins (unless given), read the playbook, collect every task and build the graph.

    The graph ends with ``nixops4.render`` (the NixOps4 deployment written into
    ``.fedi-run/<name>/``) and, with ``apply``, ``nixops4.apply`` after it. Every secret
    generator a task names is checked here, before any host is contacted.

    The playbook the plugins see carries the deployment's history (``Playbook.history``:
    where its earlier runs placed what), read from the state database ``state_path``
    (default: ``.fedi-run/state.db`` beside the playbook) without creating it, so that a
    switched-off service is cleaned up only where this deployment had it.
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
    loaded = with_history(loaded, state_path)
    tasks = plugins.tasks(loaded) + user_tasks(loaded)
    generators, owners = plugins.secret_generators(GENERIC)
    check_secret_generators(tasks, generators, owners)
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
    return Project(loaded, plugins, graph, generators)
