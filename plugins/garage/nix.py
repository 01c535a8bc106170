"""Garage's part of the NixOps4 deployment: ``hosts/<host>/garage.nix``.

On Garage's host, a module that switches ``fediversity.garage`` on (or off) and names its secret
files by their path on the host: the RPC secret and the admin token (also handed to Garage's
own ``rpc_secret_file`` / ``admin.admin_token_file`` settings), and the key id and secret of the
S3 key of each enabled app that needs Garage (``keys.<app>``, with its bucket, named after it).
"""

from __future__ import annotations

from fedi_run.engine.model.playbook import Playbook
from fedi_run.engine.nixops.nix import service_modules
from fedi_run.engine.plugin.hookspecs import hookimpl

SERVICE = "garage"


def enabled_apps(playbook: Playbook) -> list[str]:
    """The enabled services that have an S3 key and a bucket (named after them) in Garage."""
    return [app for app in playbook.users_of(SERVICE) if playbook.is_enabled(app)]


def secret_files(playbook: Playbook) -> dict[str, str]:
    """Name → path on the host of every secret file an enabled Garage reads."""
    from fedi_run.plugins.fediversity import secrets_dir
    from fedi_run.plugins.garage.keys import key_dir

    directory = secrets_dir(SERVICE)
    files = {"rpc-secret": f"{directory}/rpc-secret", "admin-token": f"{directory}/admin-token"}
    for app in enabled_apps(playbook):
        files[f"keys/{app}/key-id"] = f"{key_dir(app)}/key-id"
        files[f"keys/{app}/secret"] = f"{key_dir(app)}/secret"
    return files


@hookimpl
def fedi_run_nix_modules(playbook: Playbook, host: str):
    return service_modules(
        playbook,
        host,
        SERVICE,
        "fedi_run.plugins.garage",
        secret_files,
        apps=enabled_apps(playbook),
    )
