"""Handing each app its Garage S3 key: read on the garage host, placed on the app's host."""

from __future__ import annotations

from fedi_run.engine.api import (
    ActionFailed,
    Context,
    Playbook,
    place_secret_files,
    read_secret_files,
    secrets_dir,
)


def key_dir(owner: Playbook | str, app: str) -> str:
    """Where the garage host keeps ``app``'s S3 key id, secret and bucket name for the
    deployment ``owner`` (a playbook, or its name):
    ``/var/lib/fedi-run/<deployment>/secrets/garage/keys/<app>``."""
    return f"{secrets_dir(owner, 'garage')}/keys/{app}"


def s3_dir(owner: Playbook | str, app: str) -> str:
    """Where ``app``'s S3 key files (``key-id``, ``secret``) are on the app's host."""
    return f"{secrets_dir(owner, app)}/s3"


def copy_key(context: Context, app: str, to: str) -> list[str]:
    """Place ``app``'s key id and secret, as made on the garage host by ``garage.key.<app>``,
    in the directory ``to`` on the app's host (mode 0400). Values never leave memory except
    over the two SSH connections, and are masked."""
    playbook = context.playbook
    garage = context.pool[playbook.service_host("garage")]
    source = key_dir(playbook, app)
    found = read_secret_files(context, garage, [f"{source}/key-id", f"{source}/secret"])
    if len(found) < 2:
        if context.check:
            return [f"would copy {app}'s S3 key from the garage host to {to}"]
        raise ActionFailed(
            f"{app}'s S3 key is missing on the garage host ({source}); run garage.key.{app} first"
        )
    assert context.connection is not None
    return place_secret_files(
        context,
        context.connection,
        {
            f"{to}/key-id": found[f"{source}/key-id"],
            f"{to}/secret": found[f"{source}/secret"],
        },
    )
