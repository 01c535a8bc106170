"""Helpers for the rendering and verify tests (not a conftest: tests/conftest.py is the suite's).

``nix_instantiate`` runs the real ``nix-instantiate`` (Debian's nix-bin) offline; it is a loud
failure, never a skip, when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from helpers import with_enabled

from fedi_run.engine.plugin.manager import Plugins
from fedi_run.engine.project import load_project

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fediversity.toml"
BUILT_IN = ("acme", "garage", "mastodon", "peertube", "pixelfed")
NIX_ENV = {"NIX_CONFIG": "substituters =\nexperimental-features = nix-command flakes"}


def load(playbook: Path, inventories=(), plugin_modules=()):
    """``load_project`` without the final apply (the rendering is what these tests read)."""
    return load_project(playbook, inventories, plugins=Plugins.load(plugin_modules), apply=False)


def nix_instantiate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real ``nix-instantiate`` offline; fails the test loudly when it is missing."""
    executable = shutil.which("nix-instantiate")
    assert executable, (
        "nix-instantiate is not installed: the rendered deployment must be checked with the "
        "real Nix parser and evaluator (apt-get install nix-bin)"
    )
    return subprocess.run(
        [executable, *args],
        env={**os.environ, **NIX_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def nix_eval(expression: str):
    """The value of the Nix ``expression`` (``--eval --strict --json``), as Python data."""
    done = nix_instantiate("--eval", "--strict", "--json", "-E", expression)
    assert done.returncode == 0, f"nix-instantiate --eval failed:\n{expression}\n{done.stderr}"
    return json.loads(done.stdout)


def nix_string(path: Path) -> str:
    """``path`` as a Nix path expression (absolute, quoted safely)."""
    return f"(/. + {json.dumps(str(path.resolve()))})"


def write_files(directory: Path, files: dict[str, str]) -> list[Path]:
    """Write ``files`` (relative path → text) under ``directory``; the paths written."""
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def make_ca(directory: Path, name: str = "fedi-run test CA"):
    """A test CA: ``(certificate file, certificate PEM, key)``; the key stays in memory."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    path = directory / f"{name.replace(' ', '-')}.pem"
    path.write_text(pem)
    return path, pem, (certificate, key)


def make_leaf(directory: Path, ca, domain: str) -> tuple[Path, Path]:
    """A server certificate for ``domain`` signed by ``ca`` (from :func:`make_ca`):
    ``(certificate chain file, key file)``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_certificate, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = directory / f"{domain}.crt"
    chain.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file = directory / f"{domain}.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return chain, key_file


class TlsServer:
    """A tiny HTTPS server on ``address`` (a free port) answering ``200 OK`` to everything, with
    the certificate ``chain`` and ``key``; a context manager (stopped on exit)."""

    def __init__(self, address: str, chain: Path, key: Path):
        import http.server
        import ssl
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain, key)
        self.httpd = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.address, self.port = self.httpd.server_address[:2]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


APPS = ("mastodon", "peertube", "pixelfed")
CANARY_PASSWORD = "canary-password-0f4c2a9e7d1b"


def example_copy(tmp_path: Path, enabled=frozenset(APPS), **replacements: str) -> Path:
    """The Fediversity example in tmp_path with exactly ``enabled`` apps switched on, and its
    initial user's password file holding a canary."""
    (tmp_path / "secrets").mkdir(exist_ok=True)
    (tmp_path / "secrets" / "admin-password").write_text(CANARY_PASSWORD + "\n")
    return with_enabled(EXAMPLE, tmp_path / "fediversity.toml", set(enabled), **replacements)
