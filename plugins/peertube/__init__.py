"""The peertube plugin: PeerTube at ``peertube.<domain>``.

On its host before the apply: its secrets file and its Garage S3 key files.
"""

from fedi_run.plugins.peertube.nix import fedi_run_nix_modules
from fedi_run.plugins.peertube.tasks import (
    SECRETS,
    PeertubeConfig,
    fedi_run_config_sections,
    fedi_run_tasks,
)

__all__ = [
    "PeertubeConfig",
    "SECRETS",
    "fedi_run_config_sections",
    "fedi_run_nix_modules",
    "fedi_run_tasks",
]
