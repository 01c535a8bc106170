"""The mastodon plugin: Mastodon at ``mastodon.<domain>``.

On its host before the apply: the secret key base, a VAPID key pair (real P-256 keys), the
Active Record encryption keys, and its Garage S3 key files.
"""

from fedi_run.plugins.mastodon.nix import fedi_run_nix_modules
from fedi_run.plugins.mastodon.tasks import (
    SECRETS,
    MastodonConfig,
    fedi_run_config_sections,
    fedi_run_tasks,
    vapid_files,
)

__all__ = [
    "MastodonConfig",
    "SECRETS",
    "fedi_run_config_sections",
    "fedi_run_nix_modules",
    "fedi_run_tasks",
    "vapid_files",
]
