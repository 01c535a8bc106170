"""What the commands that read a playbook share: their options, and what those become.

:func:`project_options` (the playbook, its inventories and configuration, ``--plugin``,
``--no-apply``) become the loaded project (:func:`project_of`); :func:`selection_options`
(``--only``, ``--tags``, ``--skip-tags``, ``--limit``, ``--from``, ``--no-deps``) become its
:class:`~fedi_run.engine.planning.selection.Selector` (:func:`selector_of`). Only click is
imported here; the project's modules are imported when a command runs.
"""

from __future__ import annotations

import click

from fedi_run.engine.cli.completion import complete_hosts, complete_tags, complete_tasks
from fedi_run.engine.cli.params import default_option, playbook_options


def split_list(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--tags a,b --tags c`` → ``("a", "b", "c")``; an empty part stays (``--tags ","`` is
    two), so that the :class:`Selector` refuses it, naming the flag."""
    return tuple(part.strip() for value in values for part in value.split(","))


def project_options(function):
    """The options every command that reads a playbook takes: :func:`playbook_options` and
    ``--no-apply``."""
    function = default_option(
        "--no-apply/--apply", default=False, help="Leave out the final nixops4 apply."
    )(function)
    return playbook_options(function)


def selection_options(function):
    """The selection flags shared by plan, graph, run and teardown."""
    options = [
        click.option(
            "--only",
            multiple=True,
            metavar="PATTERN",
            shell_complete=complete_tasks,
            help=(
                "Tasks matching this id, family or glob; what they need runs too (but never "
                "across --limit/--tags/--from). Repeatable."
            ),
        ),
        click.option(
            "--tags",
            multiple=True,
            metavar="TAGS",
            shell_complete=complete_tags,
            help=(
                "Only tasks with any of these tags (comma separated); what they need is not run "
                "and must be done."
            ),
        ),
        click.option(
            "--skip-tags",
            multiple=True,
            metavar="TAGS",
            shell_complete=complete_tags,
            help="Leave out tasks with these tags; what the rest need of them must be done.",
        ),
        click.option(
            "--limit",
            multiple=True,
            metavar="HOSTS",
            shell_complete=complete_hosts,
            help=(
                "Only tasks on hosts matching these globs ('local' is the deployer); no other "
                "host is contacted, and what is needed there must be done."
            ),
        ),
        click.option(
            "--from",
            "start",
            metavar="TASK",
            shell_complete=complete_tasks,
            help=(
                "The first task matching this id, family or glob and every task after it; the "
                "earlier ones they need must be done."
            ),
        ),
        click.option(
            "--no-deps",
            is_flag=True,
            help="Exactly the selection: nothing pulled in, and what it needs is not checked.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def project_of(playbook, inventories, configuration, plugin_modules, no_apply, state_path=None):
    """The project, its playbook carrying the deployment's history from the state database
    (``--state``, default beside the playbook): what its earlier runs placed where."""
    from fedi_run.engine.project import load_project

    return load_project(
        playbook,
        inventories,
        configuration,
        plugin_modules=plugin_modules,
        apply=not no_apply,
        state_path=state_path,
    )


def selector_of(only, tags, skip_tags, limit, start, no_deps):
    """The :class:`Selector` the selection flags (:func:`selection_options`) ask for."""
    from fedi_run.engine.planning.selection import Selector

    return Selector(
        only=split_list(only),
        tags=split_list(tags),
        skip_tags=split_list(skip_tags),
        limit=split_list(limit),
        start=start,
        with_dependencies=not no_deps,
    )
