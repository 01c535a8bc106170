"""The lab's ACME server: Debian's ``pebble`` on 127.0.0.1, with a CA made at ``lab up``.

:func:`launch` writes into ``acme_dir``:

* ``ca.pem`` — the lab CA (the inventory's ``acme.ca_file``) and ``ca.key``;
* ``listener.pem`` / ``listener.key`` — the HTTPS certificate of Pebble's listener, for
  ``localhost`` and ``127.0.0.1``, signed by the lab CA;
* ``pebble-config.json`` and ``pebble.log``;

then runs ``pebble -config … -dnsserver 127.0.0.1:53`` with ``PEBBLE_VA_ALWAYS_VALID=1``
(every challenge passes, nothing is dialled back), ``PEBBLE_VA_NOSLEEP=1`` and
``PEBBLE_WFE_NONCEREJECT=0`` (no random bad-nonce errors); :func:`wait_ready` waits until
its directory answers over HTTPS verified with the lab CA. Certificates Pebble *issues* chain
to its own root, served by its management API at ``<management>/roots/0``.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.request
from pathlib import Path

from fedi_run.engine.errors import LabError
from fedi_run.engine.lab import addresses, keys, procs, tls
from fedi_run.engine.lab.state import AcmeInfo

ADDRESS = "127.0.0.1"
PREFERRED_PORT = 14000
PREFERRED_MANAGEMENT_PORT = 15000
DNS_SERVER = "127.0.0.1:53"
ENV = {"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}


def write_config(acme_dir: Path, port: int, management_port: int) -> Path:
    """Generate the lab CA and listener certificate and write Pebble's config file."""
    ca = tls.make_ca()
    listener = tls.make_server_cert(ca)
    (acme_dir / "ca.pem").write_bytes(ca.cert_pem)
    keys.write_private(acme_dir / "ca.key", ca.key_pem)
    (acme_dir / "listener.pem").write_bytes(listener.cert_pem + ca.cert_pem)
    keys.write_private(acme_dir / "listener.key", listener.key_pem)
    config = {
        "pebble": {
            "listenAddress": f"{ADDRESS}:{port}",
            "managementListenAddress": f"{ADDRESS}:{management_port}",
            "certificate": str(acme_dir / "listener.pem"),
            "privateKey": str(acme_dir / "listener.key"),
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    path = acme_dir / "pebble-config.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def directory_answers(url: str, ca_file: Path, timeout: float = 2.0) -> bool:
    """True when ``url`` answers 200 over HTTPS verified with ``ca_file``."""
    context = ssl.create_default_context(cafile=str(ca_file))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def launch(acme_dir: Path, pebble: str) -> AcmeInfo:
    """Write the CA, certificate and config into ``acme_dir`` and start Pebble; return its
    :class:`AcmeInfo` at once (record it before :func:`wait_ready`, so it can be stopped)."""
    acme_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    port = addresses.free_port(ADDRESS, PREFERRED_PORT)
    management_port = addresses.free_port(ADDRESS, PREFERRED_MANAGEMENT_PORT, avoid={port})
    config = write_config(acme_dir, port, management_port)
    env = {**os.environ, **ENV}
    argv = [pebble, "-config", str(config), "-dnsserver", DNS_SERVER]
    proc = procs.spawn(argv, acme_dir / "pebble.log", env)
    return AcmeInfo(
        server=f"https://{ADDRESS}:{port}/dir",
        ca_file=acme_dir / "ca.pem",
        management=f"https://{ADDRESS}:{management_port}",
        process=proc,
    )


def wait_ready(info: AcmeInfo, timeout: float = 15.0) -> None:
    """Return once Pebble's directory answers over HTTPS verified with the lab CA; raise
    :class:`LabError` with the end of ``pebble.log`` if it exits or does not answer within
    ``timeout`` seconds (stopping it is the caller's business)."""
    port = int(info.server.rsplit(":", 1)[1].split("/")[0])
    running = lambda: procs.is_running(info.process)  # noqa: E731
    pending = addresses.wait_listening([(ADDRESS, port)], timeout, running)
    deadline = time.monotonic() + timeout
    while not pending and not directory_answers(info.server, info.ca_file):
        if time.monotonic() > deadline or not running():
            pending = {(ADDRESS, port)}
            break
        time.sleep(0.01)
    if pending:
        log = info.ca_file.parent / "pebble.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise LabError(f"error: pebble did not start on {ADDRESS}:{port}; its log:\n{tail}")
