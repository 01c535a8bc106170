"""ACME's part of the NixOps4 deployment: ``hosts/<host>/acme.nix``.

In ``data.nix`` (hook ``fedi_run_nix_data``): ``acme = { server; email; acceptTerms; }``, or
``null`` without an ``[acme]`` table. On every host that runs an enabled service, when the
playbook has an ``[acme]`` table: NixOS's ``security.acme`` pointed at ``[acme] server`` with
the account's e-mail and whether its terms are accepted, and — for a test CA given in
``ca_file`` — that CA's certificate trusted by the host (``security.pki.certificates``). A CA
certificate is public: it is written inline, after checking the file holds certificates and
nothing else (never a private key).
"""

from __future__ import annotations

import re
from pathlib import Path

from fedi_run.engine.api import (
    NixModule,
    Playbook,
    PlaybookError,
    Problem,
    hookimpl,
    render_template,
)
from fedi_run.plugins.acme.tasks import service_hosts


@hookimpl
def fedi_run_nix_data(playbook: Playbook):
    """``acme = { server; email; acceptTerms; }`` in ``data.nix``, or ``acme = null`` without
    an ``[acme]`` table."""
    acme = playbook.section("acme")
    if acme is None:
        return {"acme": None}
    return {"acme": {"server": acme.server, "email": acme.email, "acceptTerms": acme.accept_terms}}


PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s.*?-----END \1-----", re.DOTALL)


def ca_certificates(playbook: Playbook, ca_file: str) -> list[str]:
    """The certificates in ``ca_file``, each re-encoded as PEM; a :class:`PlaybookError`
    when the file cannot be read, holds no certificate, or holds anything but certificates."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    def problem(message: str) -> PlaybookError:
        return PlaybookError([Problem(playbook.origin("acme", "ca_file"), "acme.ca_file", message)])

    try:
        text = Path(ca_file).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise problem(f"cannot read {ca_file}: {reason}") from None
    blocks = [(m[1], m[0]) for m in PEM_BLOCK.finditer(text)]
    if any(kind != "CERTIFICATE" for kind, _ in blocks):
        raise problem(
            f"{ca_file} holds a {next(k for k, _ in blocks if k != 'CERTIFICATE')} block; "
            "expected CA certificates only (PEM), never a key"
        )
    if not blocks:
        raise problem(f"{ca_file} holds no PEM certificate; expected the CA certificate (PEM)")
    certificates = []
    for _, block in blocks:
        try:
            certificate = x509.load_pem_x509_certificate(block.encode("ascii"))
        except ValueError as error:
            raise problem(f"{ca_file}: not a valid certificate: {error}") from None
        certificates.append(certificate.public_bytes(Encoding.PEM).decode("ascii"))
    return certificates


@hookimpl
def fedi_run_nix_modules(playbook: Playbook, host: str):
    acme = playbook.section("acme")
    if acme is None or host not in playbook.hosts or host not in service_hosts(playbook):
        return []
    text = render_template(
        "fedi_run.plugins.acme",
        "acme.nix.j2",
        server=acme.server,
        email=acme.email,
        accept_terms=acme.accept_terms,
        certificates=ca_certificates(playbook, acme.ca_file) if acme.ca_file else [],
    )
    return [NixModule("acme", text)]
