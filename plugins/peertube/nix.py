"""PeerTube's part of the NixOps4 deployment: ``hosts/<host>/peertube.nix``.

On PeerTube's host, a module that switches ``fediversity.peertube`` on (or off) and names its
secret files by their path on the host: its secrets file, the S3 key files garage's key task
made for it, and the initial user.
"""

from __future__ import annotations

from fedi_run.engine.model.playbook import Playbook
from fedi_run.engine.nixops.nix import service_modules
from fedi_run.engine.plugin.hookspecs import hookimpl

SERVICE = "peertube"


def secret_files(playbook: Playbook) -> dict[str, str]:
    """Name → path on the host of every secret file an enabled peertube reads (those its
    tasks place there)."""
    # imported here, not above: the package imports this module
    from fedi_run.plugins.fediversity import app_secret_files
    from fedi_run.plugins.peertube import SECRETS

    return app_secret_files(playbook, SERVICE, SECRETS)


@hookimpl
def fedi_run_nix_modules(playbook: Playbook, host: str):
    return service_modules(playbook, host, SERVICE, "fedi_run.plugins.peertube", secret_files)
