"""The garage plugin: Garage, the S3-compatible object store holding the apps' media.

Switched on whenever an app that stores media is (each app's section ``needs`` garage, a third
party's too). On the garage host: the RPC secret and the admin token; for each enabled app, an
S3 access key in Garage's format (``GK`` and 24 hex digits, a 64-hex-digit secret) and its
bucket; for each disabled one this deployment made a key for in an earlier run, the removal
of that key, on the host where it made it (``garage.drop-key.<app>``). The keys are the
deployment's own: ``/var/lib/fedi-run/<deployment>/secrets/garage/keys/<app>/`` (:func:`key_dir`).
"""

from fedi_run.plugins.garage.keys import key_dir, s3_dir
from fedi_run.plugins.garage.nix import fedi_run_nix_modules
from fedi_run.plugins.garage.tasks import (
    GarageConfig,
    fedi_run_config_sections,
    fedi_run_secret_generators,
    fedi_run_tasks,
    garage_key_id,
    s3_files,
    s3_task,
)

__all__ = [
    "GarageConfig",
    "fedi_run_config_sections",
    "fedi_run_nix_modules",
    "fedi_run_secret_generators",
    "fedi_run_tasks",
    "garage_key_id",
    "key_dir",
    "s3_dir",
    "s3_files",
    "s3_task",
]
