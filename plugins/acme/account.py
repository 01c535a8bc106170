"""The ACME account, registered from the deployer (task ``acme.account``), and its undo.

Contract of :func:`register` (a :class:`~fedi_run.engine.api.Call` function,
run on the deployer: ``context.connection`` is ``None``):

* the account key is loaded from, or created (EC P-256, ES256) at, :func:`key_path` —
  ``<state dir>/acme/<deployment>-account.pem``, mode 0600 in a 0700 directory, beside the
  state database and never inside the rendered deployment (``.fedi-run/<deployment>/``, which
  is copied into the Nix store). Its text is given to ``context.masker`` the moment it is read
  or made, and is never printed, logged or put in the state file;
* the directory is fetched from ``[acme] server``, verifying TLS with ``ca_file`` when given,
  else with the deployer's system CAs; every network call times out after :data:`TIMEOUT` s;
* if the directory names terms of service and ``accept_terms`` is false, the task fails,
  telling the user to read them and set ``accept_terms = true``;
* the key's account is looked up (``onlyReturnExisting``) and registered when there is none,
  with ``email`` as contact; a contact that differs from ``email`` is updated. What the server
  said is recorded in :func:`record_path` (JSON, 0600: server → account URL and contact);
* returns ``["registered ACME account <email> at <server>"]`` (or the contact update) when it
  changed something, ``[]`` when the account already existed as configured;
* ``context.check``: nothing is registered or written; the directory is fetched (the server is
  reachable, is an ACME server, its terms are accepted) and, when the key exists, its account
  looked up (``onlyReturnExisting``, read-only), to report what a run would change;
* every failure raises :class:`~fedi_run.engine.api.ActionFailed` with one
  paragraph naming the server URL (and the e-mail address when the server rejects it).
  Requests the server rejects with ``badNonce`` are retried.

:func:`unregister` is the undo (teardown): it deactivates the account at the server and removes
the key and its record; without a key there is nothing to undo.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from fedi_run.engine.api import ActionFailed, Context, make_private_dirs, write_atomically

TIMEOUT = 10
"""Seconds before any request to the ACME server gives up."""
ATTEMPTS = 3
"""Tries of a request the server rejects with badNonce (the acme library retries once more)."""
USER_AGENT = "fedi-run"
FETCHING = "fetching its directory"
DIRECTORY_NAME = "acme"
"""The folder of the state directory holding account keys; no deployment may be called so (the
plugin refuses the name: its rendering would live in ``.fedi-run/acme/``)."""


# --- where the key lives -------------------------------------------------------------------


def account_dir(context: Context) -> Path:
    """The deployer's private folder of ACME account keys for this deployment's state."""
    playbook = context.playbook
    base = context.state_dir or playbook.source.absolute().parent / ".fedi-run"
    return Path(base) / DIRECTORY_NAME


def key_path(context: Context) -> Path:
    """``<state dir>/acme/<deployment>-account.pem``: the account's private key (0600)."""
    return account_dir(context) / f"{context.playbook.name}-account.pem"


def record_path(context: Context) -> Path:
    """``<state dir>/acme/<deployment>-account.json``: server URL → account URL and contact."""
    return account_dir(context) / f"{context.playbook.name}-account.json"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 (temporary file, then rename) in a 0700
    directory; temporary files a write that died left there are removed first."""
    make_private_dirs(path.parent, narrow=True)
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)
    write_atomically(path, data)


def _read_records(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("accounts", {}) if isinstance(data, dict) else {}


def _write_records(path: Path, records: dict[str, Any]) -> None:
    text = json.dumps({"accounts": records}, indent=2, sort_keys=True) + "\n"
    _write_private(path, text.encode())


def _jwk(pem: bytes, path: Path):
    """The josepy key and signature algorithm of the PEM private key ``pem``."""
    import josepy as jose
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ActionFailed(
            f"the ACME account key {path} is not an unencrypted PEM private key "
            f"({error}); move it away to have a new account registered"
        ) from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return jose.JWKEC(key=key), jose.ES256
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return jose.JWKRSA(key=key), jose.RS256
    raise ActionFailed(
        f"the ACME account key {path} is neither an EC P-256 nor an RSA key of 2048 "
        "bits or more; move it away to have a new account registered"
    )


def _new_key_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _mask_key(context: Context, pem: bytes) -> None:
    """Register the key's text with the masker (its base64 lines, not the PEM armour)."""
    lines = pem.decode("ascii", "replace").splitlines()
    context.masker.add("\n".join(line for line in lines if not line.startswith("-----")))


def _load_key(context: Context, create: bool):
    """``(jwk, alg, changes)`` of the account key, created when missing and ``create``;
    ``(None, None, [])`` when missing and not ``create``. A key with a wider mode than 0600 is
    restricted (a change)."""
    path = key_path(context)
    changes: list[str] = []
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None, None, changes
        pem = _new_key_pem()
        _mask_key(context, pem)
        _write_private(path, pem)
    except OSError as error:
        reason = error.strerror or error
        raise ActionFailed(f"cannot read the ACME account key {path}: {reason}") from None
    else:
        _mask_key(context, pem)
        if path.stat().st_mode & 0o077:
            changes.append(f"restricted {path} to mode 0600")
            if not context.check:
                os.chmod(path, 0o600)
    jwk, alg = _jwk(pem, path)
    return jwk, alg, changes


# --- talking to the server -----------------------------------------------------------------


def _settings(context: Context):
    acme = context.playbook.section("acme")
    if acme is None:
        raise ActionFailed("the playbook has no [acme] table")
    return acme


def _trusting(acme) -> str:
    if acme.ca_file:
        return f"the CA in ca_file {acme.ca_file}"
    return "the deployer's system CAs (set ca_file in [acme] for a test CA)"


def _reason(error: BaseException) -> str:
    """The useful end of a requests/urllib3 error's text."""
    text = str(error)
    patterns = (
        r"certificate verify failed: ([^(\"']+?)\s*\(_ssl",
        r"\[Errno -?\d+\] ([^'\")]+)",
        r"Failed to resolve '[^']*' \(([^)]*)\)",
    )
    for pattern in patterns:
        match = re.search(pattern, text)
        if match:
            return match[1].strip()
    return text


def _code(error) -> str:
    """The ACME error code of a server's problem document (``badNonce``, …), known to the acme
    library or not; else its type."""
    typ = str(error.typ or "")
    for prefix in ("urn:ietf:params:acme:error:", "urn:acme:error:"):
        if typ.startswith(prefix):
            return typ[len(prefix) :]
    return typ


def _explain(error: Exception, acme, doing: str, key: Path | None = None) -> ActionFailed:
    """One paragraph saying what went wrong talking to ``acme.server`` while ``doing``."""
    return ActionFailed(_message(error, acme, doing, key))


def _message(error: Exception, acme, doing: str, key: Path | None) -> str:
    import josepy as jose
    import requests
    from acme import errors, messages

    server = acme.server
    fix = "check [acme] server"
    if isinstance(error, requests.exceptions.SSLError):
        return (
            f"cannot verify the TLS certificate of the ACME server {server} with "
            f"{_trusting(acme)}: {_reason(error)}"
        )
    if isinstance(error, requests.exceptions.Timeout):
        return f"the ACME server {server} did not answer within {TIMEOUT} s while {doing}"
    if isinstance(error, requests.exceptions.ConnectionError):
        return f"cannot connect to the ACME server {server} while {doing}: {_reason(error)}; {fix}"
    if isinstance(error, messages.Error):
        code = _code(error)
        detail = error.detail or error.title or code
        if code in ("invalidContact", "unsupportedContact", "invalidEmail"):
            return (
                f"the ACME server {server} rejected the contact address {acme.email!r}: "
                f"{detail}; set a valid email in [acme]"
            )
        if code in ("agreementRequired", "userActionRequired"):
            return (
                f"the ACME server {server} requires agreeing to its terms of service: "
                f"{detail}; read them and set accept_terms = true in [acme]"
            )
        # A deactivated account has no code of its own: RFC 8555 (7.3.6) answers its requests
        # with "unauthorized", and only the problem's detail — free text — says why.
        if code == "unauthorized" and "deactivated" in str(detail) and key is not None:
            return (
                f"the ACME account of the key {key} at {server} is deactivated ({detail}); "
                "move the key away to have a new account registered"
            )
        return f"the ACME server {server} refused the request while {doing}: {code}: {detail}"
    if isinstance(error, errors.ClientError):
        response = error.args[0] if error.args else None
        status = getattr(response, "status_code", None)
        what = f"HTTP {status}" if status is not None else str(error)
        if doing == FETCHING:
            return f"{server} is not an ACME directory ({what}); {fix}"
        return f"the ACME server {server} answered {what} while {doing}"
    if isinstance(error, (ValueError, TypeError, jose.errors.Error)):  # not JSON, not a directory
        return (
            f"{server} did not answer as an ACME server while {doing} "
            f"({type(error).__name__}: {error}); {fix}"
        )
    if isinstance(error, requests.exceptions.RequestException):
        return f"the request to the ACME server {server} failed while {doing}: {error}"
    if isinstance(error, OSError):  # requests: an unreadable CA bundle
        return f"cannot use {_trusting(acme)} to reach the ACME server {server}: {error}"
    return f"the ACME server {server} failed while {doing}: {type(error).__name__}: {error}"


def _call(acme, doing: str, function, *args, key: Path | None = None):
    """``function(*args)``, retrying badNonce, with every error but ConflictError (the key has
    an account already) turned into :class:`ActionFailed`."""
    import josepy as jose
    import requests
    from acme import errors, messages

    for attempt in range(1, ATTEMPTS + 1):
        try:
            return function(*args)
        except errors.ConflictError:
            raise
        except messages.Error as error:
            if _code(error) == "badNonce" and attempt < ATTEMPTS:
                continue
            raise _explain(error, acme, doing, key) from None
        except (
            requests.exceptions.RequestException,
            errors.Error,
            jose.errors.Error,
            OSError,
            ValueError,
            TypeError,
        ) as error:
            raise _explain(error, acme, doing, key) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _client(acme, jwk=None, alg=None):
    """An ACME client whose directory has been fetched (and checked to be one)."""
    import josepy as jose
    from acme import client

    network = client.ClientNetwork(
        jwk,
        alg=alg or jose.ES256,
        verify_ssl=acme.ca_file or True,
        user_agent=USER_AGENT,
        timeout=TIMEOUT,
    )
    directory = _call(acme, FETCHING, client.ClientV2.get_directory, acme.server, network)
    fields = directory.to_partial_json()
    if not isinstance(fields, dict) or not {"newAccount", "newNonce"} <= set(fields):
        raise ActionFailed(
            f"{acme.server} is not an ACME directory (what it returned names no "
            "newAccount and newNonce); check [acme] server"
        )
    return client.ClientV2(directory, network)


def _check_terms(acme, directory) -> None:
    terms = getattr(getattr(directory, "meta", None), "terms_of_service", None)
    if terms and not acme.accept_terms:
        raise ActionFailed(
            f"the ACME server {acme.server} has terms of service that must be "
            f"agreed to before an account is registered: read {terms} and set "
            "accept_terms = true in [acme]"
        )


def _lookup(acme, acme_client, key: Path):
    """The account of ``key`` at the server, or ``None`` when it has none."""
    from acme import messages

    blank = messages.RegistrationResource(body=messages.Registration())
    return _call(acme, "looking up the account", _raw_query, acme_client, blank, key=key)


def _raw_query(acme_client, blank):
    """The server's record of the account, or ``None`` when the key has none
    (``accountDoesNotExist``: an answer, not a failure)."""
    from acme import messages

    try:
        return acme_client.query_registration(blank)
    except messages.Error as error:
        if _code(error) == "accountDoesNotExist":
            return None
        raise


def _who(acme) -> str:
    return acme.email or "(no contact)"


def _contact(acme) -> tuple[str, ...]:
    return (f"mailto:{acme.email}",) if acme.email else ()


# --- the task and its undo -----------------------------------------------------------------


def register(context: Context) -> list[str]:
    """Register (or find) the deployment's ACME account; see the module docstring."""
    acme = _settings(context)
    if context.check:
        return _would_register(context, acme)

    from acme import errors, messages

    records = _read_records(record_path(context))
    path = key_path(context)
    had_key = path.exists()
    jwk, alg, changes = _load_key(context, create=True)
    acme_client = _client(acme, jwk, alg)
    _check_terms(acme, acme_client.directory)
    account = _lookup(acme, acme_client, path) if had_key else None
    if account is None:
        registration = messages.NewRegistration.from_data(
            email=acme.email, terms_of_service_agreed=True if acme.accept_terms else None
        )
        try:
            account = _call(
                acme,
                f"registering the account {_who(acme)}",
                acme_client.new_account,
                registration,
                key=path,
            )
            changes.append(f"registered ACME account {_who(acme)} at {acme.server}")
        except errors.ConflictError:  # the key has an account after all: look it up
            account = _lookup(acme, acme_client, path)
            if account is None:
                raise ActionFailed(
                    f"the ACME server {acme.server} says the key {path} has an "
                    "account, but does not return it"
                ) from None
    if tuple(account.body.contact or ()) != _contact(acme):
        account = _call(
            acme,
            "updating the account's contact",
            acme_client.update_registration,
            account,
            account.body.update(contact=_contact(acme)),
            key=path,
        )
        changes.append(f"updated the ACME account's contact to {_who(acme)} at {acme.server}")
    record = {"account": account.uri, "contact": list(_contact(acme))}
    if records.get(acme.server) != record:
        records[acme.server] = record
        _write_records(record_path(context), records)
    return changes


def _would_register(context: Context, acme) -> list[str]:
    """Check mode: what :func:`register` would change. Only the directory is fetched and, when
    there is a key, its account looked up (``onlyReturnExisting`` changes nothing)."""
    path = key_path(context)
    jwk, alg, changes = _load_key(context, create=False)
    acme_client = _client(acme, jwk, alg)
    _check_terms(acme, acme_client.directory)
    account = _lookup(acme, acme_client, path) if jwk is not None else None
    if account is None:
        return changes + [f"registered ACME account {_who(acme)} at {acme.server}"]
    if tuple(account.body.contact or ()) != _contact(acme):
        return changes + [f"updated the ACME account's contact to {_who(acme)} at {acme.server}"]
    return changes


def unregister(context: Context) -> list[str]:
    """Undo :func:`register`: deactivate the key's account at ``[acme] server`` and remove the
    key and its record. ``[]`` when there is no key. In check mode, only says so."""
    acme = _settings(context)
    path = key_path(context)
    if not path.exists():
        return []
    change = f"deactivated ACME account {_who(acme)} at {acme.server} and removed its key {path}"
    if context.check:
        return [change]
    jwk, alg, _ = _load_key(context, create=False)
    acme_client = _client(acme, jwk, alg)
    account = _lookup(acme, acme_client, path)
    if account is not None:
        _call(
            acme, "deactivating the account", acme_client.deactivate_registration, account, key=path
        )
    records = _read_records(record_path(context))
    records.pop(acme.server, None)
    path.unlink()
    if records:
        _write_records(record_path(context), records)
    else:
        record_path(context).unlink(missing_ok=True)
    return [change]
