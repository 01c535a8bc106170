"""fedi-run-akkoma: Akkoma (a Fediverse microblogging server) as a fedi-run service plugin.

A third party's plugin, built on the public plugin API alone (``fedi_run.engine.api``): it
imports nothing else of fedi-run, not even the built-in plugins. It uses every extension point:

* ``[services.akkoma]`` (hook ``fedi_run_config_sections``): ``enable``, ``host``, and its own
  ``instance_name``, ``registrations_open`` and ``terms_file``; it ``needs`` Garage (uploads),
  which fedi-run then switches on and which makes it an S3 key. It declares the systemd unit
  ``fedi-run verify`` checks (``akkoma.service``) and the key of a Fediversity
  ``configuration.json`` that switches it (``"akkoma": {"enable": true}``);
* ``[akkoma-mail]``, a table of its own that an inventory (``-i``) may also hold — each
  environment has its own SMTP relay: ``relay``, ``port`` and ``sender``;
* tasks (hook ``fedi_run_tasks``), from the API's service building blocks: its secrets, its S3
  key files, its initial user, a DNS check, its instance settings rendered from a template, and
  — with ``terms_file`` — its terms of service, read from the deployer's file named in the
  playbook (``Task.reads``, so a missing file stops the run before any host is contacted);
* a secret generator of its own (hook ``fedi_run_secret_generators``): ``akkoma-signing-salt``;
* its data in ``data.nix`` (hook ``fedi_run_nix_data``): ``akkoma = { instanceName; mail; }``;
* its NixOS module (hook ``fedi_run_nix_modules``), naming the secrets by path only.

The S3 key, without importing the garage plugin. This plugin relies on the garage plugin's
documented contract (docs/plugins.md, "Object storage"): for every enabled service whose section
``needs=("garage",)``, the task ``garage.key.<service>`` makes an S3 key on the garage host —
the host of the ``garage`` service — in the deployment's own
``/var/lib/fedi-run/<deployment>/secrets/garage/keys/<service>/``, that is
``secrets_dir(playbook, "garage") + "/keys/<service>"`` (files ``key-id``, ``secret`` and
``bucket``; the bucket is named after the service). The task ``akkoma.s3`` requires
``garage.key.akkoma`` by id, and its own :func:`copy_s3_key` copies the two files onto Akkoma's
host with :func:`read_secret_files` and :func:`place_secret_files`.

Every path of its own on a host is the deployment's too (:func:`secrets_dir` takes the
playbook): two deployments that share a host never touch each other's Akkoma files, and
:func:`absent_task` cleans up only where this deployment had Akkoma in an earlier run.
"""

from __future__ import annotations

import secrets as random

from pydantic import Field

from fedi_run.engine.api import (
    ActionFailed,
    Call,
    ConfigSection,
    Context,
    Directory,
    DnsName,
    Email,
    File,
    FilePath,
    NixModule,
    Playbook,
    SecretSpec,
    Section,
    ServiceConfig,
    Task,
    Template,
    absent_task,
    dns_task,
    hookimpl,
    initial_user_file,
    initial_user_task,
    place_secret_files,
    read_secret_files,
    render_template,
    secret_tasks,
    secrets_dir,
)

__version__ = "0.1.0"
NAME = "akkoma"
MAIL = "akkoma-mail"
"""The plugin's own top-level table, ``[akkoma-mail]``."""
SALT = "akkoma-signing-salt"
"""The plugin's own secret generator (:func:`signing_salt`)."""
SECRETS = (SecretSpec("secret-key-base", "hex64"), SecretSpec("signing-salt", SALT))
STATE = "/var/lib/akkoma-fedi-run"
SETTINGS = f"{STATE}/settings.json"
GARAGE = "garage"


def s3_dir(playbook: Playbook) -> str:
    """Where Akkoma's S3 key files (``key-id``, ``secret``) are on its host."""
    return f"{secrets_dir(playbook, NAME)}/s3"


def terms_path(playbook: Playbook) -> str:
    """Where the terms of service are on Akkoma's host (placed from ``terms_file``)."""
    return f"{secrets_dir(playbook, NAME)}/terms.html"


def garage_keys(playbook: Playbook) -> str:
    """The garage plugin's documented location of the S3 keys it makes for the deployment, on
    the garage host."""
    return f"{secrets_dir(playbook, GARAGE)}/keys"


class AkkomaConfig(ServiceConfig):
    """``[services.akkoma]``."""

    instance_name: str = Field(
        "Akkoma", min_length=1, max_length=80, description="The instance's name."
    )
    registrations_open: bool = Field(False, description="Whether anyone may sign up.")
    terms_file: FilePath | None = Field(
        None, description="An HTML file on the deployer: the instance's terms of service."
    )


class AkkomaMail(Section):
    """``[akkoma-mail]``: how Akkoma sends mail (confirmations, password resets)."""

    relay: DnsName = Field(description="The SMTP relay host.")
    port: int = Field(587, ge=1, le=65535, description="The relay's SMTP port (STARTTLS).")
    sender: Email = Field(description="The address Akkoma's mail comes from.")


def signing_salt() -> str:
    """Akkoma's (Phoenix's) signing salt: 30 random bytes as 40 URL-safe base64 characters."""
    return random.token_urlsafe(30)


@hookimpl
def fedi_run_config_sections():
    return [
        ConfigSection(
            NAME,
            AkkomaConfig,
            needs=(GARAGE,),
            description="Akkoma, microblogging.",
            units=("akkoma.service",),
            configuration_key=NAME,
        ),
        ConfigSection(
            MAIL,
            AkkomaMail,
            kind="table",
            description="Akkoma's outgoing mail (SMTP relay).",
            in_inventory=True,
        ),
    ]


@hookimpl
def fedi_run_secret_generators():
    return {SALT: signing_salt}


@hookimpl
def fedi_run_tasks(playbook: Playbook):
    if not playbook.is_enabled(NAME):
        return absent_task(playbook, NAME, f"{NAME} is disabled")
    host = playbook.service_host(NAME)
    config = playbook.services[NAME]
    s3, terms = s3_dir(playbook), terms_path(playbook)
    tasks = [
        secret_tasks(playbook, NAME, SECRETS),
        Task(
            id=f"{NAME}.s3",
            host=host,
            requires=(f"{GARAGE}.key.{NAME}", f"{NAME}.secrets"),
            tags=(NAME, "s3", GARAGE),
            description="Akkoma's Garage S3 key files, copied from the garage host",
            actions=(Call(copy_s3_key, (("to", s3),), secrets=(f"{s3}/key-id", f"{s3}/secret")),),
            undo=(Directory(s3, present=False),),
        ),
        dns_task(playbook, NAME),
        *initial_user_task(playbook, NAME),
        Task(
            id=f"{NAME}.settings",
            host=host,
            requires=(f"{NAME}.secrets",),
            tags=(NAME, "config"),
            description="Akkoma's instance settings",
            actions=(
                Directory(STATE, mode=0o755),
                Template(
                    SETTINGS,
                    "settings.json.j2",
                    package="fedi_run_akkoma",
                    context=(
                        ("instance_name", config.instance_name),
                        ("registrations_open", config.registrations_open),
                        ("domain", playbook.service_domain(NAME)),
                    ),
                    mode=0o644,
                ),
            ),
        ),
    ]
    if config.terms_file is not None:
        tasks.append(
            Task(
                id=f"{NAME}.terms",
                host=host,
                requires=(f"{NAME}.secrets",),
                tags=(NAME, "config"),
                description=f"Akkoma's terms of service, from {config.terms_file}",
                actions=(Call(place_terms, (("to", terms),)),),
                undo=(File(terms, present=False),),
                reads=(f"services.{NAME}.terms_file",),
            )
        )
    return tasks


def copy_s3_key(context: Context, to: str) -> list[str]:
    """Place Akkoma's S3 key id and secret — made on the garage host by ``garage.key.akkoma``
    in :func:`garage_keys` ``/akkoma/`` — in the directory ``to`` on Akkoma's host (mode 0400).
    The values travel only over the two SSH connections and are masked."""
    garage = context.pool[context.playbook.service_host(GARAGE)]
    source = f"{garage_keys(context.playbook)}/{NAME}"
    found = read_secret_files(context, garage, [f"{source}/key-id", f"{source}/secret"])
    if len(found) < 2:
        if context.check:
            return [f"would copy Akkoma's S3 key from the garage host to {to}"]
        raise ActionFailed(
            f"Akkoma's S3 key is missing on the garage host ({source}); run garage.key.akkoma first"
        )
    assert context.connection is not None
    return place_secret_files(
        context,
        context.connection,
        {f"{to}/key-id": found[f"{source}/key-id"], f"{to}/secret": found[f"{source}/secret"]},
    )


def place_terms(context: Context, to: str) -> list[str]:
    """Place the deployer's ``terms_file`` at ``to`` on Akkoma's host (mode 0400, as every
    file fedi-run hands a service; Akkoma's module reads it as root). Preflight has checked
    that the file is readable (``Task.reads``)."""
    path = context.playbook.services[NAME].terms_file
    try:
        with open(path, encoding="utf-8") as terms:
            text = terms.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ActionFailed(f"cannot read services.akkoma.terms_file {path}: {reason}") from None
    assert context.connection is not None
    return place_secret_files(context, context.connection, {to: text})


@hookimpl
def fedi_run_nix_data(playbook: Playbook):
    config = playbook.services[NAME]
    mail = playbook.section(MAIL)
    return {
        NAME: {
            "instanceName": config.instance_name,
            "registrationsOpen": config.registrations_open,
            "mail": None
            if mail is None
            else {"relay": mail.relay, "port": mail.port, "sender": mail.sender},
        }
    }


@hookimpl
def fedi_run_nix_modules(playbook: Playbook, host: str):
    if playbook.service_host(NAME) != host or host not in playbook.hosts:
        return []
    config = playbook.services[NAME]
    mail = playbook.section(MAIL)
    s3 = s3_dir(playbook)
    text = render_template(
        "fedi_run_akkoma",
        "akkoma.nix.j2",
        enable=playbook.is_enabled(NAME),
        domain=playbook.service_domain(NAME),
        secret_key_base_file=f"{secrets_dir(playbook, NAME)}/secret-key-base",
        signing_salt_file=f"{secrets_dir(playbook, NAME)}/signing-salt",
        s3_key_id_file=f"{s3}/key-id",
        s3_secret_file=f"{s3}/secret",
        settings_file=SETTINGS,
        terms_file=terms_path(playbook) if config.terms_file is not None else None,
        initial_user_file=initial_user_file(playbook, NAME) if playbook.initial_user else None,
        mail=None if mail is None else {"relay": mail.relay, "port": mail.port},
        sender=None if mail is None else mail.sender,
    )
    return [NixModule(NAME, text, secret_files(playbook) if playbook.is_enabled(NAME) else {})]


def secret_files(playbook: Playbook) -> dict[str, str]:
    """Name → path on Akkoma's host of every file its tasks place there (what its module names,
    listed under ``services.akkoma.secrets`` in ``data.nix``)."""
    s3 = s3_dir(playbook)
    files = {spec.name: f"{secrets_dir(playbook, NAME)}/{spec.name}" for spec in SECRETS}
    files.update({"s3-key-id": f"{s3}/key-id", "s3-secret": f"{s3}/secret"})
    if playbook.initial_user is not None:
        files["initial-user"] = initial_user_file(playbook, NAME)
    if playbook.services[NAME].terms_file is not None:
        files["terms"] = terms_path(playbook)
    return files
