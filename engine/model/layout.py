"""Where fedi-run keeps its own files on a host, and the names that must never collide with them.

Everything fedi-run places on a host belongs to one deployment and lives under that
deployment's own directory, :func:`deployment_root` (``/var/lib/fedi-run/<deployment>/``)::

    /var/lib/fedi-run/<deployment>/secrets/<service>/…   a service's secrets (0700, files 0400)
    /var/lib/fedi-run/<deployment>/originals/<path>      a file as it was before this
                                                          deployment first changed it

so two deployments that share a host never read, replace or remove each other's secrets or
kept originals. Earlier versions kept them shared by every deployment on the host, in
:data:`LEGACY_SECRETS` and :data:`LEGACY_ORIGINALS`: a deployment adopts what it placed there
(``fedi_run.engine.plugin.service_kit`` and ``fedi_run.engine.execute.scripts``).

On the deployer, ``.fedi-run/`` beside the playbook holds each deployment's rendering in
``.fedi-run/<name>/`` and, beside them, fedi-run's own folders; the deployment names of
:data:`RESERVED_DEPLOYMENT_NAMES` would collide with those, or with the host directories
above, and are refused (``validators.check_deployment_name``). A plugin that keeps a folder of
its own there refuses its name too (the acme plugin: ``acme``).
"""

from __future__ import annotations

HOST_ROOT = "/var/lib/fedi-run"
"""The root-owned directory (0755) holding one directory per deployment on a host."""
LEGACY_SECRETS = f"{HOST_ROOT}/secrets"
"""Where versions before the per-deployment layout kept every deployment's secrets."""
LEGACY_ORIGINALS = f"{HOST_ROOT}/originals"
"""Where versions before the per-deployment layout kept every deployment's originals."""


def deployment_root(deployment: str) -> str:
    """``/var/lib/fedi-run/<deployment>``: everything ``deployment`` places on a host."""
    return f"{HOST_ROOT}/{deployment}"


def secrets_root(deployment: str) -> str:
    """``/var/lib/fedi-run/<deployment>/secrets``: the deployment's secrets (0700)."""
    return f"{deployment_root(deployment)}/secrets"


def originals_root(deployment: str) -> str:
    """``/var/lib/fedi-run/<deployment>/originals``: the files as they were before the
    deployment first changed them, at their own path below it."""
    return f"{deployment_root(deployment)}/originals"


RESERVED_DEPLOYMENT_NAMES = {
    "logs": "fedi-run keeps the run logs in .fedi-run/logs/, beside the deployments' "
    "renderings (.fedi-run/<name>/)",
    "locks": "fedi-run keeps its lock files beside the deployments' renderings (.fedi-run/<name>/)",
    "secrets": f"{LEGACY_SECRETS} on the hosts is where earlier versions of fedi-run kept "
    "every deployment's secrets",
    "originals": f"{LEGACY_ORIGINALS} on the hosts is where earlier versions of fedi-run kept "
    "every deployment's original files",
}
"""Deployment names refused, each with the reason (compared without regard to case: on a
case-insensitive file system ``Logs`` is ``logs``)."""
