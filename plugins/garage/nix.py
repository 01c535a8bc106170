"""Garage's part of the NixOps4 deployment: ``hosts/<host>/garage.nix``.

On Garage's host, a module built on nixpkgs' own ``services.garage``:

* ``package = pkgs.garage_2`` (the option has no default) and ``settings``: one node
  (``replication_factor = 1``), RPC, the S3 API (region ``garage``, vhost-style buckets under
  ``.garage.<domain>``), the web endpoint the apps' public media are read through, and the admin
  API — every port on 127.0.0.1, the S3 API and the media served by nginx at
  ``https://garage.<domain>`` (ACME, forced TLS);
* the RPC secret and the admin token handed to ``garage.service`` with systemd's
  ``LoadCredential=`` (Garage runs as a ``DynamicUser``): the settings name
  ``/run/credentials/garage.service/<name>``, the files stay root-only in the deployment's
  ``/var/lib/fedi-run/<deployment>/secrets/garage``;
* ``fedi-run-garage-setup``, a oneshot after Garage that assigns and applies the one-node layout
  once, imports each enabled app's S3 key (the id and secret fedi-run generated, read from its own
  credentials inside the script and sent to Garage's admin API on stdin — ``garage key import``
  only takes the secret as a command-line argument, visible in ``/proc``), and creates the app's
  bucket (named after it), grants the key on it and opens it to the web endpoint.

Switched off (a teardown, or no app needs Garage) the module is ``services.garage.enable =
false`` and nothing else.

The apps' modules point their S3 settings here: :func:`s3_settings`.
"""

from __future__ import annotations

from fedi_run.engine.api import Playbook, hookimpl, secrets_dir, service_modules
from fedi_run.plugins.garage.keys import key_dir

SERVICE = "garage"
S3_REGION = "garage"
RPC_ADDRESS = "127.0.0.1:3901"
S3_API_ADDRESS = "127.0.0.1:3900"
WEB_ADDRESS = "127.0.0.1:3902"
ADMIN_ADDRESS = "127.0.0.1:3903"
LAYOUT_ZONE = "fedi-run"
LAYOUT_CAPACITY = 100 * 10**9
"""The node's role in the layout. Zone and capacity only weigh nodes against each other; with one
node they limit nothing."""
CREDENTIALS = "/run/credentials/garage.service"


def enabled_apps(playbook: Playbook) -> list[str]:
    """The enabled services that have an S3 key and a bucket (named after them) in Garage."""
    return [app for app in playbook.users_of(SERVICE) if playbook.is_enabled(app)]


def secret_files(playbook: Playbook) -> dict[str, str]:
    """Name → path on the host of every secret file an enabled Garage reads."""
    directory = secrets_dir(playbook, SERVICE)
    files = {"rpc-secret": f"{directory}/rpc-secret", "admin-token": f"{directory}/admin-token"}
    for app in enabled_apps(playbook):
        files[f"keys/{app}/key-id"] = f"{key_dir(playbook, app)}/key-id"
        files[f"keys/{app}/secret"] = f"{key_dir(playbook, app)}/secret"
    return files


def s3_endpoint(playbook: Playbook) -> str:
    """The S3 API as the apps reach it: ``https://garage.<domain>`` (path-style buckets)."""
    return f"https://{playbook.service_domain(SERVICE)}"


def s3_settings(playbook: Playbook, app: str) -> dict[str, str]:
    """What ``app``'s module needs to store its media in Garage: ``endpoint`` (the S3 API),
    ``host`` (its host name), ``region``, ``bucket`` and ``public_url``, where the bucket's
    objects are read without signing (``<endpoint>/web/<bucket>``, through Garage's web
    endpoint)."""
    endpoint = s3_endpoint(playbook)
    return {
        "endpoint": endpoint,
        "host": playbook.service_domain(SERVICE),
        "region": S3_REGION,
        "bucket": app,
        "public_url": f"{endpoint}/web/{app}",
    }


def _context(playbook: Playbook) -> dict:
    apps = enabled_apps(playbook)
    secrets = secret_files(playbook)
    garage_credentials = [
        f"rpc-secret:{secrets['rpc-secret']}",
        f"admin-token:{secrets['admin-token']}",
    ]
    setup_credentials = [f"admin-token:{secrets['admin-token']}"]
    for app in apps:
        setup_credentials.append(f"{app}-key-id:{secrets[f'keys/{app}/key-id']}")
        setup_credentials.append(f"{app}-secret:{secrets[f'keys/{app}/secret']}")
    base = playbook.service_domain(SERVICE)
    return {
        "apps": apps,
        "region": S3_REGION,
        "rpc_address": RPC_ADDRESS,
        "s3_address": S3_API_ADDRESS,
        "web_address": WEB_ADDRESS,
        "admin_address": ADMIN_ADDRESS,
        "s3_root_domain": f".{base}",
        "web_root_domain": f".web.{base}",
        "credentials": CREDENTIALS,
        "garage_credentials": garage_credentials,
        "setup_credentials": setup_credentials,
        "setup_environment": {
            "APPS": " ".join(apps),
            "GARAGE_ADMIN_API": f"http://{ADMIN_ADDRESS}",
            "LAYOUT_ZONE": LAYOUT_ZONE,
            "LAYOUT_CAPACITY": str(LAYOUT_CAPACITY),
        },
    }


@hookimpl
def fedi_run_nix_modules(playbook: Playbook, host: str):
    return service_modules(
        playbook, host, SERVICE, "fedi_run.plugins.garage", secret_files, **_context(playbook)
    )
