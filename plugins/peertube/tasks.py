"""The peertube plugin's service section and tasks (see the package's docstring)."""

from __future__ import annotations

from fedi_run.engine.api import ConfigSection, Playbook, SecretSpec, ServiceConfig, hookimpl
from fedi_run.plugins.fediversity import app_tasks

SECRETS = (SecretSpec("secrets", "hex32"),)


class PeertubeConfig(ServiceConfig):
    """``[services.peertube]``: ``enable`` and ``host``."""


@hookimpl
def fedi_run_config_sections():
    return [
        ConfigSection(
            "peertube",
            PeertubeConfig,
            needs=("garage",),
            description="PeerTube, video.",
            units=("peertube.service",),
            configuration_key="peertube",
        )
    ]


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    return app_tasks(playbook, "peertube", SECRETS)
