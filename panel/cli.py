"""``fedi-run panel``: create operators, serve the web panel, carry out its runs (``worker``).

Only click and the standard library are imported at module level (the main CLI mounts this
group, and ``fedi-run --help`` must stay light); Django is imported when a command runs, and
its absence is a one-paragraph error naming ``pip install 'fedi-run[panel]'`` (exit 2).

Every command takes ``--data-dir`` (default ``$FEDI_RUN_PANEL_DIR``, else
``~/.local/share/fedi-run/panel``), creates it 0700, configures Django for it — and for the
database and broker of ``$FEDI_RUN_PANEL_DATABASE`` and ``$FEDI_RUN_PANEL_BROKER`` (``serve``
and ``worker``: also ``--database``, ``--broker``) — and brings the database up to date.
"""

from __future__ import annotations

import signal
from pathlib import Path

import click

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="FEDI_RUN_PANEL_DIR",
    show_envvar=True,
    help="The panel's files: database, secret key, deployments (default "
    "~/.local/share/fedi-run/panel).",
)


DATABASE_VARIABLE, BROKER_VARIABLE = "FEDI_RUN_PANEL_DATABASE", "FEDI_RUN_PANEL_BROKER"
DATABASE = click.option(
    "--database",
    default=None,
    envvar=DATABASE_VARIABLE,
    show_envvar=True,
    metavar="URL",
    help="The panel's database, shared by its web and worker processes: "
    "postgresql://[USER@][HOST][:PORT]/NAME (a password: in the environment variable or "
    "~/.pgpass, never here); default the SQLite file in the data directory.",
)
BROKER = click.option(
    "--broker",
    default=None,
    envvar=BROKER_VARIABLE,
    show_envvar=True,
    metavar="URL",
    help="The task queue's broker: redis://HOST[:PORT][/DB]; default the data directory's own "
    "(one machine; `serve` then starts a worker of its own).",
)


def _site(
    data_dir: Path | None,
    allowed_hosts: tuple[str, ...] = (),
    database: str | None = None,
    broker: str | None = None,
):
    """Configure Django for the data directory, database and broker (each defaulting to its
    environment variable), and migrate."""
    import os

    from fedi_run.panel import site

    site.require_django()
    configured = site.configure(
        data_dir,
        allowed_hosts,
        database or os.environ.get(DATABASE_VARIABLE) or None,
        broker or os.environ.get(BROKER_VARIABLE) or None,
    )
    site.migrate()
    return configured


@click.group(
    epilog="""
\b
Examples:
  pip install 'fedi-run[panel]'
  fedi-run panel createuser alice
  fedi-run panel serve                      http://127.0.0.1:8000/
  FEDI_RUN_PANEL_DIR=/srv/panel fedi-run panel serve --port 8080
"""
)
def panel() -> None:
    """The web panel: log in, describe deployments, deploy and watch them (needs the
    'panel' extra: pip install 'fedi-run[panel]')."""


PASSWORD_FILE = click.option(
    "--password-file",
    type=click.File("r"),
    default=None,
    help="Read the password from this file's first line instead of prompting.",
)


def _password(name: str, password_file, user) -> str:
    """The new password of ``user``: the first line of ``password_file``, else prompted for
    twice; checked by Django's password validators (PanelError, exit 2, naming why)."""
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    from fedi_run.engine.errors import PanelError

    if password_file is not None:
        password = password_file.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    try:
        validate_password(password, user)
    except ValidationError as error:
        raise PanelError("error: password refused: " + " ".join(error.messages)) from None
    return password


@panel.command(
    epilog="""
\b
Examples:
  fedi-run panel createuser alice
  fedi-run panel createuser carol --staff      defines environments, sees every deployment
  fedi-run panel createuser bob --password-file bob.pass --data-dir /srv/panel
"""
)
@click.argument("name")
@PASSWORD_FILE
@click.option(
    "--staff",
    is_flag=True,
    help="A staff user: defines environments (hosts, who may deploy to them) and sees and "
    "acts on every deployment.",
)
@DATA_DIR
def createuser(name: str, password_file, staff: bool, data_dir: Path | None) -> None:
    """Create the operator NAME (the password is prompted for twice)."""
    from fedi_run.engine.errors import PanelError

    configured = _site(data_dir)
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ValidationError

    users = get_user_model()
    try:
        users.username_validator(name)
    except ValidationError as error:
        raise PanelError(
            f"error: {name!r} is not a valid user name: {' '.join(error.messages)}"
        ) from None
    if users.objects.filter(username=name).exists():
        raise PanelError(f"error: the operator {name!r} already exists in {configured.data_dir}")
    user = users(username=name, is_staff=staff)
    user.set_password(_password(name, password_file, user))
    user.save()
    what = "staff user" if staff else "operator"
    click.echo(f"{what} {name!r} created in {configured.data_dir}")


@panel.command(
    epilog="""
\b
Examples:
  fedi-run panel passwd alice
  fedi-run panel passwd bob --password-file bob.pass --data-dir /srv/panel
"""
)
@click.argument("name")
@PASSWORD_FILE
@DATA_DIR
def passwd(name: str, password_file, data_dir: Path | None) -> None:
    """Set a new password for the user NAME (prompted for twice; checked as createuser's).
    Their sessions end: they log in again with it."""
    from fedi_run.engine.errors import PanelError

    configured = _site(data_dir)
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=name).first()
    if user is None:
        raise PanelError(
            f"error: there is no user {name!r} in {configured.data_dir}; expected one of those "
            "`fedi-run panel users` lists (or create it: fedi-run panel createuser NAME)"
        )
    user.set_password(_password(name, password_file, user))
    user.save()  # the sessions made with the old one no longer hold (Django's session hash)
    click.echo(f"password of {name!r} changed in {configured.data_dir}")


@panel.command(
    epilog="""
\b
Examples:
  fedi-run panel users
  fedi-run panel users --data-dir /srv/panel
"""
)
@DATA_DIR
def users(data_dir: Path | None) -> None:
    """List the panel's users: name, staff or operator, last login, deployments."""
    _site(data_dir)
    from django.contrib.auth import get_user_model
    from django.db.models import Count

    found = get_user_model().objects.annotate(count=Count("deployments")).order_by("username")
    rows = [
        (
            user.username,
            "staff" if user.is_staff else "operator",
            user.last_login.strftime("%Y-%m-%d %H:%M UTC") if user.last_login else "never",
            str(user.count),
        )
        for user in found
    ]
    if not rows:
        click.echo("no users yet: fedi-run panel createuser NAME")
        return
    header = ("NAME", "ROLE", "LAST LOGIN", "DEPLOYMENTS")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@panel.command(
    epilog="""
\b
Examples:
  fedi-run panel serve                      SQLite and a worker of its own
  fedi-run panel serve --port 0             any free port (printed)
  fedi-run panel serve --host 0.0.0.0 --allow-remote   behind a TLS proxy
  FEDI_RUN_PANEL_DATABASE=postgresql:///panel?host=/run/postgresql \\
    fedi-run panel serve --broker redis://127.0.0.1:6379/0   web only; workers elsewhere
"""
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow an address other than loopback (put TLS in front of the panel).",
)
@DATA_DIR
@DATABASE
@BROKER
def serve(
    host: str,
    port: int,
    allow_remote: bool,
    data_dir: Path | None,
    database: str | None,
    broker: str | None,
) -> None:
    """Serve the panel's pages (127.0.0.1:8000 by default) until interrupted.

    Runs are carried out by workers (`fedi-run panel worker`), never by this process. Without
    --broker, serve starts one worker of its own (a child process, with the data directory's
    own broker) and stops it when it stops: SIGTERM or SIGINT (Ctrl-C) stops accepting, then
    stops that worker — its run in progress is stopped as its Stop button does and recorded
    as interrupted. Killed outright (SIGKILL), serve takes its worker with it: the worker holds
    a pipe only serve writes to, and stops as on SIGTERM when it closes. With --broker,
    stopping serve affects no run.

    $FEDI_RUN_PANEL_LIFELINE (for a supervisor): the number of an inherited file descriptor,
    the read end of a pipe the supervisor keeps the write end of; when it closes (the
    supervisor ended, however), serve stops as on SIGTERM."""
    from fedi_run.panel.server import check_address, make_server

    check_address(host, allow_remote)
    allowed = ("*",) if host in ("0.0.0.0", "::") else (host.strip("[]"),)
    _no_password_on_command_line(database, broker)
    configured = _site(data_dir, allowed, database, broker)
    from django.core.wsgi import get_wsgi_application

    from fedi_run.panel import embedded, lifeline
    from fedi_run.panel.runs import check_alive

    parent = lifeline.inherited()
    check_alive()
    server = make_server(host, port, get_wsgi_application())
    own = None
    if configured.broker.embedded:
        own = embedded.Supervised(configured.data_dir, configured.database_url)
        runs_by = f"its own worker (pid {own.worker.pid})"
    else:
        runs_by = f"the workers of {configured.broker.shown}"
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    click.echo(
        f"fedi-run panel: serving http://{shown}:{server.server_port}/ "
        f"(data in {configured.data_dir}, database {configured.database_shown}; runs by "
        f"{runs_by}); Ctrl-C stops it",
        err=True,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        lifeline.watch(parent, "fedi-run panel", SERVE_DEADLINE)  # its EOF: a KeyboardInterrupt
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()  # no new request is accepted
    note = ""
    if own is not None:  # its run gets its grace period: a second signal does not cut it short
        signals = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            click.echo("fedi-run panel: stopping its worker…", err=True)
            own.stop()
            check_alive()
        finally:
            for signum, handler in signals.items():
                signal.signal(signum, handler)
        note = " (its worker stopped; a run in progress was stopped and recorded)"
    click.echo(f"fedi-run panel: stopped{note}", err=True)


@panel.command(
    epilog="""
\b
Examples:
  fedi-run panel worker                     beside `panel serve --broker …` on one machine
  FEDI_RUN_PANEL_DATABASE=postgresql://panel@db.internal/panel \\
  FEDI_RUN_PANEL_BROKER=redis://queue.internal:6379/0 fedi-run panel worker
"""
)
@DATA_DIR
@DATABASE
@BROKER
def worker(data_dir: Path | None, database: str | None, broker: str | None) -> None:
    """Carry out the panel's runs, one at a time, until interrupted (start as many as wanted,
    on any machine sharing the database, the broker and the secret key; each keeps its own
    copies of the files a run needs in its data directory).

    SIGTERM or SIGINT stops it: its run in progress is stopped as its Stop button does (the
    running tasks get their grace period), recorded as interrupted, then the worker exits. A
    worker killed outright leaves its run broken off, for Resume on another worker.

    $FEDI_RUN_PANEL_LIFELINE (set by `serve` for its own worker, or by a supervisor): the
    number of an inherited file descriptor, the read end of a pipe whose write end the parent
    keeps; when it closes (the parent ended, however: kill -9 too) the worker stops as on
    SIGTERM, and exits at the latest 30 s later. Without it, the worker lives on its own."""
    _no_password_on_command_line(database, broker)
    configured = _site(data_dir, (), database, broker)
    from fedi_run.panel import embedded, lifeline, queue
    from fedi_run.panel.runs import check_alive
    from fedi_run.panel.worker import install_shutdown_hook, sweep_local_files

    check_alive()
    sweep_local_files()
    install_shutdown_hook()
    # Before Celery's own handlers are in place, SIGTERM ends it at once: no run is taken yet.
    lifeline.watch(lifeline.inherited(), "fedi-run panel worker", embedded.STOP_WAIT)
    click.echo(
        f"fedi-run panel worker: {queue.worker_name()} taking runs from "
        f"{configured.broker.shown} (data in {configured.data_dir}, database "
        f"{configured.database_shown}); Ctrl-C stops it",
        err=True,
    )
    queue.work()
    click.echo(f"fedi-run panel worker: {queue.worker_name()} stopped", err=True)


def _no_password_on_command_line(database: str | None, broker: str | None) -> None:
    """``--database``/``--broker`` given on the command line with a password: refused."""
    from fedi_run.panel.backends import refuse_password_on_command_line

    context = click.get_current_context()
    for name, option, variable, value in (
        ("database", "--database", DATABASE_VARIABLE, database),
        ("broker", "--broker", BROKER_VARIABLE, broker),
    ):
        if context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            refuse_password_on_command_line(option, value, variable)


SERVE_DEADLINE = 45.0
"""Seconds ``serve`` may take to stop once its lifeline has closed: its worker's
:data:`~fedi_run.panel.embedded.STOP_WAIT`, and the check of its runs after it."""


def _interrupt(signum, frame) -> None:
    """SIGTERM stops ``serve`` as Ctrl-C does."""
    raise KeyboardInterrupt
