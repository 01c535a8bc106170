"""The pixelfed plugin: Pixelfed at ``pixelfed.<domain>``.

On its host before the apply: APP_KEY (``base64:`` and 32 random bytes) and its Garage S3 key
files.
"""

from fedi_run.plugins.pixelfed.nix import fedi_run_nix_modules
from fedi_run.plugins.pixelfed.tasks import (
    SECRETS,
    PixelfedConfig,
    fedi_run_config_sections,
    fedi_run_secret_generators,
    fedi_run_tasks,
    laravel_app_key,
)

__all__ = [
    "PixelfedConfig",
    "SECRETS",
    "fedi_run_config_sections",
    "fedi_run_nix_modules",
    "fedi_run_secret_generators",
    "fedi_run_tasks",
    "laravel_app_key",
]
