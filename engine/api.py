"""The public API for plugin authors: everything a fedi-run plugin imports from the engine.

A plugin imports from this module only (``from fedi_run.engine.api import hookimpl, Task``);
the rest of the engine may change between releases, this module's names do not without a
deprecation. The hooks a plugin implements are documented in ``fedi_run.engine.plugin.hookspecs``
and in docs/plugins.md, which also describes each name below.

What is here, by step of the flow:

* declaring: :data:`hookimpl`, :class:`ConfigSection`, the playbook models (:class:`Section`,
  :class:`ServiceConfig`) and field types (:data:`FilePath`, :data:`Email`, ...), and
  :class:`Playbook`, the validated value every hook receives;
* planning: :class:`Task`, :func:`per_host_id`, and the operations a task is made of
  (:class:`File`, :class:`Directory`, :class:`Secret`, :class:`Command`, :class:`Call`, ...);
* building blocks for services: their secrets directory (one per deployment and service), the
  secrets task, the clean-up when switched off (where this deployment had the service:
  ``Playbook.previously_on``), the initial user and the DNS check
  (``fedi_run.engine.plugin.service_kit``);
* performing: :class:`Context` (what a :class:`Call` function receives), :class:`CallResult`,
  :func:`place_secret_files`, :func:`read_secret_files`, and the private-file helpers;
* NixOps: :class:`NixModule`, :func:`render_template`, :func:`service_modules`, :func:`to_nix`;
* errors: :class:`FediRunError`, :class:`ActionFailed`, :class:`PlaybookError`,
  :class:`Problem`.
"""

from __future__ import annotations

from fedi_run.engine.errors import ActionFailed, FediRunError, PlaybookError, Problem
from fedi_run.engine.execute.context import CallResult, Context
from fedi_run.engine.execute.secret_files import place_secret_files, read_secret_files
from fedi_run.engine.model.playbook import (
    DnsName,
    Email,
    FilePath,
    HttpsUrl,
    PlainName,
    Playbook,
    PosixUser,
    Section,
    ServiceConfig,
)
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.nixops.nix import NixModule, render_template, runs_on, service_modules, to_nix
from fedi_run.engine.planning.operations import (
    Call,
    Command,
    Directory,
    Fetch,
    File,
    Operation,
    Restore,
    Secret,
    Template,
    undo_of,
)
from fedi_run.engine.planning.tasks import Task, per_host_id
from fedi_run.engine.plugin.hookspecs import hookimpl
from fedi_run.engine.plugin.service_kit import (
    HOST_ROOT,
    SecretSpec,
    absent_task,
    dns_task,
    initial_user_file,
    initial_user_task,
    secret_tasks,
    secrets_dir,
    secrets_root,
    secrets_root_actions,
)
from fedi_run.engine.private_files import make_private_dirs, write_atomically

__all__ = [
    "ActionFailed",
    "Call",
    "CallResult",
    "Command",
    "ConfigSection",
    "Context",
    "Directory",
    "DnsName",
    "Email",
    "FediRunError",
    "Fetch",
    "File",
    "FilePath",
    "HOST_ROOT",
    "HttpsUrl",
    "NixModule",
    "Operation",
    "PlainName",
    "Playbook",
    "PlaybookError",
    "PosixUser",
    "Problem",
    "Restore",
    "Secret",
    "SecretSpec",
    "Section",
    "ServiceConfig",
    "Task",
    "Template",
    "absent_task",
    "dns_task",
    "hookimpl",
    "initial_user_file",
    "initial_user_task",
    "make_private_dirs",
    "per_host_id",
    "place_secret_files",
    "read_secret_files",
    "render_template",
    "runs_on",
    "secret_tasks",
    "secrets_dir",
    "secrets_root",
    "secrets_root_actions",
    "service_modules",
    "to_nix",
    "undo_of",
    "write_atomically",
]
