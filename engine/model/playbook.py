"""The playbook: the validated, immutable description of one deployment.

Two layers:

* pydantic models (:class:`Section` and its subclasses) validate each table of ``playbook.toml``
  strictly — no coercion, unknown keys rejected — and give the JSON Schema for free;
* :class:`Playbook`, a frozen dataclass, is what the engine and the plugins receive: the
  sections after inventories and a Fediversity configuration were merged in, relative paths made
  absolute, cross references checked, and services switched on by the services that need them.

``engine.loading`` builds a :class:`Playbook` from files; nothing here reads files.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from fedi_run.engine.model import validators as names


class Lines:
    """Marks a text field whose value may have several lines (a script, a file's content):
    tab and newline are allowed there; ``hint`` is added to the message refusing another
    control character."""

    def __init__(self, hint: str = "") -> None:
        self.hint = hint


class Section(BaseModel):
    """Base of every playbook table: strict types, unknown keys rejected, immutable.

    No text in any table — the engine's and every plugin's, a field's value, an item of an
    array, a key or value of a table — holds a NUL or another control character
    (:func:`~fedi_run.engine.model.validators.check_text`): such a value cannot reach a command
    line, a file name, a known_hosts line or a Nix string intact. A field marked
    :class:`Lines` may hold tabs and newlines.
    """

    # defer_build: a model's validator is built when it first validates, so the tables of
    # plugins a playbook does not use cost nothing at start-up (engine/model, issue 15).
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, defer_build=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        marker = _lines_marker(cls, info.field_name)
        for text in _texts(value):
            names.check_text(text, lines=marker is not None, hint=marker.hint if marker else "")
        return value


def _texts(value: Any) -> list[str]:
    """Every string in ``value``: itself, the items of a tuple, the keys and values of a
    mapping (a field's value is validated data: no deeper than its type)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (tuple, list)):
        return [text for item in value for text in _texts(item)]
    if isinstance(value, Mapping):
        return [text for pair in value.items() for item in pair for text in _texts(item)]
    return []


@functools.cache
def _lines_marker(model: type[BaseModel], name: str | None) -> Lines | None:
    field = model.model_fields.get(name or "")
    if field is None:
        return None

    def marker(annotation: Any) -> Lines | None:
        if typing.get_origin(annotation) is Annotated:
            for meta in annotation.__metadata__:
                if isinstance(meta, Lines):
                    return meta
        return next(filter(None, map(marker, typing.get_args(annotation))), None)

    return next((m for m in field.metadata if isinstance(m, Lines)), None) or marker(
        field.annotation
    )


PlainName = Annotated[str, AfterValidator(names.check_plain_name)]
DnsName = Annotated[str, AfterValidator(names.check_dns_name)]
Address = Annotated[str, AfterValidator(names.check_address)]
PosixUser = Annotated[str, AfterValidator(names.check_posix_user)]
Email = Annotated[str, AfterValidator(names.check_email)]
HostKey = Annotated[str, AfterValidator(names.check_host_key)]
Tag = Annotated[str, AfterValidator(names.check_tag)]
HttpsUrl = Annotated[str, AfterValidator(names.check_https_url)]
NixosPlatform = Annotated[str, AfterValidator(names.check_nixos_platform)]
StateVersion = Annotated[str, AfterValidator(names.check_state_version)]
FlakeRef = Annotated[str, AfterValidator(names.check_flake_ref)]


class PathMarker:
    """Marks a field as a path on the deployer, made absolute by the loader."""


FilePath = Annotated[
    str,
    PathMarker(),
    Field(
        min_length=1,
        description="A file on the deployer; relative paths are relative to the file that "
        "names them.",
    ),
]
"""A path on the deployer. The loader makes it absolute before validation."""


def _check_nix_file(value: str) -> str:
    if not value.endswith(".nix"):
        raise ValueError("expected a NixOS module file whose name ends in .nix")
    return value


NixFile = Annotated[FilePath, AfterValidator(_check_nix_file)]
"""A ``.nix`` file on the deployer (a :data:`FilePath`)."""

DEFAULT_PLATFORM = "x86_64-linux"
"""A host's ``nixpkgs.hostPlatform`` unless its ``system`` says otherwise."""
DEFAULT_STATE_VERSION = "25.05"
"""A host's ``system.stateVersion`` unless the host, ``[deployment]`` or the host's own base
configuration says otherwise."""


class DeploymentSection(Section):
    """``[deployment]``: what the deployment is called and where its services live."""

    name: Annotated[str, AfterValidator(names.check_deployment_name)] = Field(
        description="The NixOps4 deployment name.", examples=["fediversity"]
    )
    domain: DnsName = Field(
        description="Services live at <service>.<domain>.", examples=["fediversity.net"]
    )
    state_version: StateVersion | None = Field(
        None,
        description="The hosts' system.stateVersion (the NixOS release they were installed "
        f"with), unless a host sets its own; default {DEFAULT_STATE_VERSION}.",
        examples=["24.11"],
    )
    inputs: dict[str, FlakeRef] = Field(
        default_factory=dict,
        description="Flake references replacing the pinned inputs of the rendered NixOps4 "
        "deployment: nixpkgs, nixops4, nixops4-nixos (docs/nixops.md).",
        examples=[{"nixpkgs": "github:NixOS/nixpkgs/nixos-25.05"}],
    )


class HostSection(Section):
    """``[hosts.<name>]``: one target machine, reached over SSH."""

    address: Address = Field(
        description="IP address or DNS name of the host.", examples=["203.0.113.11"]
    )
    port: int = Field(22, ge=1, le=65535, description="SSH port.", examples=[2222])
    user: PosixUser = Field("root", description="SSH login user.", examples=["deploy"])
    host_key: HostKey | None = Field(
        None,
        description="The host's pinned SSH public key, 'ssh-ed25519 AAAA...' (default: checked "
        "against fedi-run's known_hosts file).",
        examples=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9rcGV0aGVrZXlpc2FsbG9uZ2V4YW1wbGU"],
    )
    identity: FilePath | None = Field(
        None,
        description="Private key file to log in with (default: the SSH agent and ssh's "
        "default keys).",
        examples=["keys/deployer"],
    )
    system: NixosPlatform | None = Field(
        None,
        description=f"The host's nixpkgs.hostPlatform; default {DEFAULT_PLATFORM}.",
        examples=["aarch64-linux"],
    )
    state_version: StateVersion | None = Field(
        None,
        description="The host's system.stateVersion; default [deployment] state_version.",
        examples=["24.11"],
    )
    nixos: NixFile | None = Field(
        None,
        description="The host's own base NixOS configuration (hardware, boot, file systems, "
        "networking): a .nix file, copied with the other .nix files of its directory into the "
        "deployment. Required for every host the NixOps4 deployment configures.",
        examples=["machines/web/configuration.nix"],
    )


class ServiceConfig(Section):
    """``[services.<name>]``: the base every service plugin's options extend.

    A plugin subclasses it to add its own options; ``enable`` and ``host`` are common to all.
    """

    enable: bool = Field(False, description="Deploy this service.")
    host: PlainName | None = Field(
        None, description="The [hosts] entry the service runs on; defaults to its own name."
    )


def _check_var_value(value: Any) -> Any:
    """A ``[vars]`` value: plain TOML data whose every text (a key too, through nested arrays
    and tables) holds no control character but tab and newline."""
    for text in _texts_deep(value):
        names.check_text(text, lines=True)
    return value


def _texts_deep(value: Any) -> list[str]:
    """Every string in ``value``, through nested arrays and tables (keys included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (tuple, list)):
        return [text for item in value for text in _texts_deep(item)]
    if isinstance(value, Mapping):
        return [t for pair in value.items() for item in pair for t in _texts_deep(item)]
    return []


VarValue = Annotated[
    Any,
    AfterValidator(_check_var_value),
    WithJsonSchema(
        {
            "type": ["string", "integer", "number", "boolean", "array", "object"],
            "description": "Plain data: a string, number, boolean, date, array or table.",
        }
    ),
]
Vars = dict[Annotated[str, AfterValidator(names.check_shell_name)], VarValue]
"""``[vars]``: the operator's own values by name (letters, digits and '_')."""
VARS = TypeAdapter(Vars, config=ConfigDict(strict=True))
"""Validates a ``[vars]`` table (the loader's; the schema declares the same type)."""
VARS_DESCRIPTION = (
    "The operator's own values, seen by every template as `vars` (`{{ vars.motd_text }}`): "
    "strings, numbers, booleans, dates, arrays and tables. They are plain data, not templates "
    "(a `{{ }}` in one stays as it is). Names: letters, digits and '_'. An inventory's "
    "[vars] is merged key by key over the playbook's (nested tables too; later files win). "
    "Not for secrets: keep those in files."
)


class InitialUserSection(Section):
    """``[initial_user]``: the first account created on every enabled service."""

    username: Annotated[str, AfterValidator(names.check_username)] = Field(
        description="The account's name on every service: 1 to 30 letters, digits or '_'.",
        examples=["admin"],
    )
    display_name: str = Field(
        min_length=1,
        max_length=100,
        description="The name shown for the account (1 to 100 characters).",
        examples=["Admin"],
    )
    email: Email = Field(
        description="The account's e-mail address.", examples=["admin@example.org"]
    )
    password_file: FilePath = Field(
        description="File holding the password; a password is never written in the playbook.",
        examples=["secrets/admin-password"],
    )


def _check_target_path(value: str) -> str:
    if not value.startswith("/") or "\x00" in value or "\n" in value or value.rstrip("/") == "":
        raise ValueError("expected an absolute path on the host, such as '/srv/app/config'")
    return value


def _check_mode(value: str) -> str:
    if not (3 <= len(value) <= 4 and all(c in "01234567" for c in value)):
        raise ValueError('expected an octal file mode as a string, such as "0644"')
    return value


TargetPath = Annotated[str, AfterValidator(_check_target_path)]
Mode = Annotated[str, AfterValidator(_check_mode)]
Owner = Annotated[str, AfterValidator(names.check_owner)]
"""``user`` or ``user:group`` on the host (names or numeric ids)."""
EnvName = Annotated[str, AfterValidator(names.check_shell_name)]
Script = Annotated[str, Lines()]
"""A shell command of one or more lines (tab and newline allowed, no other control
character)."""
Content = Annotated[
    str, Lines("; a file with other control characters can be copied from the deployer with `src`")
]
"""A file's content written in the playbook (tab and newline allowed)."""


class FileSpec(Section):
    """``file = {...}`` in a task: a file on the host with this content (a jinja2 template, or
    the deployer's file ``src``), mode and owner; ``present = false`` removes it."""

    path: TargetPath = Field(
        description="The file on the host (an absolute path).", examples=["/etc/motd"]
    )
    content: Content | None = Field(
        None,
        description="The file's content: a jinja2 template like `run`. Exactly one of "
        "`content` or `src` (unless `present = false`).",
        examples=["Welcome to {{ deployment.domain }}\n"],
    )
    src: FilePath | None = Field(
        None,
        description="A file on the deployer whose content is copied (not a template); "
        "relative to the file that names it.",
        examples=["files/nginx-extra.conf"],
    )
    mode: Mode = Field(
        "0644", description="The file's mode, octal, as a string.", examples=["0640"]
    )
    owner: Owner | None = Field(
        None,
        description="Owner of the file: 'user' or 'user:group' (names or numeric ids), set "
        "with chown before the mode; unchanged when it already matches. Default: the user "
        "the file is written as (the host's SSH user).",
        examples=["www-data:www-data"],
    )
    present: bool = Field(
        True, description="false: the file is removed (then no content or src).", examples=[False]
    )

    @model_validator(mode="after")
    def _content_or_src(self) -> FileSpec:
        if self.present and (self.content is None) == (self.src is None):
            raise ValueError("expected exactly one of `content` or `src`")
        return self


class DirectorySpec(Section):
    """``directory = {...}`` in a task: a directory on the host (``present = false`` removes
    it and what it holds)."""

    path: TargetPath = Field(
        description="The directory on the host (an absolute path); its parents are created too.",
        examples=["/srv/app"],
    )
    mode: Mode = Field(
        "0755", description="The directory's mode, octal, as a string.", examples=["0750"]
    )
    owner: Owner | None = Field(
        None,
        description="Owner of the directory: 'user' or 'user:group' (names or numeric ids), "
        "set with chown before the mode; unchanged when it already matches.",
        examples=["app:app"],
    )
    present: bool = Field(
        True,
        description="false: the directory is removed, with everything in it.",
        examples=[False],
    )


class FetchSpec(Section):
    """``fetch = {...}`` in a task: copy the host's file ``remote`` to ``local`` on the
    deployer."""

    remote: TargetPath = Field(
        description="The file on the host to copy (an absolute path).",
        examples=["/etc/ssh/ssh_host_ed25519_key.pub"],
    )
    local: FilePath = Field(
        description="Where the copy goes on the deployer; relative to the file that names it.",
        examples=["fetched/host-key.pub"],
    )


ACTIONS = ("run", "file", "directory", "fetch")


class UserTaskSection(Section):
    """``[tasks.<name>]``: a task of the operator's own.

    It does exactly one thing: ``run`` a shell command (guarded by ``creates``/``unless``), or
    ensure a ``file`` or ``directory``, or ``fetch`` a file back. ``run``, ``undo`` and file
    contents are jinja2 templates over the playbook's values (``deployment``, ``hosts``,
    ``services``, ``initial_user``, and ``host`` for the host it runs on).
    """

    host: PlainName | None = Field(
        None, description="The one host this task runs on.", examples=["web"]
    )
    hosts: tuple[PlainName, ...] | None = Field(
        None,
        min_length=1,
        description="Several hosts: one task per host, its id '<id>@<host>'.",
        examples=[["web", "db"]],
    )
    run: Script | None = Field(
        None,
        min_length=1,
        description="Shell command run with sh on the host (a jinja2 template); a command "
        "that runs counts as changed unless `changed_when` says otherwise.",
        examples=["systemctl reload nginx"],
    )
    creates: TargetPath | None = Field(
        None,
        description="Skip `run` when this path (absolute) exists on the host.",
        examples=["/var/lib/app/.installed"],
    )
    unless: Script | None = Field(
        None,
        description="Skip `run` when this command succeeds (exit status 0); not a template.",
        examples=["systemctl is-active --quiet nginx"],
    )
    env: dict[EnvName, Script] | None = Field(
        None,
        description="Environment variables the task's commands (`run`, `unless`, `undo`) "
        "see: names of letters, digits and '_'; values are jinja2 templates, handed to the "
        "command quoted, never spliced into its text.",
        examples=[{"RAILS_ENV": "production", "DOMAIN": "{{ deployment.domain }}"}],
    )
    when: bool | Annotated[str, Field(min_length=1)] | None = Field(
        None,
        description="Run the task only when this is true: a boolean, or a jinja2 template that "
        "renders to 'true' or 'false' (any case, spaces ignored), decided when the playbook "
        "loads. A task whose `when` is false is skipped ('when: false'); tasks requiring it "
        "run as if it were done.",
        examples=["{{ host.name != 'db' }}", "{{ vars.with_backups }}"],
    )
    changed_when: bool | Annotated[str, Field(min_length=1)] | None = Field(
        None,
        description="Whether `run`, once it succeeded, counts as changed: a boolean, or a "
        "jinja2 template that renders to 'true' or 'false' after the command ran, with "
        "`result.stdout`, `result.stderr` (the last 64 KiB of each, secrets masked) and "
        "`result.exit_status` in scope. Default: changed whenever the command runs.",
        examples=["{{ 'updated' in result.stdout }}", False],
    )
    file: FileSpec | None = Field(
        None,
        description="Ensure a file on the host: its content, mode and owner (or its absence).",
        examples=[{"path": "/etc/motd", "content": "Welcome\n", "mode": "0644"}],
    )
    directory: DirectorySpec | None = Field(
        None,
        description="Ensure a directory on the host: its mode and owner (or its absence).",
        examples=[{"path": "/srv/app", "owner": "app:app"}],
    )
    fetch: FetchSpec | None = Field(
        None,
        description="Copy a file from the host back to the deployer.",
        examples=[{"remote": "/etc/hostname", "local": "fetched/hostname"}],
    )
    undo: Script | None = Field(
        None,
        description="Shell command that undoes the task in a teardown (default: the file put "
        "back as it was or removed, the directory removed when empty; nothing for a command "
        "or a fetch). A jinja2 template.",
        examples=["rm -f /var/lib/app/.installed"],
    )
    requires: tuple[str, ...] = Field(
        (),
        description="Ids of tasks that must be done first (a plugin's task such as "
        "'<service>.secrets', or another of yours: 'tasks.<name>').",
        examples=[["tasks.motd"]],
    )
    tags: tuple[Tag, ...] = Field(
        (),
        description="Tags for --tags and --skip-tags (letters, digits, '_', '.' and '-').",
        examples=[["custom", "motd"]],
    )
    description: str = Field(
        "",
        description="What the task does, shown by plan and the run (default: the "
        "operator's task '<name>').",
        examples=["Set the message of the day"],
    )
    shares_host: bool = Field(
        False,
        description="May run beside other tasks on its host (by default a host runs one task "
        "at a time).",
        examples=[True],
    )
    timeout: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Seconds before the task fails (default: the run's task timeout).",
        examples=[30],
    )

    @model_validator(mode="after")
    def _one_host_spec_and_one_action(self) -> UserTaskSection:
        if (self.host is None) == (self.hosts is None):
            raise ValueError("expected exactly one of `host` or `hosts`")
        given = [name for name in ACTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "expected exactly one of `run`, `file`, `directory` or `fetch`"
                + (f", found {', '.join(given)}" if given else "")
            )
        if (self.creates or self.unless) and self.run is None:
            raise ValueError("`creates` and `unless` guard `run` only")
        if self.changed_when is not None and self.run is None:
            raise ValueError("`changed_when` is for `run` tasks only")
        if self.env is not None and self.run is None and self.undo is None:
            raise ValueError("`env` is for the task's commands: `run`, `unless` and `undo`")
        return self


class RunSection(Section):
    """``[run]``: the project's defaults for the command line, and how tasks run.

    Each key but ``dns`` is the long name of a command-line option with ``_`` for ``-``
    (``no_apply`` is ``--no-apply``): the option given on the command line wins, then its
    ``FEDI_RUN_<KEY>`` environment variable, then this table, then the built-in default
    (docs/cli.md). Relative paths are relative to the playbook. Options that confirm or act
    once (``--yes``, ``--resume``, ``--rotate-secrets``, ``--restore-secret``,
    ``--change-domain``) and the selection flags (``--only``, ``--tags``, ...) have no key:
    they say what one invocation does.
    """

    inventory: tuple[FilePath, ...] = Field(
        (),
        description="Inventory files merged over the playbook, as -i/--inventory (relative to "
        "the playbook).",
    )
    configuration: FilePath | None = Field(
        None, description="A Fediversity configuration.json read over the playbook."
    )
    plugin: tuple[Annotated[str, Field(min_length=1)], ...] = Field(
        (), description="Modules loaded as plugins, as --plugin."
    )
    no_apply: bool = Field(False, description="Leave out the final nixops4 apply.")
    forks: int = Field(10, ge=1, le=1000, description="At most this many tasks at once.")
    timeout: float = Field(
        600.0, gt=0, allow_inf_nan=False, description="Seconds before a task fails."
    )
    retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Connection attempts after the first, before a host is unreachable.",
    )
    connect_timeout: float = Field(
        10.0,
        ge=0.1,
        allow_inf_nan=False,
        description="Seconds to wait for a host's SSH connection (and, in verify, for HTTPS).",
    )
    fail_fast: bool = Field(False, description="Start no new task after the first failure.")
    check: bool = Field(False, description="Change nothing; report what would change.")
    diff: bool = Field(False, description="Show how files would change (secrets masked).")
    detailed_exitcode: bool = Field(
        False,
        description="Exit with status 4 when tasks changed (with check: would change) "
        "something and none failed.",
    )
    verbose: int = Field(
        0, ge=0, le=10, description="How much of each command's output to show, as -v."
    )
    as_json: bool = Field(
        False,
        alias="json",
        description="Print JSON: JSON lines of a run, plan, history and the other outputs.",
    )
    junit: FilePath | None = Field(None, description="Write a JUnit XML report of a run here.")
    state: FilePath | None = Field(
        None, description="The state database (default: .fedi-run/state.db beside the playbook)."
    )
    known_hosts: FilePath | None = Field(
        None,
        description="known_hosts file for hosts without a pinned host_key (default "
        "~/.ssh/known_hosts).",
    )
    accept_new_host_keys: bool = Field(
        False, description="Accept unknown hosts' keys and record them in known_hosts."
    )
    format: Literal["mermaid", "dot", "json"] = Field(
        "mermaid", description="The output format of `fedi-run graph`."
    )
    dns: Literal["warn", "error", "off"] = Field(
        "warn",
        description="When a service's domain does not resolve to its host: warn, fail, "
        "or do not check.",
    )


@dataclass(frozen=True)
class TaskTrace:
    """The last time a run of the deployment got as far as starting a task, from the state:
    on which host, in which run (its id and kind, ``run`` or ``teardown``), and whether the
    task ended done (ok or changed). A task that started may have placed something even when
    it did not end done."""

    host: str
    run_id: int
    kind: str
    done: bool


@dataclass(frozen=True)
class Playbook:
    """One deployment, validated and merged: the value plugins build their tasks from.

    ``services`` holds the options of every service a plugin knows, enabled or not;
    ``enabled`` maps each enabled service to the reason it is (``"playbook.toml"``, or
    ``"needed by mastodon"``); ``needs`` maps each service to the services it needs.
    ``sections`` holds the top-level tables contributed by plugins (such as ``acme``), or
    ``None`` when absent. All paths are absolute.
    """

    source: Path
    deployment: DeploymentSection
    hosts: Mapping[str, HostSection]
    services: Mapping[str, ServiceConfig]
    enabled: Mapping[str, str]
    sections: Mapping[str, Section | None]
    initial_user: InitialUserSection | None
    tasks: Mapping[str, UserTaskSection]
    run: RunSection = field(default_factory=RunSection)
    origins: Mapping[tuple[str, ...], Path] = field(default_factory=dict)
    needs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    history: Mapping[str, TaskTrace] = field(default_factory=dict)
    """Task id → its :class:`TaskTrace` in this deployment's earlier runs (``--check`` runs
    left out), filled by the engine from the state when it loads the project; empty when the
    state records none. What :meth:`placed_on` and :meth:`previously_on` read."""
    vars: Mapping[str, Any] = field(default_factory=dict)
    """``[vars]``: the operator's own values (plain data, merged over the inventories')."""

    def __post_init__(self) -> None:
        for name in (
            "hosts",
            "services",
            "enabled",
            "sections",
            "tasks",
            "origins",
            "needs",
            "history",
            "vars",
        ):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def name(self) -> str:
        """The deployment name."""
        return self.deployment.name

    @property
    def domain(self) -> str:
        """The deployment's domain."""
        return self.deployment.domain

    def users_of(self, service: str) -> list[str]:
        """The services (enabled or not) that need ``service`` — garage's apps, sorted."""
        return sorted(name for name, needed in self.needs.items() if service in needed)

    def is_enabled(self, service: str) -> bool:
        """Whether ``service`` is deployed (by the playbook or because another needs it)."""
        return service in self.enabled

    def service_host(self, service: str) -> str:
        """The name of the host ``service`` runs on (its ``host``, or its own name)."""
        return self.services[service].host or service

    def placed_on(self, task_id: str, removed_by: str | None = None) -> str | None:
        """The host on which an earlier run of this deployment started ``task_id`` — so what
        the task places may be there — or ``None``: the state records no such run, a later
        teardown undid the task there, or the clean-up task ``removed_by`` succeeded there
        since. Only ever a host this deployment touched, whatever the hosts are called now."""
        trace = self.history.get(task_id)
        if trace is None or (trace.kind == "teardown" and trace.done):
            return None
        cleanup = self.history.get(removed_by) if removed_by else None
        if (
            cleanup is not None
            and cleanup.done
            and cleanup.host == trace.host
            and cleanup.run_id > trace.run_id
        ):
            return None
        return trace.host

    def previously_on(self, service: str) -> str | None:
        """The host where this deployment placed ``service``'s secrets in an earlier run
        (``<service>.secrets``) and has not removed them since (``<service>.absent``, or a
        teardown), or ``None``: where a switched-off service is cleaned up."""
        return self.placed_on(f"{service}.secrets", removed_by=f"{service}.absent")

    def service_domain(self, service: str) -> str:
        """``<service>.<domain>``."""
        return f"{service}.{self.deployment.domain}"

    def origin(self, *key: str) -> Path:
        """The file the value at ``key`` came from (the playbook, an inventory or a
        configuration file), for error messages."""
        for length in range(len(key), 0, -1):
            found = self.origins.get(tuple(key[:length]))
            if found is not None:
                return found
        return self.source

    def value_at(self, *key: str) -> Any:
        """The validated value at the dotted key ``key`` (``"acme", "ca_file"``), or ``None``
        when a table on the way is absent. A :class:`KeyError` for a key no table declares."""
        tables: dict[str, Any] = {
            "deployment": self.deployment,
            "hosts": self.hosts,
            "services": self.services,
            "initial_user": self.initial_user,
            "tasks": self.tasks,
            "run": self.run,
            "vars": self.vars,
            **self.sections,
        }
        value: Any = tables
        for part in key:
            if value is None:
                return None
            if isinstance(value, Mapping):
                value = value[part]
            elif isinstance(value, BaseModel) and part in type(value).model_fields:
                value = getattr(value, part)
            else:
                raise KeyError(".".join(key))
        return value

    def section(self, name: str) -> Any:
        """A plugin's top-level table (``acme``), or ``None`` when the playbook has none."""
        return self.sections.get(name)

    def template_context(self) -> dict[str, Any]:
        """The values user task templates see: plain data, no secrets."""
        return {
            "deployment": self.deployment.model_dump(),
            "hosts": {n: h.model_dump() for n, h in self.hosts.items()},
            "services": {
                n: {**s.model_dump(), "enabled": n in self.enabled, "host": self.service_host(n)}
                for n, s in self.services.items()
            },
            "initial_user": self.initial_user.model_dump() if self.initial_user else None,
            **{n: (s.model_dump() if s else None) for n, s in self.sections.items()},
            "vars": dict(self.vars),
        }
