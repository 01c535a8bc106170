"""``fedi-run lab``: start, inspect, use and stop throwaway target hosts and an ACME server.

Only click and the standard library are imported here at module level (``fedi-run --help``
imports this module); every command imports the lab machinery when it runs. Deliberate
failures raise :class:`~fedi_run.engine.errors.LabError` (printed, exit status 2).
"""

from __future__ import annotations

import os
import sys

import click

DIR_OPTION = click.option(
    "--dir",
    "directory",
    default=".fedi-lab",
    show_default=True,
    type=click.Path(file_okay=False),
    envvar="FEDI_RUN_LAB_DIR",
    show_envvar=True,
    help="The lab directory (state, keys, inventory).",
)


def _command_words(words: tuple[str, ...]) -> list[str]:
    """COMMAND's words without the ``--`` that separates them from HOST."""
    return list(words[1:] if words[:1] == ("--",) else words)


def _split_hosts(values: tuple[str, ...]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


@click.group(
    epilog="""
\b
Examples:
  sudo fedi-run lab up --hosts web,db --acme
  fedi-run site.toml -i .fedi-lab/inventory.toml --no-apply
  fedi-run lab run web -- cat /etc/os-release
  sudo fedi-run lab down
"""
)
def lab() -> None:
    """Start and stop throwaway target hosts and an ACME server on this machine.

    Each host is Debian's sshd on its own address in 127.0.0.0/8 (port 22) in its own mount
    and UTS namespace; the ACME server is Debian's pebble. Needs root. See docs/lab.md.
    """


@lab.command(
    epilog="""
\b
Examples:
  sudo fedi-run lab up --hosts web
  sudo fedi-run lab up --hosts garage,mastodon --acme --dir /tmp/lab
"""
)
@click.option(
    "--hosts",
    "hosts",
    multiple=True,
    metavar="NAME[,NAME...]",
    help="Hosts to start, comma-separated or repeated.",
)
@click.option("--acme", is_flag=True, help="Also start a Pebble ACME server.")
@DIR_OPTION
def up(hosts: tuple[str, ...], acme: bool, directory: str) -> None:
    """Start a lab: one target host per name and, with --acme, Pebble.

    Refused while a lab is up in the same --dir: run `fedi-run lab down` first.
    """
    from fedi_run.engine.lab import control

    state = control.up(directory, _split_hosts(hosts), acme=acme)
    click.echo(f"lab up in {state.dir}")
    for host in state.hosts:
        click.echo(f"  {host.name:<16} {host.user}@{host.address}:{host.port}")
    if state.acme:
        click.echo(f"  {'acme':<16} {state.acme.server} (CA {state.acme.ca_file})")
    click.echo(f"inventory: {state.inventory_path}")


@lab.command(
    epilog="""
\b
Examples:
  sudo fedi-run lab down
  sudo fedi-run lab down --dir /tmp/lab
"""
)
@DIR_OPTION
def down(directory: str) -> None:
    """Stop everything the lab started and remove its state; nothing is left running."""
    from fedi_run.engine.lab import control

    state = control.down(directory)
    if state is None:
        click.echo(f"no lab in {os.path.abspath(directory)}; nothing to stop")
    else:
        click.echo(f"lab down: {os.path.abspath(directory)}")


@lab.command(
    epilog="""
\b
Examples:
  fedi-run lab inventory > lab.toml
  fedi-run site.toml -i lab.toml --no-apply    (host keys are pinned in it)
"""
)
@DIR_OPTION
def inventory(directory: str) -> None:
    """Print the lab's inventory (TOML for `fedi-run -i`)."""
    from fedi_run.engine.lab import inventory as inv
    from fedi_run.engine.lab import state

    click.echo(inv.render(state.require(directory)), nl=False)


@lab.command(
    epilog="""
\b
Examples:
  fedi-run lab status
  fedi-run lab status --dir /tmp/lab || sudo fedi-run lab up --hosts web --dir /tmp/lab
"""
)
@DIR_OPTION
@click.pass_context
def status(ctx: click.Context, directory: str) -> None:
    """Show each host and the ACME server, and whether it runs (exit status 1 if not all do)."""
    from fedi_run.engine.lab import control

    state, rows = control.status(directory)
    click.echo(f"lab in {state.dir}")
    for row in rows:
        word = "up" if row.running else "DOWN"
        click.echo(f"  {row.name:<16} {row.endpoint:<32} {word:<5} pid {row.pid}")
    if not all(row.running for row in rows):
        ctx.exit(1)


@lab.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    epilog="""
\b
Examples:
  fedi-run lab run web -- cat /etc/os-release
  fedi-run lab run -n web -- 'uname -a; id'
  echo hello | fedi-run lab run web -- 'cat > /tmp/greeting'
""",
)
@DIR_OPTION
@click.option("-n", "no_stdin", is_flag=True, help="Do not pass stdin on (as `ssh -n`).")
@click.argument("host")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context, directory: str, no_stdin: bool, host: str, command: tuple[str, ...]
) -> None:
    """Run COMMAND as root on HOST: `fedi-run lab run HOST -- CMD [ARGS...]`.

    Like ssh, the words of COMMAND are joined with spaces and run by the host's shell, and
    stdin is passed on unless it is a terminal (or -n is given). Output streams as it comes;
    the exit status is the command's.
    """
    from fedi_run.engine.errors import LabError
    from fedi_run.engine.lab.session import Lab

    if not _command_words(command):
        raise LabError("error: no command given: `fedi-run lab run HOST -- CMD [ARGS...]`")
    lab_ = Lab.open(directory)
    try:
        stdin = None if no_stdin or sys.stdin.isatty() else click.get_binary_stream("stdin")
        status_ = lab_.connection(host).stream(
            " ".join(_command_words(command)),
            click.get_binary_stream("stdout"),
            click.get_binary_stream("stderr"),
            input=stdin,
        )
    finally:
        lab_.close()
    ctx.exit(status_ if status_ >= 0 else 255)


@lab.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    epilog="""
\b
Examples:
  fedi-run lab shell web
  fedi-run lab shell web -- ls -l /srv
""",
)
@DIR_OPTION
@click.argument("host")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def shell(directory: str, host: str, command: tuple[str, ...]) -> None:
    """Open a root shell on HOST with the system ssh (or run `-- COMMAND` through it).

    The host key is checked against the lab's known_hosts file (StrictHostKeyChecking=yes).
    """
    from fedi_run.engine.lab import state

    lab_state = state.require(directory)
    host_info = lab_state.host(host)
    argv = [
        "ssh",
        "-i",
        str(lab_state.identity),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={lab_state.known_hosts_path}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-p",
        str(host_info.port),
        f"{host_info.user}@{host_info.address}",
        *_command_words(command),
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp("ssh", argv)
    except OSError as error:
        from fedi_run.engine.errors import LabError

        raise LabError(
            f"error: cannot run ssh ({error}); install it with `apt-get install openssh-client`"
        ) from error
