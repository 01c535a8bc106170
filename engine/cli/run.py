"""The ``run`` and ``teardown`` commands: a playbook's tasks carried out on its hosts, or undone.

Both take the playbook's options and the selection flags (``engine.cli.project_args``) and the
options of :func:`run_options`, and hand one ``RunRequest`` to ``engine.run.run_project``, its
events to the progress display (or ``--json`` lines) and ``--junit``; the exit status is the
run's (with ``--detailed-exitcode``: 4 when something changed). Before any host: the files the
CLI writes besides the state must be writable, and a teardown (not ``--check``) is confirmed —
the deployment's name typed on a terminal, or ``--yes``. As in ``engine.cli.main``, only click
and the standard library are imported at module level.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fedi_run.engine.cli.defaults import PlaybookCommand
from fedi_run.engine.cli.params import STATE_HELP, Seconds, StateParam, default_option
from fedi_run.engine.cli.project_args import (
    project_of,
    project_options,
    selection_options,
    selector_of,
    split_list,
)


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

    project = project_of(playbook, inventories, configuration, plugin_modules, no_apply, state_path)
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
        selector=selector_of(**selection),
        state_path=state_path,
        resume=resume,
        host_keys=policy,
        retries=retries,
        argv=tuple(sys.argv[1:]),
        yes=yes or (kind == "teardown" and not check and _confirm_teardown(project)),
        rotate_secrets=split_list(rotate_secrets),
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


@click.command(
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


@click.command(
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
