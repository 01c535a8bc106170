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
from fedi_run.engine.cli.completion import complete_hosts, complete_tags, complete_tasks
from fedi_run.engine.cli.defaults import PlaybookCommand
from fedi_run.engine.cli.history import history, show_run
from fedi_run.engine.cli.params import (
    STATE_HELP,
    Seconds,
    StateParam,
    default_option,
    playbook_options,
)
from fedi_run.engine.cli.verify import verify
from fedi_run.engine.lab.cli import lab
from fedi_run.panel.cli import panel


class FediRunGroup(click.Group):
    """A click group that turns :class:`FediRunError` into a message and an exit status, and
    takes ``fedi-run PLAYBOOK ...`` as ``fedi-run run PLAYBOOK ...`` — unless the word is no
    file and close to a command's name (``histroy``): then a "did you mean", exit 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            if not ctx.resilient_parsing:
                self._refuse_a_typo(ctx, args[0])
            args = ["run", *args]
        elif args and self._is_run_option(args[0]):  # fedi-run -i hosts.toml site.toml
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def _is_run_option(self, word: str) -> bool:
        """An option of ``run`` that is not one of the group's own (``--help``)."""
        name = word.split("=", 1)[0]
        if not name.startswith("-") or name in ("-h", "--help", "--version"):
            return False
        run_command = self.commands.get("run")
        return run_command is not None and any(
            name in (*param.opts, *param.secondary_opts)
            for param in run_command.params
            if isinstance(param, click.Option)
        )

    def _refuse_a_typo(self, ctx: click.Context, word: str) -> None:
        import difflib
        import os

        if word.endswith(".toml") or os.path.exists(word):
            return
        close = difflib.get_close_matches(word, list(self.commands), n=1, cutoff=0.6)
        if close:
            click.echo(
                f"error: no command '{word}' (did you mean '{close[0]}'?); a playbook is a "
                f".toml file: {ctx.command_path} PLAYBOOK.toml runs it",
                err=True,
            )
            ctx.exit(2)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[OPTIONS] COMMAND [ARGS]...")
        formatter.write_usage(ctx.command_path, "PLAYBOOK [OPTIONS]", prefix="   or: ")

    def shell_complete(self, ctx: click.Context, incomplete: str):
        """The commands, and file names: ``fedi-run PLAYBOOK`` runs a playbook."""
        from click.shell_completion import CompletionItem

        items = super().shell_complete(ctx, incomplete)
        if not incomplete.startswith("-"):
            items.append(CompletionItem(incomplete, type="file"))
        return items

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
    """Deploy Fediverse services (Garage, Mastodon, PeerTube, Pixelfed) from one playbook.

    `fedi-run PLAYBOOK [OPTIONS]` runs the playbook, a .toml file: the same as `fedi-run
    run PLAYBOOK [OPTIONS]`. The commands below plan, check, draw, undo and inspect it.

    \b
    Examples:
      fedi-run site.toml              run the playbook (as: fedi-run run site.toml)
      fedi-run plan site.toml         what a run would do, in order
      fedi-run site.toml --check --detailed-exitcode
                                      exit 0: nothing to change; 4: changes pending
      fedi-run validate site.toml -i hosts.toml
      fedi-run history site.toml      the runs so far (then: show-run site.toml ID)
      FEDI_RUN_NO_APPLY=1 fedi-run site.toml
                                      an option's default from the environment

    Each command's options also take their defaults from FEDI_RUN_<OPTION> environment
    variables (shown in its --help) and from the playbook's [run] table; the command line
    wins. Exit statuses: 0 done, 1 a task failed, 2 bad input, 3 the deployment is locked,
    4 changes (with --detailed-exitcode), 130 interrupted. Shell completion and more:
    docs/cli.md.
    """


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
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


@cli.command(
    cls=PlaybookCommand,
    epilog="""
\b
Examples:
  fedi-run validate site.toml
  fedi-run validate site.toml -i lab-inventory.toml --plugin my_plugins.matrix
""",
)
@project_options
def validate(playbook, inventories, configuration, plugin_modules, no_apply):
    """Check a playbook, its inventories, its task graph and the deployer's files it names;
    print every problem."""
    from fedi_run.engine.project import load_project

    project = load_project(  # every problem at once, the deployer files `run` reads too
        playbook,
        inventories,
        configuration,
        plugin_modules=plugin_modules,
        apply=not no_apply,
        deployer_files=True,
    )
    enabled = ", ".join(f"{name} ({why})" for name, why in project.playbook.enabled.items())
    click.echo(
        f"{playbook}: valid. Deployment {project.playbook.name!r} at {project.playbook.domain}: "
        f"{len(project.playbook.hosts)} host(s), {len(project.graph)} task(s); "
        f"services: {enabled or 'none'}."
    )


@cli.command(
    cls=PlaybookCommand,
    epilog="""
\b
Examples:
  fedi-run plan site.toml
  fedi-run plan site.toml --tags secrets --limit web
  fedi-run plan site.toml --only 'tasks.*' --no-deps --json
""",
)
@project_options
@selection_options
@default_option("--json/--no-json", "as_json", default=False, help="Print the plan as JSON.")
@default_option(
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
    from fedi_run.engine.report.state import default_state_path

    project = _load(playbook, inventories, configuration, plugin_modules, no_apply, state_path)
    the_plan = project.plan(_selector(**selection), state_path or default_state_path(playbook))
    if as_json:
        import json

        click.echo(json.dumps(the_plan.to_json(), indent=2))
    else:
        click.echo(the_plan.render())


@cli.command(
    cls=PlaybookCommand,
    epilog="""
\b
Examples:
  fedi-run graph site.toml > graph.mmd
  fedi-run graph site.toml --format dot | dot -Tsvg > graph.svg
  fedi-run graph site.toml --format json --tags secrets
""",
)
@project_options
@selection_options
@default_option(
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


@cli.command(
    epilog="""
\b
Examples:
  fedi-run plugins
  fedi-run plugins --plugin my_plugins.matrix --json
  FEDI_RUN_DISABLE_PLUGINS=matrix fedi-run plugins
""",
)
@default_option(
    "--plugin",
    "plugin_modules",
    multiple=True,
    metavar="MODULE",
    help="Also load this module as a plugin.",
)
@default_option("--json/--no-json", "as_json", default=False, help="Print as JSON.")
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


@cli.command(
    epilog="""
\b
Examples:
  fedi-run schema > playbook.schema.json
  fedi-run schema --plugin my_plugins.matrix > playbook.schema.json

An editor with a TOML language server that reads JSON Schema (such as taplo) can check
and complete a playbook against it.
""",
)
@default_option(
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
        default_option(
            "--check/--no-check", default=False, help="Change nothing; report what would change."
        ),
        default_option(
            "--detailed-exitcode/--no-detailed-exitcode",
            default=False,
            help=(
                "Exit 4 instead of 0 when a task changed something (with --check: would "
                "change); 0 means nothing did. Failures keep their status."
            ),
        ),
        default_option(
            "--diff/--no-diff",
            default=False,
            help="Show how files would change (secrets masked).",
        ),
        click.option(
            "--resume",
            is_flag=True,
            help=(
                "Run only what the last run left failed, skipped or not run (nothing left: "
                "says so, exit 0); selection flags given too narrow it."
            ),
        ),
        default_option(
            "--forks",
            type=click.IntRange(1, 1000),
            default=10,
            show_default=True,
            help="At most N tasks at once.",
        ),
        default_option(
            "--fail-fast/--no-fail-fast",
            default=False,
            help="Start no new task after the first failure.",
        ),
        default_option(
            "--timeout",
            type=Seconds(min=0, min_open=True),
            default=600.0,
            show_default=True,
            help="Seconds before a task fails.",
        ),
        default_option(
            "--retries",
            type=click.IntRange(0, 10),
            default=2,
            show_default=True,
            help="Connection attempts after the first, before a host is unreachable.",
        ),
        default_option(
            "--connect-timeout",
            type=Seconds(min=0, min_open=True),
            default=10.0,
            show_default=True,
            help="Seconds to wait for a host's SSH connection.",
        ),
        default_option(
            "--json/--no-json",
            "as_json",
            default=False,
            help="JSON lines on stdout instead of the progress display.",
        ),
        default_option(
            "--junit",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write a JUnit XML report here.",
        ),
        default_option(
            "-v",
            "--verbose",
            count=True,
            help=(
                "Show each task's output as it comes, and its changes; -vv also the commands "
                "sent and the connections' events."
            ),
        ),
        default_option(
            "--state",
            "state_path",
            type=StateParam(),
            help=STATE_HELP,
        ),
        default_option(
            "--accept-new-host-keys/--no-accept-new-host-keys",
            default=False,
            help="Accept unknown hosts' keys and record them in known_hosts.",
        ),
        default_option(
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
    detailed_exitcode,
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
        forks=forks,
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

        sinks.append(JsonLinesSink(sys.stdout, verbose=verbose))
    else:
        from fedi_run.engine.report.display import ProgressDisplay

        sinks.append(ProgressDisplay(sys.stderr, verbose=verbose, diff=diff))
    if junit is not None:
        from fedi_run.engine.report.junit import JUnitSink

        sinks.append(JUnitSink(junit))
    _check_outputs(junit, policy)
    outcome = run_project(project, request, sinks)
    status = outcome.exit_status
    if detailed_exitcode:
        from fedi_run.engine.cli.statuses import detailed

        status = detailed(status, any(c.get("changed", 0) for c in outcome.recap.values()))
    if status:
        click.get_current_context().exit(status)


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


@cli.command(
    cls=PlaybookCommand,
    epilog="""
\b
Examples:
  fedi-run run site.toml                 (or just: fedi-run site.toml)
  fedi-run site.toml -i hosts.toml --no-apply
  fedi-run site.toml --check --diff      what would change, and how
  fedi-run site.toml --check --no-apply --detailed-exitcode
                                         CI: exit 0 nothing to change, 4 changes pending
  fedi-run site.toml --tags secrets --limit web --resume
  fedi-run site.toml --json --junit report.xml > run.jsonl
""",
)
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


@cli.command(
    cls=PlaybookCommand,
    epilog="""
\b
Examples:
  fedi-run teardown site.toml --check    what a teardown would undo
  fedi-run teardown site.toml            asks for the deployment's name first
  fedi-run teardown site.toml --yes --limit web
""",
)
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
    """Console-script entry point (the garbage collector held back while starting:
    :mod:`fedi_run.engine.startup`)."""
    from fedi_run.engine import startup

    startup.begin()
    cli.main(args=argv, prog_name="fedi-run")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
