"""Trusting the ACME server's CA on a target host (task ``acme.trust@<host>``).

Contract of :func:`place_ca` (a :class:`~fedi_run.engine.api.Call` function run
for a host: ``context.connection`` is that host's connection):

* the certificates of the deployer's ``[acme] ca_file`` (PEM; only certificates are accepted,
  so a private key named by mistake never leaves the deployer) are placed at ``to``, mode 0644,
  and the host's trust store is rebuilt with ``update-ca-certificates`` — only when the file
  differs or the store does not hold it (its link ``/etc/ssl/certs/<name>.pem`` is missing);
* all of it in ONE round trip: the content goes on stdin to a small script that compares
  sha256 and mode, writes a temporary file and renames it, and prints ``changed`` or ``ok``;
* returns ``["trusted the CA <ca_file> in <to>"]`` when it changed something, ``[]`` when the
  host already trusted it; ``context.check`` only compares;
* a failure raises :class:`~fedi_run.engine.api.ActionFailed` naming the host and
  the file.

The undo (declared by the task in ``fedi_run.plugins.acme``) removes ``to`` and rebuilds the
store with ``update-ca-certificates --fresh`` while the link is still there.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import PurePosixPath

from fedi_run.engine.api import ActionFailed, Context

CERTS_DIR = "/etc/ssl/certs"
MARKER = "@@fedi-run-acme-trust"


def trust_link(path: str) -> str:
    """The link ``update-ca-certificates`` makes in /etc/ssl/certs for the local CA ``path``."""
    name = PurePosixPath(path).name
    return f"{CERTS_DIR}/{name[:-4] if name.endswith('.crt') else name}.pem"


def certificates(ca_file: str) -> bytes:
    """The certificates of the PEM file ``ca_file``, re-encoded (nothing but certificates);
    :class:`ActionFailed` saying why when it cannot be read or holds none."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        data = open(ca_file, "rb").read()  # noqa: SIM115 - short read
    except OSError as error:
        raise ActionFailed(f"cannot read it: {error.strerror or error}") from None
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError:
        found = []
    if not found:
        raise ActionFailed(
            "it holds no PEM certificate (expected '-----BEGIN CERTIFICATE-----' blocks)"
        )
    return b"".join(cert.public_bytes(Encoding.PEM) for cert in found)


SCRIPT = """\
f={path}; t="$f.fedi-run.$$"; want={digest}; k={check}; M={marker}
cur=$(sha256sum "$f" 2>/dev/null); cur=${{cur%% *}}
if [ "$cur" = "$want" ] && [ "$(stat -c %a "$f")" = 644 ] && [ -e {link} ]; then
  cat >/dev/null; echo "$M ok"; exit 0
fi
if [ "$k" = 1 ]; then cat >/dev/null; echo "$M changed"; exit 0; fi
mkdir -p "${{f%/*}}" && cat >"$t" && chmod 644 "$t" && mv -f "$t" "$f" \\
  || {{ rm -f "$t"; echo "cannot write $f" >&2; exit 1; }}
out=$(update-ca-certificates 2>&1) \\
  || {{ printf 'update-ca-certificates failed: %s\\n' "$out" >&2; exit 1; }}
[ -e {link} ] || {{ echo "update-ca-certificates did not add {link}" >&2; exit 1; }}
echo "$M changed"
"""


def place_ca(context: Context, to: str) -> list[str]:
    """Make the host trust the deployer's ``[acme] ca_file``, placed at ``to``; see the module
    docstring."""
    acme = context.playbook.section("acme")
    if acme is None or not acme.ca_file:
        return []
    connection = context.connection
    assert connection is not None, "acme.trust runs on a host"
    host = f"host {connection.name} ({connection.host.address})"
    failed = f"{host} cannot trust the CA {acme.ca_file} (as {to})"
    try:
        content = certificates(acme.ca_file)
    except ActionFailed as error:
        raise ActionFailed(f"{failed}: {error}") from None
    script = SCRIPT.format(
        path=shlex.quote(to),
        digest=hashlib.sha256(content).hexdigest(),
        check=int(context.check),
        marker=MARKER,
        link=shlex.quote(trust_link(to)),
    )
    result = connection.run(script, input=content, timeout=context.timeout or 60)
    stdout = result.stdout.decode("utf-8", "replace")
    states = [line.split()[1] for line in stdout.splitlines() if line.startswith(MARKER + " ")]
    if result.exit_status != 0 or not states:
        error = " ".join(result.stderr.decode("utf-8", "replace").split())[-500:]
        error = error or f"exited with status {result.exit_status}"
        raise ActionFailed(context.masker.mask(f"{failed}: {error}"))
    return [f"trusted the CA {acme.ca_file} in {to}"] if states[-1] == "changed" else []
