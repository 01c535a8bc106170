"""The acme plugin: certificates from an ACME server (Let's Encrypt, or Pebble in tests).

Owns the top-level ``[acme]`` table. On the deployer, the ACME account is registered first, so
a wrong server or e-mail fails before anything else (``account.register``). Then, on each host
that runs a service: trust the CA in ``ca_file`` when one is given (test CAs,
``trust.place_ca``), then check that the host reaches the ACME directory (``reach.check``).

The CA file is the deployment's own on each host (:func:`ca_path`), and a deployment cannot be
called ``acme``: the folder of the account keys beside the deployments' renderings.

Teardown, in reverse: the CA file is removed and the host's trust store rebuilt; the reach check
has nothing to undo. The ACME account is kept (its key stays in the deployer's state): it is the
operator's identity at the CA, deactivating it cannot be undone, and the next deployment reuses
it. ``account.unregister`` deactivates it for an operator who asks.
"""

from fedi_run.plugins.acme.nix import fedi_run_nix_data, fedi_run_nix_modules
from fedi_run.plugins.acme.tasks import (
    CA_DIRECTORY,
    LETS_ENCRYPT,
    AcmeSection,
    ca_link,
    ca_path,
    fedi_run_config_sections,
    fedi_run_tasks,
    ready,
    service_hosts,
)

__all__ = [
    "CA_DIRECTORY",
    "LETS_ENCRYPT",
    "AcmeSection",
    "ca_link",
    "ca_path",
    "fedi_run_config_sections",
    "fedi_run_nix_data",
    "fedi_run_nix_modules",
    "fedi_run_tasks",
    "ready",
    "service_hosts",
]
