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
from fedi_run.engine.lab.cli import lab


class FediRunGroup(click.Group):
    """A click group that turns :class:`FediRunError` into a message and an exit status."""

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
    """``--tags a,b --tags c`` → ``("a", "b", "c")``."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def project_options(function):
    """The options every command that reads a playbook takes."""
    options = [
        click.argument("playbook", type=click.Path(dir_okay=False, path_type=Path)),
        click.option(
            "-i", "--inventory", "inventories", multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="TOML file with [hosts.*] (and [acme]) tables merged over the playbook's. Repeatable.",
        ),
        click.option(
            "--configuration", type=click.Path(dir_okay=False, path_type=Path),
            help="A Fediversity configuration.json read over the playbook.",
        ),
        click.option(
            "--plugin", "plugin_modules", multiple=True, metavar="MODULE",
            help="Load a plugin from an importable module. Repeatable.",
        ),
        click.option("--no-apply", is_flag=True, help="Leave out the final nixops4 apply."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def selection_options(function):
    """The selection flags shared by plan, graph, run and teardown."""
    options = [
        click.option("--only", multiple=True, metavar="PATTERN", help="Tasks whose id matches this glob. Repeatable."),
        click.option("--tags", multiple=True, metavar="TAGS", help="Tasks with any of these tags (comma separated)."),
        click.option("--skip-tags", multiple=True, metavar="TAGS", help="Leave out tasks with these tags."),
        click.option("--limit", multiple=True, metavar="HOSTS", help="Tasks on hosts matching these globs ('local' is the deployer)."),
        click.option("--from", "start", metavar="TASK", help="This task and every task after it."),
        click.option("--no-deps", is_flag=True, help="Take exactly the selection; do not pull in dependencies."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _load(playbook, inventories, configuration, plugin_modules, no_apply):
    from fedi_run.engine.project import load_project

    return load_project(
        playbook, inventories, configuration, plugin_modules=plugin_modules, apply=not no_apply
    )


def _selector(only, tags, skip_tags, limit, start, no_deps):
    from fedi_run.engine.selection import Selector

    return Selector(
        only=_split(only), tags=_split(tags), skip_tags=_split(skip_tags),
        limit=_split(limit), start=start, with_dependencies=not no_deps,
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
def plan(playbook, inventories, configuration, plugin_modules, no_apply, as_json, **selection):
    """Show the tasks in the order they would run, in parallel steps."""
    project = _load(playbook, inventories, configuration, plugin_modules, no_apply)
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
    "--format", "output_format", type=click.Choice(["mermaid", "dot", "json"]),
    default="mermaid", show_default=True, help="Output format.",
)
def graph(playbook, inventories, configuration, plugin_modules, no_apply, output_format, **selection):
    """Draw the task graph as Mermaid, Graphviz DOT or JSON."""
    from fedi_run.engine.export import RENDERERS

    project = _load(playbook, inventories, configuration, plugin_modules, no_apply)
    click.echo(RENDERERS[output_format](project.plan(_selector(**selection))), nl=False)


@cli.command()
@click.option("--plugin", "plugin_modules", multiple=True, metavar="MODULE", help="Also load this module as a plugin.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def plugins(plugin_modules, as_json):
    """List the loaded plugins: name, version and where each came from."""
    from fedi_run.engine.plugins import Plugins

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
@click.option("--plugin", "plugin_modules", multiple=True, metavar="MODULE", help="Also load this module as a plugin.")
def schema(plugin_modules):
    """Print the playbook's JSON Schema, for editors."""
    import json

    from fedi_run.engine.plugins import Plugins
    from fedi_run.engine.project import config_sections
    from fedi_run.engine.schema import json_schema

    click.echo(json.dumps(json_schema(config_sections(Plugins.load(plugin_modules))), indent=2))


cli.add_command(lab)



def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="fedi-run")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
