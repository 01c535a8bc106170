"""``fedi-run verify PLAYBOOK``: check that each enabled service runs and is served over HTTPS.

The main CLI mounts it (``cli.add_command(verify)``). Only click and the standard library are
imported at module level; :mod:`fedi_run.engine.verify` and the project are imported when the
command runs. Exit status 0 when every enabled service passes, 1 when one does not, 2 for bad
input (a :class:`~fedi_run.engine.errors.FediRunError`).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from fedi_run.engine.cli.defaults import PlaybookCommand
from fedi_run.engine.cli.params import Seconds, default_option, playbook_options


@click.command(
    cls=PlaybookCommand,
    epilog="""
\b
Examples:
  fedi-run verify site.toml
  fedi-run verify site.toml -i hosts.toml --json
  fedi-run verify site.toml --connect-timeout 30 --known-hosts lab/known_hosts
""",
)
@playbook_options
@default_option(
    "--known-hosts",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="known_hosts file for hosts without a pinned host_key (default ~/.ssh/known_hosts).",
)
@default_option(
    "--accept-new-host-keys/--no-accept-new-host-keys",
    default=False,
    help="Accept unknown hosts' keys and record them in known_hosts.",
)
@default_option(
    "--connect-timeout",
    type=Seconds(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for SSH, for the HTTPS connection and for its answer.",
)
@default_option("--json/--no-json", "as_json", default=False, help="Print the results as JSON.")
def verify(
    playbook,
    inventories,
    configuration,
    plugin_modules,
    known_hosts,
    accept_new_host_keys,
    connect_timeout,
    as_json,
):
    """Check each enabled service on its host: its systemd unit is active, and
    https://<service>.<domain>/ answers with a certificate of the configured CA."""
    from dataclasses import replace

    from fedi_run.engine.errors import FediRunError
    from fedi_run.engine.execute.connection import ConnectionPool, HostKeyPolicy
    from fedi_run.engine.project import load_project
    from fedi_run.engine.verify import verify_project

    context = click.get_current_context()
    try:
        project = load_project(playbook, inventories, configuration, plugin_modules, apply=False)
    except FediRunError as error:
        click.echo(str(error), err=True)
        context.exit(error.exit_status)
    policy = HostKeyPolicy(accept_new=accept_new_host_keys, connect_timeout=connect_timeout)
    if known_hosts is not None:
        policy = replace(policy, known_hosts=known_hosts)
    pool = ConnectionPool(project.playbook.hosts, policy, retries=0)
    try:
        results = verify_project(project, pool, timeout=connect_timeout)
    finally:
        pool.close_all()
    passed = sum(result.ok for result in results)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "deployment": project.playbook.name,
                    "ok": passed == len(results),
                    "services": [result.as_json() for result in results],
                },
                indent=2,
            )
        )
    else:
        for result in results:
            click.echo(result.describe())
        if results:
            click.echo(f"verify: {passed} of {len(results)} enabled service(s) pass.")
        else:
            click.echo("verify: no service is enabled; nothing to check.")
    context.exit(0 if passed == len(results) else 1)
