"""A small third-party-style plugin for the tests: a 'matrix' service with its own option."""

from pydantic import Field

from fedi_run.engine.api import Command, ConfigSection, Playbook, ServiceConfig, Task, hookimpl

PLUGIN_NAME = "matrix"
__version__ = "9.9.9"


class MatrixConfig(ServiceConfig):
    federation: bool = Field(True, description="Federate with other servers.")


@hookimpl
def fedi_run_config_sections():
    return [ConfigSection("matrix", MatrixConfig, needs=("garage",))]


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    if not playbook.is_enabled("matrix"):
        return []
    host = playbook.service_host("matrix")
    federation = "on" if playbook.services["matrix"].federation else "off"
    return [
        Task(
            "matrix.config",
            host,
            requires=("garage.secrets",),
            tags=("matrix",),
            actions=(Command(f"echo federation={federation}"),),
        )
    ]
