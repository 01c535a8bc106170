"""A test plugin with secrets: a 'vault' service that places two secrets and then prints them
(which fedi-run must mask everywhere)."""

from fedi_run.engine.api import (
    Command,
    ConfigSection,
    Secret,
    ServiceConfig,
    Task,
    hookimpl,
    secrets_dir,
    secrets_root_actions,
)

PLUGIN_NAME = "vault"


class VaultConfig(ServiceConfig):
    fail: bool = False


@hookimpl
def fedi_run_config_sections():
    return [ConfigSection("vault", VaultConfig)]


@hookimpl
def fedi_run_tasks(playbook):
    if not playbook.is_enabled("vault"):
        return []
    host = playbook.service_host("vault")
    directory = secrets_dir(playbook, "vault")  # /var/lib/fedi-run/<deployment>/secrets/vault
    show = f"cat {directory}/token; echo; cat {directory}/key-id; echo"
    tasks = [
        Task(
            "vault.secrets",
            host,
            actions=(
                *secrets_root_actions(playbook, "vault"),
                Secret(f"{directory}/token", "hex32"),
                Secret(f"{directory}/key-id", "garage-key-id"),
            ),
        ),
        Task(
            "vault.show",
            host,
            requires=("vault.secrets",),
            actions=(Command(show),),
            undo=(Command(show),),
        ),
    ]
    if playbook.services["vault"].fail:
        tasks.append(
            Task(
                "vault.leak",
                host,
                requires=("vault.secrets",),
                actions=(Command(f"echo token=$(cat {directory}/token) >&2; exit 3"),),
            )
        )
    return tasks
