"""``fedi-run verify``: is each enabled service up on its host, and served over HTTPS?

For every enabled service, on its host: ``systemctl is-active <unit>`` for each systemd unit its
plugin declares (``ConfigSection.units``; a service that declares none is reported not
checked); and from the deployer: ``https://<service>.<domain>/`` — reached at the service
host's address with the service's domain as SNI and Host (so it works before DNS points there,
and checks the host the playbook names) — must answer with a certificate that verifies against
the configured CA: the CA file a plugin table declares (``ConfigSection.ca_file_field``, the
acme plugin's ``[acme] ca_file``) when given, else the system's CAs. Each check
reports what it found: the unit's state, and the HTTPS outcome (ok, connection refused, TLS
error with its reason and the certificate's issuer, timeout, …).

Nothing here changes anything on a host.
"""

from __future__ import annotations

import shlex
import socket
import ssl
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedi_run.engine.execute.connection import ConnectionPool
    from fedi_run.engine.model.playbook import Playbook
    from fedi_run.engine.project import Project

HTTPS_PORT = 443
TIMEOUT = 10.0
"""Seconds for each network step (connect, handshake, answer)."""


@dataclass(frozen=True)
class UnitResult:
    """``systemctl is-active`` of the service's unit on its host."""

    name: str | None
    active: bool
    state: str
    """``active``, ``inactive``, ``failed``…, or what went wrong (``not checked``,
    ``unreachable``)."""
    detail: str = ""

    def describe(self) -> str:
        if self.name is None:
            return f"unit: {self.state}"
        if self.active:
            return f"{self.name}: active"
        if self.state == "unreachable":
            return f"{self.name}: host unreachable ({self.detail})"
        return f"{self.name}: not active (systemctl: {self.detail or self.state})"


@dataclass(frozen=True)
class HttpsResult:
    """What ``https://<domain>/`` answered at the service host's address."""

    url: str
    address: str
    port: int
    status: str
    """``ok``, ``refused``, ``tls-error``, ``timeout``, ``no-answer`` or ``error``."""
    detail: str = ""
    issuer: str | None = None
    verified: bool = False
    http_status: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        where = f"{self.url} (at {self.address}:{self.port})"
        issuer = f"; certificate issued by {self.issuer}" if self.issuer else ""
        if self.status == "ok":
            return f"{where}: ok, HTTP {self.http_status}{issuer}"
        if self.status == "refused":
            return f"{where}: connection refused"
        if self.status == "timeout":
            return f"{where}: timeout ({self.detail})"
        if self.status == "tls-error":
            return f"{where}: TLS error: {self.detail}{issuer}"
        if self.status == "no-answer":
            return f"{where}: no HTTP answer ({self.detail}){issuer}"
        return f"{where}: {self.detail}"


@dataclass(frozen=True)
class ServiceResult:
    """The checks of one enabled service: ``unit`` is its first declared unit's (or "not
    checked" when it declares none), ``other_units`` those of the units it declares after it."""

    service: str
    host: str
    address: str | None
    unit: UnitResult
    https: HttpsResult | None
    problems: tuple[str, ...] = field(default=())
    other_units: tuple[UnitResult, ...] = field(default=())

    @property
    def ok(self) -> bool:
        unit_ok = all(u.active or u.name is None for u in (self.unit, *self.other_units))
        return unit_ok and self.https is not None and self.https.ok and not self.problems

    def describe(self) -> str:
        parts = [unit.describe() for unit in (self.unit, *self.other_units)]
        parts.append(self.https.describe() if self.https else "https: not checked")
        parts += self.problems
        verdict = "ok" if self.ok else "FAIL"
        return f"{self.service:<10} {verdict:<4}  host {self.host}: " + "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        """The result as JSON; ``other_units`` only for a service that declares several."""
        found = {
            "service": self.service,
            "host": self.host,
            "address": self.address,
            "ok": self.ok,
            "unit": asdict(self.unit),
            "https": asdict(self.https) if self.https else None,
            "problems": list(self.problems),
        }
        if self.other_units:
            found["other_units"] = [asdict(unit) for unit in self.other_units]
        return found


# --- the unit ---------------------------------------------------------------------------------


def check_unit(
    pool: ConnectionPool, host: str, unit: str | None, timeout: float = TIMEOUT
) -> UnitResult:
    """``systemctl is-active unit`` on ``host``."""
    from fedi_run.engine.errors import CommandTimedOut, HostUnreachable

    if unit is None:
        return UnitResult(None, False, "not checked (no systemd unit known for this service)")
    try:
        result = pool[host].run(f"systemctl is-active {shlex.quote(unit)}", timeout=timeout)
    except HostUnreachable as error:
        return UnitResult(unit, False, "unreachable", str(error))
    except CommandTimedOut as error:
        return UnitResult(unit, False, "timeout", str(error))
    out = result.stdout.decode("utf-8", "replace").strip()
    err = result.stderr.decode("utf-8", "replace").strip()
    if result.exit_status == 0 and out == "active":
        return UnitResult(unit, True, "active")
    if result.exit_status == 127:
        return UnitResult(unit, False, "no systemctl", "command not found on the host")
    first = (out or err or f"exit status {result.exit_status}").splitlines()[0]
    state = out.splitlines()[0] if out else "unknown"
    return UnitResult(unit, False, state, first)


# --- HTTPS ------------------------------------------------------------------------------------


def _name(name: Any) -> str:
    """A certificate name (``getpeercert`` form) as ``CN=…, O=…``."""
    parts = []
    for rdn in name or ():
        for key, value in rdn:
            short = {
                "commonName": "CN",
                "organizationName": "O",
                "countryName": "C",
                "organizationalUnitName": "OU",
            }.get(key, key)
            parts.append(f"{short}={value}")
    return ", ".join(parts)


def _unverified_issuer(address: str, port: int, domain: str, timeout: float) -> str | None:
    """The issuer of the certificate the server presents, without verifying it."""
    from cryptography import x509

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=domain) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    if not der:
        return None
    try:
        return x509.load_der_x509_certificate(der).issuer.rfc4514_string()
    except ValueError:
        return None


def _ask(tls: ssl.SSLSocket, domain: str, timeout: float) -> tuple[int | None, str]:
    """``GET /`` over the verified connection: the HTTP status, or None and why not."""
    request = (
        f"GET / HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n"
        "User-Agent: fedi-run-verify\r\n\r\n"
    )
    try:
        tls.sendall(request.encode("ascii"))
        line = tls.makefile("rb").readline(1024).decode("latin-1").strip()
    except TimeoutError:
        return None, f"nothing after {timeout:g} s"
    except (OSError, ssl.SSLError) as error:
        return None, str(error)
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None, f"not HTTP: {line[:80]!r}"
    return int(parts[1]), ""


def check_https(
    address: str,
    domain: str,
    ca_file: str | None = None,
    port: int = HTTPS_PORT,
    timeout: float = TIMEOUT,
) -> HttpsResult:
    """Connect to ``address:port`` with SNI ``domain``, verify the certificate against
    ``ca_file`` (or the system CAs) and the name ``domain``, and ask for ``/``."""
    url = f"https://{domain}/" if port == HTTPS_PORT else f"https://{domain}:{port}/"

    def result(status: str, detail: str = "", **found: Any) -> HttpsResult:
        return HttpsResult(url, address, port, status, detail, **found)

    try:
        context = ssl.create_default_context(cafile=ca_file)  # None: the system CAs
    except (OSError, ssl.SSLError) as error:
        return result("error", f"cannot load the CA file {ca_file}: {error}")
    try:
        raw = socket.create_connection((address, port), timeout=timeout)
    except ConnectionRefusedError:
        return result("refused", "connection refused")
    except TimeoutError:
        return result("timeout", f"no connection after {timeout:g} s")
    except OSError as error:
        return result("error", f"cannot connect: {error.strerror or error}")
    try:
        with raw, context.wrap_socket(raw, server_hostname=domain) as tls:
            issuer = _name(tls.getpeercert().get("issuer"))
            status, why = _ask(tls, domain, timeout)
    except ssl.SSLCertVerificationError as error:
        reason = error.verify_message or error.reason or str(error)
        against = f"the CA in {ca_file}" if ca_file else "the system CAs"
        return result(
            "tls-error",
            f"certificate not verified against {against}: {reason}",
            issuer=_unverified_issuer(address, port, domain, timeout),
        )
    except TimeoutError:
        return result("timeout", f"no TLS handshake after {timeout:g} s")
    except ssl.SSLError as error:
        return result("tls-error", error.reason or str(error))
    except OSError as error:
        return result("error", f"connection failed: {error.strerror or error}")
    if status is None:
        return result("no-answer", why, issuer=issuer, verified=True)
    return result("ok", issuer=issuer, verified=True, http_status=status)


# --- the whole deployment ---------------------------------------------------------------------


def declared_units(project: Project) -> dict[str, tuple[str, ...]]:
    """The systemd units each service's section declares (``ConfigSection.units``)."""
    return {
        section.name: section.units
        for _, section in project.plugins.config_sections()
        if section.kind == "service"
    }


def declared_ca_file(project: Project) -> str | None:
    """The CA file HTTPS certificates are checked against: the first one set in a plugin
    table that declares one (``ConfigSection.ca_file_field``); None: the system's CAs."""
    for _, section in project.plugins.config_sections():
        if section.kind != "table" or section.ca_file_field is None:
            continue
        table = project.playbook.section(section.name)
        ca_file = getattr(table, section.ca_file_field, None) if table is not None else None
        if ca_file:
            return str(ca_file)
    return None


def verify_service(
    playbook: Playbook,
    pool: ConnectionPool,
    service: str,
    units: Sequence[str],
    https_port: int = HTTPS_PORT,
    timeout: float = TIMEOUT,
    ca_file: str | None = None,
) -> ServiceResult:
    """The checks of the enabled ``service``: each of its ``units``, and its HTTPS endpoint
    against ``ca_file`` (None: the system's CAs)."""
    host = playbook.service_host(service)
    first, *others = units or (None,)
    if host not in playbook.hosts:
        return ServiceResult(
            service,
            host,
            None,
            UnitResult(first, False, "not checked", f"no host {host!r}"),
            None,
            (f"its host {host!r} is not in the playbook or its inventories",),
            tuple(UnitResult(u, False, "not checked", f"no host {host!r}") for u in others),
        )
    address = playbook.hosts[host].address
    unit_result = check_unit(pool, host, first, timeout)
    other_results = tuple(check_unit(pool, host, unit, timeout) for unit in others)
    https = check_https(address, playbook.service_domain(service), ca_file, https_port, timeout)
    return ServiceResult(service, host, address, unit_result, https, (), other_results)


def verify_project(
    project: Project,
    pool: ConnectionPool,
    https_port: int = HTTPS_PORT,
    timeout: float = TIMEOUT,
) -> list[ServiceResult]:
    """Check every enabled service of ``project``, several at once; in the playbook's order."""
    playbook = project.playbook
    units = declared_units(project)
    ca_file = declared_ca_file(project)
    services = list(playbook.enabled)
    if not services:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(services))) as executor:
        futures = [
            executor.submit(
                verify_service,
                playbook,
                pool,
                service,
                units.get(service, ()),
                https_port,
                timeout,
                ca_file,
            )
            for service in services
        ]
        return [future.result() for future in futures]
