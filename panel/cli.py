"""``fedi-run panel``: create operators and serve the web panel.

Only click and the standard library are imported at module level (the main CLI mounts this
group, and ``fedi-run --help`` must stay light); Django is imported when a command runs, and
its absence is a one-paragraph error naming ``pip install 'fedi-run[panel]'`` (exit 2).

Both commands take ``--data-dir`` (default ``$FEDI_RUN_PANEL_DIR``, else
``~/.local/share/fedi-run/panel``), create it 0700, configure Django for it and bring its
database up to date.
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


def _site(data_dir: Path | None, allowed_hosts: tuple[str, ...] = ()):
    from fedi_run.panel import site

    site.require_django()
    configured = site.configure(data_dir, allowed_hosts)
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


@panel.command(
    epilog="""
\b
Examples:
  fedi-run panel createuser alice
  fedi-run panel createuser bob --password-file bob.pass --data-dir /srv/panel
"""
)
@click.argument("name")
@click.option(
    "--password-file",
    type=click.File("r"),
    default=None,
    help="Read the password from this file's first line instead of prompting.",
)
@DATA_DIR
def createuser(name: str, password_file, data_dir: Path | None) -> None:
    """Create the operator NAME (the password is prompted for twice)."""
    from fedi_run.engine.errors import PanelError

    configured = _site(data_dir)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.password_validation import validate_password
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
    if password_file is not None:
        password = password_file.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    user = users(username=name)
    try:
        validate_password(password, user)
    except ValidationError as error:
        raise PanelError("error: password refused: " + " ".join(error.messages)) from None
    user.set_password(password)
    user.save()
    click.echo(f"operator {name!r} created in {configured.data_dir}")


@panel.command(
    epilog="""
\b
Examples:
  fedi-run panel serve
  fedi-run panel serve --port 0             any free port (printed)
  fedi-run panel serve --host 0.0.0.0 --allow-remote   behind a TLS proxy
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
def serve(host: str, port: int, allow_remote: bool, data_dir: Path | None) -> None:
    """Serve the panel (127.0.0.1:8000 by default) until interrupted.

    SIGTERM or SIGINT (Ctrl-C) stops it: it stops accepting, stops each run in progress as
    its Stop button does, waits for them (their grace period), and exits once they are
    recorded — interrupted, in the panel's history and the engine's state alike."""
    from fedi_run.panel.server import check_address, make_server

    check_address(host, allow_remote)
    allowed = ("*",) if host in ("0.0.0.0", "::") else (host.strip("[]"),)
    configured = _site(data_dir, allowed)
    from django.core.wsgi import get_wsgi_application

    from fedi_run.panel.live import BOARD
    from fedi_run.panel.runs import recover_orphans, stop_all

    recover_orphans()
    server = make_server(host, port, get_wsgi_application())
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    click.echo(
        f"fedi-run panel: serving http://{shown}:{server.server_port}/ "
        f"(data in {configured.data_dir}); Ctrl-C stops it",
        err=True,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()  # no new request is accepted
    # the runs get their grace period: a second signal does not cut it short
    signals = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if BOARD.live():
            click.echo("fedi-run panel: stopping the runs in progress…", err=True)
        stopped = stop_all("the panel stopping")
    finally:
        for signum, handler in signals.items():
            signal.signal(signum, handler)
    note = f" ({len(stopped)} run(s) in progress stopped and recorded)" if stopped else ""
    click.echo(f"fedi-run panel: stopped{note}", err=True)


def _interrupt(signum, frame) -> None:
    """SIGTERM stops ``serve`` as Ctrl-C does."""
    raise KeyboardInterrupt
