"""Checking that a target host reaches the ACME directory (task ``acme.reach@<host>``).

Contract of :func:`check` (a :class:`~fedi_run.engine.api.Call` function run
for a host):

* one round trip: the host fetches ``[acme] server`` over HTTPS with its OWN trust store
  (``curl``, or ``python3`` when curl is missing), within :data:`TIMEOUT` seconds, and the
  answer must be an ACME directory (it names ``newAccount``);
* read-only: returns ``[]`` (never a change). In ``context.check`` mode with a ``ca_file``, the
  host checks with its trust store *plus* that CA (sent on stdin, in a temporary bundle that is
  removed again), since ``acme.trust`` changed nothing in a check: so ``--check`` predicts what
  the run will find instead of failing on a CA that is not trusted yet;
* a failure raises :class:`~fedi_run.engine.api.ActionFailed`:
  ``host mastodon (127.0.0.3) cannot reach the ACME directory https://…: <the error>``.
"""

from __future__ import annotations

import re
import shlex

from fedi_run.engine.api import ActionFailed, Context

TIMEOUT = 10
"""Seconds the host waits for the directory."""

PYTHON_FETCH = (
    "import ssl, sys, urllib.request\n"
    "try:\n"
    "    context = ssl.create_default_context(cafile=sys.argv[3] or None)\n"
    "    answer = urllib.request.urlopen(\n"
    "        sys.argv[1], timeout=float(sys.argv[2]), context=context)\n"
    "    sys.stdout.write(answer.read().decode('utf-8', 'replace'))\n"
    "except Exception as error:\n"
    "    sys.exit(f'{getattr(error, \"reason\", None) or error}')\n"
)

SCRIPT = """\
u={url}; b=""; ca=""
if [ {extra_ca} = 1 ]; then
  b=$(mktemp) || exit 1; trap 'rm -f "$b"' EXIT
  {{ cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null; cat; }} >"$b"; ca="--cacert $b"
fi
if command -v curl >/dev/null 2>&1; then
  body=$(curl -fsS --max-time {timeout} $ca "$u" 2>&1) || {{ printf '%s\\n' "$body" >&2; exit 1; }}
elif command -v python3 >/dev/null 2>&1; then
  body=$(python3 -c {python} "$u" {timeout} "$b" 2>&1) || {{ printf '%s\\n' "$body" >&2; exit 1; }}
else
  echo "neither curl nor python3 is installed to fetch it" >&2; exit 1
fi
case $body in *newAccount*) exit 0;; esac
echo "the answer is not an ACME directory (no newAccount in it)" >&2; exit 2
"""


def _first_error(stderr: str) -> str:
    """curl's error line, prefix moved: ``SSL certificate problem: … (curl error 60)``."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        match = re.match(r"curl: \((\d+)\) (.*)", line)
        if match:
            return f"{match[2]} (curl error {match[1]})"
    return " ".join(lines)[-500:] or "no answer"


def check(context: Context) -> list[str]:
    """Fail unless the task's host reaches ``[acme] server``; see the module docstring."""
    acme = context.playbook.section("acme")
    if acme is None:
        return []
    connection = context.connection
    assert connection is not None, "acme.reach runs on a host"
    where = f"host {connection.name} ({connection.host.address})"
    extra_ca = None
    if context.check and acme.ca_file:
        from fedi_run.plugins.acme.trust import certificates

        try:
            extra_ca = certificates(acme.ca_file)
        except ActionFailed as error:
            raise ActionFailed(
                f"{where} cannot check with the CA {acme.ca_file}: {error}"
            ) from None
    script = SCRIPT.format(
        url=shlex.quote(acme.server),
        timeout=TIMEOUT,
        extra_ca=int(extra_ca is not None),
        python=shlex.quote(PYTHON_FETCH),
    )
    result = connection.run(script, input=extra_ca, timeout=context.timeout or TIMEOUT + 20)
    if result.exit_status != 0:
        error = _first_error(result.stderr.decode("utf-8", "replace"))
        raise ActionFailed(
            context.masker.mask(f"{where} cannot reach the ACME directory {acme.server}: {error}")
        )
    return []
