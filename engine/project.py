"""Assembling a deployment: plugins, playbook, tasks, graph — the engine's Python API.

:func:`load_project` is what the CLI (and the panel, and tests) call: it either returns a
:class:`Project` whose graph is valid, or raises a :class:`FediRunError` with every problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from fedi_run.engine.errors import GraphError, PlaybookError, PluginError, Problem
from fedi_run.engine.execute.secret_generators import GENERIC
from fedi_run.engine.model.loading import PartialPlaybook, load_partial
from fedi_run.engine.model.playbook import Playbook, TaskTrace
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.nixops.apply import apply_task, deployment_directory
from fedi_run.engine.nixops.render import render_call, render_task
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.operations import Secret
from fedi_run.engine.planning.plan import Plan, make_plan
from fedi_run.engine.planning.selection import Selection, Selector, select
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.planning.user_tasks import NAMESPACE, checked_user_tasks
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

    def select(self, selector: Selector = Selector(), kind: str = "run") -> Selection:
        """The tasks ``selector`` picks for a ``kind`` (``run``, ``teardown``), and what they
        need that it leaves out (``engine.planning.selection``)."""
        return select(self.graph, selector, kind)

    def plan(self, selector: Selector = Selector(), state_path: Path | None = None) -> Plan:
        """The plan for ``selector``. With ``state_path`` (a state database, read only), what
        the selection needs and leaves out is shown with what the state records of it, and
        one that is not done is :class:`DependenciesNotDone` — as the run would refuse."""
        selection = self.select(selector)
        states = None
        if state_path is not None and selection.outside:
            from fedi_run.engine.report.readiness import check_outside, outside_states
            from fedi_run.engine.report.state_reads import read_last_outcomes

            outcomes = read_last_outcomes(state_path, self.playbook.name, selection.outside)
            states = outside_states(self.graph, selection, outcomes, "run")
            check_outside(
                self.graph,
                selection,
                states,
                "run",
                selector,
                selector.describe(),
                self.playbook.source,
            )
        return make_plan(self.playbook.name, self.graph, selection, states)


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
    from fedi_run.engine.report.state_location import locate_state
    from fedi_run.engine.report.state_reads import read_history

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
    deployer_files: bool = False,
) -> Project:
    """Load plugins (unless given), read the playbook, collect every task and build the graph.

    One pass: the problems of the files' structure, of the operator's templates and files,
    of the graph (unknown ``requires``, every cycle) and — when any of those is found, or with
    ``deployer_files`` (``validate``) — of the deployer's files every task reads or writes
    (``preflight.deployer_problems``) are all raised at once, in one :class:`PlaybookError` (only
    graph problems of the plugins' own tasks: a :class:`GraphError`). What the plugins build
    needs their tables valid: while another table than the operator's has a problem, only
    the operator's tasks are checked, and a ``requires`` naming another task is taken as it is.

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

    partial = load_partial(
        Path(playbook),
        config_sections(plugins),
        inventories=[Path(i) for i in inventories],
        configuration_file=configuration,
        disabled_plugins=disabled_from_environment(),
    )
    if partial.playbook is None:
        raise PlaybookError(partial.problems)
    loaded = partial.playbook
    problems = list(partial.problems)
    if partial.complete:
        loaded = with_history(loaded, state_path)
    made, found = checked_user_tasks(loaded, partial.broken)
    problems += found
    tasks = (plugins.tasks(loaded) if partial.complete else []) + made
    generators, owners = plugins.secret_generators(GENERIC)
    check_secret_generators(tasks, generators, owners)
    try:
        graph = TaskGraph.build(tasks, loaded.hosts, absent=_absent(partial))
    except GraphError as error:
        if not problems and not any(_keyed(about, loaded) for about, _ in error.about):
            raise GraphError(error.problems, source=loaded.source) from None
        problems += _graph_problems(error, loaded)
        graph = None
    if problems or graph is None:
        raise PlaybookError(problems + _deployer_problems(loaded, tasks, plugins, partial))
    directory = deployment_directory(loaded)
    switch_off = render_call(loaded, plugins, directory, switched_off=True)
    graph = graph.finished_with(
        lambda sinks: render_task(loaded, plugins, directory, sinks, switch_off)
    )
    if apply:
        graph = graph.finished_with(lambda sinks: apply_task(loaded, sinks, switch_off))
    if deployer_files:
        from fedi_run.engine.preflight import deployer_problems

        found = deployer_problems(loaded, list(graph.tasks.values()))
        if found:
            raise PlaybookError(found)
    return Project(loaded, plugins, graph, generators)


def _absent(partial: PartialPlaybook) -> Callable[[str], bool]:
    """The ``requires`` entries not to report as unknown: those naming an operator's task
    whose table had problems, and — when the plugins' tasks could not be built — every entry
    that may name one of theirs (not ``tasks.…``, nor an operator's task's bare name)."""
    assert partial.playbook is not None
    dropped = {f"{NAMESPACE}.{key[1]}" for key in partial.broken if key[0] == NAMESPACE}
    operators = {f"{NAMESPACE}.{name}" for name in partial.playbook.tasks} | dropped

    def absent(requirement: str) -> bool:
        if requirement.split("@")[0] in dropped:
            return True
        mine = requirement.startswith(f"{NAMESPACE}.") or f"{NAMESPACE}.{requirement}" in operators
        return not partial.complete and not mine

    return absent


def _keyed(about: tuple[str, ...], playbook: Playbook) -> str | None:
    """The operator's task (``[tasks.<name>]``'s name) among the task ids ``about``, if any."""
    for task_id in about:
        family = task_id.split("@")[0]
        if family.startswith(f"{NAMESPACE}.") and family[len(NAMESPACE) + 1 :] in playbook.tasks:
            return family[len(NAMESPACE) + 1 :]
    return None


def _graph_problems(error: GraphError, playbook: Playbook) -> list[Problem]:
    """``error``'s problems as playbook problems: keyed to ``tasks.<name>.requires`` when
    about an operator's task, else the playbook's ``invalid task graph``."""
    problems = []
    for (about, short), text in zip(error.about, error.problems, strict=True):
        name = _keyed(about, playbook)
        if name is None:
            problems.append(Problem(playbook.source, "", f"invalid task graph: {text}"))
        else:
            origin = playbook.origin(NAMESPACE, name, "requires")
            problems.append(Problem(origin, f"{NAMESPACE}.{name}.requires", short))
    return problems


def _deployer_problems(
    playbook: Playbook, tasks: Sequence[Task], plugins: Plugins, partial: PartialPlaybook
) -> list[Problem]:
    """What :func:`fedi_run.engine.preflight.deployer_problems` finds for every task that could be
    built — with the render's, when the plugins' tasks could be built too."""
    from fedi_run.engine.preflight import deployer_problems, render_directory_problems

    if partial.complete:
        directory = deployment_directory(playbook)
        switch_off = render_call(playbook, plugins, directory, switched_off=True)
        render = render_task(playbook, plugins, directory, [], switch_off)
        return deployer_problems(playbook, [*tasks, render])
    found = deployer_problems(playbook, tasks)
    if ("deployment",) not in partial.broken:
        found += render_directory_problems(playbook)
    return found
