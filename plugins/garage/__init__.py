"""The garage plugin: Garage, the S3-compatible object store holding the apps' media.

Switched on whenever an app that stores media is (each app's section ``needs`` garage, a third
party's too). On the garage host: the RPC secret and the admin token; for each enabled app, an
S3 access key in Garage's format (``GK`` and 24 hex digits, a 64-hex-digit secret) and its
bucket; for each disabled one, the removal of its key.
"""

from __future__ import annotations

from fedi_run.engine.model.playbook import Playbook, ServiceConfig
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.planning.operations import Directory, File, Secret
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.plugin.hookspecs import hookimpl
from fedi_run.plugins.fediversity import absent_task, acme_ready, secrets_dir, secrets_root_actions
from fedi_run.plugins.garage.keys import key_dir


class GarageConfig(ServiceConfig):
    """``[services.garage]``: only ``enable`` and ``host``; it is enabled by any app."""


@hookimpl
def fedi_run_config_sections():
    return [ConfigSection("garage", GarageConfig, description="Garage, the S3 object store.")]


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    if not playbook.is_enabled("garage"):
        return absent_task(playbook, "garage", "no service needs it")
    host = playbook.service_host("garage")
    tasks = [
        Task(
            id="garage.secrets",
            host=host,
            requires=acme_ready(playbook, host),
            tags=("garage", "secrets"),
            description="Garage's RPC secret and admin token",
            actions=(
                *secrets_root_actions("garage"),
                Secret(f"{secrets_dir('garage')}/rpc-secret", "hex32"),
                Secret(f"{secrets_dir('garage')}/admin-token", "base64-32"),
            ),
        )
    ]
    for app in playbook.users_of("garage"):
        if playbook.is_enabled(app):
            tasks.append(
                Task(
                    id=f"garage.key.{app}",
                    host=host,
                    requires=("garage.secrets",),
                    tags=("garage", "s3", app),
                    description=f"the S3 access key and bucket of {app}",
                    actions=(
                        Directory(f"{secrets_dir('garage')}/keys", mode=0o700),
                        Directory(key_dir(app), mode=0o700),
                        Secret(f"{key_dir(app)}/key-id", "garage-key-id"),
                        Secret(f"{key_dir(app)}/secret", "hex32"),
                        File(f"{key_dir(app)}/bucket", f"{app}\n", mode=0o400),
                    ),
                    undo=(
                        Directory(key_dir(app), present=False),
                        Directory(f"{secrets_dir('garage')}/keys", present=False, recursive=False),
                    ),
                )
            )
        else:
            tasks.append(
                Task(
                    id=f"garage.drop-key.{app}",
                    host=host,
                    requires=("garage.secrets",),
                    tags=("garage", "s3", app, "cleanup"),
                    description=f"remove the S3 key of {app}, which is disabled",
                    actions=(Directory(key_dir(app), present=False),),
                    undo=(),
                )
            )
    return tasks


from fedi_run.plugins.garage.nix import fedi_run_nix_modules  # noqa: E402,F401 - the plugin's part of the NixOS configuration
