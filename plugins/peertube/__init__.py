"""The peertube plugin: PeerTube at ``peertube.<domain>``.

On its host before the apply: its secrets file and its Garage S3 key files.
"""

from __future__ import annotations

from fedi_run.engine.model.playbook import Playbook, ServiceConfig
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.plugin.hookspecs import hookimpl
from fedi_run.plugins.fediversity import SecretSpec, app_tasks

SECRETS = (SecretSpec("secrets", "hex32"),)


class PeertubeConfig(ServiceConfig):
    """``[services.peertube]``: ``enable`` and ``host``."""


@hookimpl
def fedi_run_config_sections():
    return [
        ConfigSection("peertube", PeertubeConfig, needs=("garage",), description="PeerTube, video.")
    ]


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    return app_tasks(playbook, "peertube", SECRETS)


from fedi_run.plugins.peertube.nix import fedi_run_nix_modules  # noqa: E402,F401 - the plugin's part of the NixOS configuration
