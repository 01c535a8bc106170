"""The ``fedi-run`` command line.

Only click and the standard library are imported at module level, so ``fedi-run --help`` stays
fast; each command imports what it needs when it runs. Every deliberate error is a
:class:`~fedi_run.engine.errors.FediRunError`, printed as one paragraph with its exit status.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fedi_run.engine import __version__
from fedi_run.engine.cli.history import history, show_run
from fedi_run.engine.cli.params import STATE_HELP, Seconds, StateParam, playbook_options
from fedi_run.engine.cli.verify import verify
from fedi_run.engine.lab.cli import lab
from fedi_run.panel.cli import panel


class FediRunGroup(click.Group):
    """A click group that turns :class:`FediRunError` into a message and an exit status, and
    takes ``fedi-run PLAYBOOK ...`` as ``fedi-run run PLAYBOOK ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):  # noqa: D401 - click API
        from fedi_run.engine.errors import FediRunError

        try:
            return super().invoke(ctx)
        except FediRunError as error:
            click.echo(str(error), err=True)
            ctx.exit(error.exit_status)


@click.group(cls=FediRunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fedi-run")
def cli() -> None:
    """Deploy Fediverse services (Garage, Mastodon, PeerTube, Pixelfed) from one playbook."""


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--tags a,b --tags c`` → ``("a", "b", "c")``; an empty part stays (``--tags ","`` is
    two), so that the :class:`Selector` refuses it, naming the flag."""
    return tuple(part.strip() for value in values for part in value.split(","))


def project_options(function):
    """The options every command that reads a playbook takes: :func:`playbook_options` and
    ``--no-apply``."""
    function = click.option("--no-apply", is_flag=True, help="Leave out the final nixops4 apply.")(
        function
    )
    return playbook_options(function)


def selection_options(function):
    """The selection flags shared by plan, graph, run and teardown."""
    options = [
        click.option(
            "--only",
            multiple=True,
            metavar="PATTERN",
            help="Tasks whose id matches this glob. Repeatable.",
        ),
        click.option(
            "--tags",
            multiple=True,
            metavar="TAGS",
            help="Tasks with any of these tags (comma separated).",
        ),
        click.option(
            "--skip-tags", multiple=True, metavar="TAGS", help="Leave out tasks with these tags."
        ),
        click.option(
            "--limit",
            multiple=True,
            metavar="HOSTS",
            help="Tasks on hosts matching these globs ('local' is the deployer).",
        ),
        click.option("--from", "start", metavar="TASK", help="This task and every task after it."),
        click.option(
            "--no-deps",
            is_flag=True,
            help="Take exactly the selection; do not pull in dependencies.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _load(playbook, inventories, configuration, plugin_modules, no_apply, state_path=None):
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


def _selector(only, tags, skip_tags, limit, start, no_deps):
    from fedi_run.engine.planning.selection import Selector

    return Selector(
        only=_split(only),
        tags=_split(tags),
        skip_tags=_split(skip_tags),
        limit=_split(limit),
        start=start,
        with_dependencies=not no_deps,
    )


@cli.command()
@project_options
def validate(playbook, inventories, configuration, plugin_modules, no_apply):
    """Check a playbook, its inventories and its task graph; print every problem."""
    project = _load(playbook, inventories, configuration, plugin_modules, no_apply)
    enabled = ", ".join(f"{name} ({why})" for name, why in project.playbook.enabled.items())
    click.echo(
        f"{playbook}: valid. Deployment {project.playbook.name!r} at {project.playbook.domain}: "
        f"{len(project.playbook.hosts)} host(s), {len(project.graph)} task(s); "
        f"services: {enabled or 'none'}."
    )


@cli.command()
@project_options
@selection_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option(
    "--state",
    "state_path",
    type=StateParam(),
    help=f"The state the run would use. {STATE_HELP}",
)
def plan(
    playbook, inventories, configuration, plugin_modules, no_apply, as_json, state_path, **selection
):
    """Show the tasks in the order they would run, in parallel steps; '!' marks a task that
    removes data (secrets, keys, files)."""
    project = _load(playbook, inventories, configuration, plugin_modules, no_apply, state_path)
    the_plan = project.plan(_selector(**selection))
    if as_json:
        import json

        click.echo(json.dumps(the_plan.to_json(), indent=2))
    else:
        click.echo(the_plan.render())


@cli.command()
@project_options
@selection_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["mermaid", "dot", "json"]),
    default="mermaid",
    show_default=True,
    help="Output format.",
)
def graph(
    playbook, inventories, configuration, plugin_modules, no_apply, output_format, **selection
):
    """Draw the task graph as Mermaid, Graphviz DOT or JSON."""
    from fedi_run.engine.planning.export import RENDERERS

    project = _load(playbook, inventories, configuration, plugin_modules, no_apply)
    click.echo(RENDERERS[output_format](project.plan(_selector(**selection))), nl=False)


@cli.command()
@click.option(
    "--plugin",
    "plugin_modules",
    multiple=True,
    metavar="MODULE",
    help="Also load this module as a plugin.",
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def plugins(plugin_modules, as_json):
    """List the loaded plugins: name, version and where each came from."""
    from fedi_run.engine.plugin.manager import Plugins

    loaded = Plugins.load(plugin_modules)
    if as_json:
        import json
        from dataclasses import asdict

        click.echo(json.dumps([asdict(info) for info in loaded.infos], indent=2))
        return
    width = max((len(info.name) for info in loaded.infos), default=4)
    for info in loaded.infos:
        click.echo(f"{info.name:<{width}}  {info.version:<10}  {info.origin}")


@cli.command()
@click.option(
    "--plugin",
    "plugin_modules",
    multiple=True,
    metavar="MODULE",
    help="Also load this module as a plugin.",
)
def schema(plugin_modules):
    """Print the playbook's JSON Schema, for editors."""
    import json

    from fedi_run.engine.model.schema import json_schema
    from fedi_run.engine.plugin.manager import Plugins
    from fedi_run.engine.project import config_sections

    click.echo(json.dumps(json_schema(config_sections(Plugins.load(plugin_modules))), indent=2))


def run_options(function):
    """The options shared by run and teardown."""
    options = [
        click.option("--check", is_flag=True, help="Change nothing; report what would change."),
        click.option("--diff", is_flag=True, help="Show how files would change (secrets masked)."),
        click.option(
            "--resume",
            is_flag=True,
            help=(
                "Run only what the last run left failed, skipped or not run; selection flags "
                "given too narrow it."
            ),
        ),
        click.option(
            "--forks",
            type=click.IntRange(1, 1000),
            help="At most N tasks at once (default: [run] forks, 10).",
        ),
        click.option(
            "--fail-fast", is_flag=True, help="Start no new task after the first failure."
        ),
        click.option(
            "--timeout",
            type=Seconds(min=0, min_open=True),
            default=600.0,
            show_default=True,
            help="Seconds before a task fails.",
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, 10),
            default=2,
            show_default=True,
            help="Connection attempts after the first, before a host is unreachable.",
        ),
        click.option(
            "--connect-timeout",
            type=Seconds(min=0, min_open=True),
            default=10.0,
            show_default=True,
            help="Seconds to wait for a host's SSH connection.",
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            help="JSON lines on stdout instead of the progress display.",
        ),
        click.option(
            "--junit",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write a JUnit XML report here.",
        ),
        click.option("-v", "--verbose", is_flag=True, help="Show each command's output."),
        click.option("--state", "state_path", type=StateParam(), help=STATE_HELP),
        click.option(
            "--accept-new-host-keys",
            is_flag=True,
            help="Accept unknown hosts' keys and record them in known_hosts.",
        ),
        click.option(
            "--known-hosts",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help=(
                "known_hosts file for hosts without a pinned host_key (default ~/.ssh/known_hosts)."
            ),
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _execute(
    kind,
    playbook,
    inventories,
    configuration,
    plugin_modules,
    no_apply,
    check,
    diff,
    resume,
    forks,
    fail_fast,
    timeout,
    retries,
    connect_timeout,
    as_json,
    junit,
    verbose,
    state_path,
    accept_new_host_keys,
    known_hosts,
    rotate_secrets=(),
    restore_secrets=(),
    change_domain=False,
    yes=False,
    **selection,
):
    from dataclasses import replace

    from fedi_run.engine.execute.connection import HostKeyPolicy
    from fedi_run.engine.execute.scheduler import ExecutionOptions
    from fedi_run.engine.run import RunRequest, run_project

    project = _load(playbook, inventories, configuration, plugin_modules, no_apply, state_path)
    options = ExecutionOptions(
        kind=kind,
        check=check,
        diff=diff,
        forks=forks or project.playbook.run.forks,
        fail_fast=fail_fast,
        timeout=timeout,
    )
    policy = HostKeyPolicy(accept_new=accept_new_host_keys, connect_timeout=connect_timeout)
    if known_hosts is not None:
        policy = replace(policy, known_hosts=known_hosts)
    request = RunRequest(
        options=options,
        selector=_selector(**selection),
        state_path=state_path,
        resume=resume,
        host_keys=policy,
        retries=retries,
        argv=tuple(sys.argv[1:]),
        yes=yes or (kind == "teardown" and not check and _confirm_teardown(project)),
        rotate_secrets=_split(rotate_secrets),
        restore_secrets=tuple(_backup(value) for value in restore_secrets),
        change_domain=change_domain,
        warn=lambda text: click.echo(text, err=True),
    )
    sinks = []
    if as_json:
        from fedi_run.engine.report.jsonlines import JsonLinesSink

        sinks.append(JsonLinesSink(sys.stdout))
    else:
        from fedi_run.engine.report.display import ProgressDisplay

        sinks.append(ProgressDisplay(sys.stderr, verbose=verbose, diff=diff))
    if junit is not None:
        from fedi_run.engine.report.junit import JUnitSink

        sinks.append(JUnitSink(junit))
    _check_outputs(junit, policy)
    outcome = run_project(project, request, sinks)
    if outcome.exit_status:
        click.get_current_context().exit(outcome.exit_status)


def _confirm_teardown(project) -> bool:
    """On a terminal, the deployment's name typed (as the panel asks for it) confirms a
    teardown; another answer refuses it. Without a terminal, False: ``--yes`` is needed."""
    from fedi_run.engine.errors import NotConfirmed

    if not sys.stdin.isatty():
        return False
    name = project.playbook.name
    hosts = sorted({t.host for t in project.graph.tasks.values() if t.host is not None})
    click.echo(
        f"Tear down deployment '{name}'? Its tasks are undone on {len(hosts)} host(s) "
        f"({', '.join(hosts) or 'none'}): their secrets and files removed, the originals put "
        "back.",
        err=True,
    )
    typed = click.prompt("Type the deployment's name to confirm", default="", err=True)
    if typed.strip() != name:
        raise NotConfirmed(
            f"error: the name typed is not the deployment's ({name!r}): the teardown was not "
            "confirmed. Nothing was changed."
        )
    return True


def _backup(value: str) -> tuple[str, Path]:
    """``NAME=FILE`` of ``--restore-secret``."""
    from fedi_run.engine.errors import UsageError

    name, equals, file = value.partition("=")
    if not equals or not name.strip() or not file:
        raise UsageError(
            f"error: --restore-secret {value!r}: expected NAME=FILE (the secret's name, and "
            "the file holding the value to put back)"
        )
    return name.strip(), Path(file)


def _check_outputs(junit, policy) -> None:
    """Every file the run writes on the deployer besides its state (checked by the state
    itself) can be written, before any host is contacted: the ``--junit`` report, and the
    known_hosts file ``--accept-new-host-keys`` records new keys in."""
    from fedi_run.engine.errors import UsageError
    from fedi_run.engine.private_files import cannot_write

    wanted = [("--junit", junit, True)] if junit is not None else []
    if policy.accept_new:
        wanted.append(("--known-hosts", policy.known_hosts, False))
    for flag, path, replaced in wanted:
        reason = cannot_write(path, replaced=replaced)
        if reason:
            raise UsageError(
                f"error: {flag} {path}: {reason}; give {flag} a file in a writable directory. "
                "Nothing was run."
            )


@cli.command()
@project_options
@selection_options
@run_options
@click.option(
    "--rotate-secrets",
    "rotate_secrets",
    multiple=True,
    metavar="NAME",
    help=(
        "Generate these secrets anew on purpose (names comma separated or repeated: a path, "
        "its end, a task id; 'all': every selected one). Warns what each breaks."
    ),
)
@click.option(
    "--restore-secret",
    "restore_secrets",
    multiple=True,
    metavar="NAME=FILE",
    help="Put a secret back from a backup file (its exact bytes; masked). Repeatable.",
)
@click.option(
    "--change-domain",
    is_flag=True,
    help="Run although [deployment] domain differs from the one last applied.",
)
def run(**arguments):
    """Run the playbook's tasks on its hosts, ending with nixops4 apply (the default command)."""
    _execute("run", **arguments)


@cli.command()
@project_options
@selection_options
@run_options
@click.option(
    "-y",
    "--yes",
    is_flag=True,
    help="Do not ask for the deployment's name (needed without a terminal).",
)
def teardown(**arguments):
    """Undo the playbook's tasks in reverse dependency order."""
    _execute("teardown", **arguments)


cli.add_command(history)
cli.add_command(show_run)
cli.add_command(verify)
cli.add_command(lab)
cli.add_command(panel)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="fedi-run")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
