"""The ``fedi-run`` command line: the click group, the commands that plan and inspect a
playbook, and the registration of the others (``run`` and ``teardown``: ``engine.cli.run``;
``history``, ``show-run``, ``verify``, ``lab``, ``panel``); :func:`main` is the console script.

Only click and the standard library are imported at module level, so ``fedi-run --help`` stays
fast; each command imports what it needs when it runs. Every deliberate error is a
:class:`~fedi_run.engine.errors.FediRunError`, printed as one paragraph with its exit status.
"""

from __future__ import annotations

import sys

import click

from fedi_run.engine import __version__
from fedi_run.engine.cli.defaults import PlaybookCommand
from fedi_run.engine.cli.history import history, show_run
from fedi_run.engine.cli.params import STATE_HELP, StateParam, default_option
from fedi_run.engine.cli.project_args import (
    project_of,
    project_options,
    selection_options,
    selector_of,
)
from fedi_run.engine.cli.run import run, teardown
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

    project = project_of(playbook, inventories, configuration, plugin_modules, no_apply, state_path)
    the_plan = project.plan(selector_of(**selection), state_path or default_state_path(playbook))
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

    project = project_of(playbook, inventories, configuration, plugin_modules, no_apply)
    click.echo(RENDERERS[output_format](project.plan(selector_of(**selection))), nl=False)


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


cli.add_command(run)
cli.add_command(teardown)
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
