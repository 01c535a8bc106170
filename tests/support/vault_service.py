"""A test plugin with secrets: a 'vault' service that places two secrets and then prints them
(which fedi-run must mask everywhere)."""

from fedi_run.engine.model.playbook import ServiceConfig
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.planning.operations import Command, Directory, Secret
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.plugin.hookspecs import hookimpl

PLUGIN_NAME = "vault"
DIRECTORY = "/var/lib/fedi-run/secrets/vault"


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
    show = f"cat {DIRECTORY}/token; echo; cat {DIRECTORY}/key-id; echo"
    tasks = [
        Task(
            "vault.secrets",
            host,
            actions=(
                Directory("/var/lib/fedi-run", mode=0o755),
                Directory("/var/lib/fedi-run/secrets", mode=0o700),
                Directory(DIRECTORY, mode=0o700),
                Secret(f"{DIRECTORY}/token", "hex32"),
                Secret(f"{DIRECTORY}/key-id", "garage-key-id"),
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
                actions=(Command(f"echo token=$(cat {DIRECTORY}/token) >&2; exit 3"),),
            )
        )
    return tasks
