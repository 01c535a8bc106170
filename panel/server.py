"""Serving the panel: a threaded WSGI server (the standard library's wsgiref, one thread per
request) in front of Django's WSGI application.

Loopback only unless asked (:func:`check_address`): the panel is for the operator on the
deployer, and it speaks plain HTTP — reach it from elsewhere through an SSH tunnel, or put a TLS
proxy in front and pass ``--allow-remote``.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from fedi_run.engine.errors import PanelError


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server, one daemon thread per request."""

    daemon_threads = True
    allow_reuse_address = True


class IPv6ThreadingWSGIServer(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class QuietHandler(WSGIRequestHandler):
    """Logs one short line per request to stderr, none for the progress polls."""

    def log_message(self, format: str, *args) -> None:
        if "/progress" in (self.path or ""):
            return
        sys.stderr.write(f"panel: {self.address_string()} {format % args}\n")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name) means this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_address(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback address unless ``allow_remote``."""
    if not is_loopback(host) and not allow_remote:
        raise PanelError(
            f"error: --host {host} is not a loopback address: the panel speaks plain HTTP and "
            "would be reachable from other machines. Reach it through an SSH tunnel "
            "(`ssh -L 8000:127.0.0.1:8000 deployer`), or put a TLS proxy in front of it and "
            "pass --allow-remote."
        )


def make_server(host: str, port: int, application) -> ThreadingWSGIServer:
    """A bound server (``port`` 0: a free one; see ``server.server_port``)."""
    server_class = IPv6ThreadingWSGIServer if ":" in host.strip("[]") else ThreadingWSGIServer
    try:
        server = server_class((host.strip("[]"), port), QuietHandler)
    except OSError as error:
        raise PanelError(
            f"error: cannot listen on {host}:{port}: {error.strerror or error}; pick another --port"
        ) from None
    server.set_app(application)
    return server
