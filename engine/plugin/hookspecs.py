"""Every hook a fedi-run plugin can implement, each documented as a contract.

A plugin is a module (or any object) with functions marked by :data:`hookimpl`, registered
through the ``fedi_run`` entry-point group::

    # setup.cfg of a third-party plugin
    [options.entry_points]
    fedi_run =
        matrix = fedi_run_matrix

The entry-point name is the plugin's name: it must be unique among the loaded plugins. Hook
implementations may take any subset of a hook's parameters, by name. A function whose name
starts with ``fedi_run_`` but matches no hook below is an error at load time (misspelt hooks
never pass silently).

The engine calls them through pluggy (``pm.hook``), so ``tryfirst``/``trylast`` and hook
wrappers (``@hookimpl(wrapper=True)``) take effect; ``fedi_run.engine.plugin.manager.Plugins``
is the typed facade the core uses, and attributes every result to the plugin that returned it.
Plugin authors import :data:`hookimpl` and everything else from ``fedi_run.engine.api``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from fedi_run.engine.model.playbook import Playbook
    from fedi_run.engine.model.sections import ConfigSection
    from fedi_run.engine.nixops.nix import NixModule
    from fedi_run.engine.planning.tasks import Task

PROJECT = "fedi_run"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marker for a plugin's hook implementations: ``@hookimpl def fedi_run_tasks(playbook): ...``"""


@hookspec
def fedi_run_config_sections() -> Iterable[ConfigSection]:
    """Declare the playbook tables this plugin owns and the models that validate them.

    Called once per run, before the playbook is read; the results of all plugins are combined
    into one playbook model (and the JSON Schema that ``fedi-run schema`` prints).

    :return: zero or more :class:`~fedi_run.engine.model.sections.ConfigSection` values. A service
        plugin returns one with ``kind="service"`` for its ``[services.<name>]`` table; a
        plugin may also own a top-level table (``kind="table"``, as acme owns ``[acme]``).
        Two plugins declaring one name is an error naming both. The section also declares
        what the engine does for it: a table that may be given in an inventory
        (``in_inventory``), the systemd ``units`` ``fedi-run verify`` checks, the
        ``configuration_key`` of a Fediversity ``configuration.json`` that switches the
        service, and a table's ``ca_file_field`` (two plugins declaring one
        ``configuration_key`` is an error naming both).

    All implementations are called (not ``firstresult``).

    .. versionadded:: 0.1.0
    """


@hookspec
def fedi_run_tasks(playbook: Playbook) -> Iterable[Task]:
    """Contribute tasks to the deployment's graph.

    Called once per run with the validated playbook, after every plugin's sections were
    validated. Return the plugin's tasks for what the playbook enables — nothing for a
    disabled service, but its clean-up where this deployment placed it in an earlier run
    (``playbook.previously_on``, ``playbook.placed_on``: from the state, never from a host's
    name) — with their hosts, dependencies and tags. Tasks may require the tasks of
    other plugins by id (``garage.key.mastodon``); the engine checks every reference, every
    host and the absence of cycles before anything runs, and fills in ``Task.plugin``.

    Plugins never touch the graph itself: they only return values.

    :param playbook: the validated, merged :class:`~fedi_run.engine.model.playbook.Playbook`.
    :return: zero or more :class:`~fedi_run.engine.planning.tasks.Task` values. A task id another
        plugin also returns is an error naming both.

    All implementations are called (not ``firstresult``).

    .. versionadded:: 0.1.0
    """


@hookspec
def fedi_run_nix_modules(playbook: Playbook, host: str) -> Iterable[NixModule]:
    """Contribute this plugin's part of the NixOS configuration of ``host``.

    Called once per host when the NixOps4 deployment is rendered (``.fedi-run/<name>/``), and
    again for a teardown with a playbook whose services are all switched off. Return a module
    for every service of this plugin that runs on ``host`` (enabled or — to switch it off —
    not), nothing when the plugin has nothing on that host. A module refers to secrets by the
    path of their file on the host, never by value: the deployment directory is copied into
    the world-readable Nix store.

    :param playbook: the validated playbook (``playbook.enabled`` says what is on).
    :param host: the name of the ``[hosts]`` entry being rendered.
    :return: zero or more :class:`~fedi_run.engine.nixops.nix.NixModule` values (a name unique
        on the host, and the text of a NixOS module);
        ``fedi_run.engine.nixops.nix.render_template`` renders one from the plugin's own
        ``templates/`` folder, with a ``nix`` filter that writes any value as a Nix literal.

    All implementations are called (not ``firstresult``).

    .. versionadded:: 0.1.0
    """


@hookspec
def fedi_run_nix_data(playbook: Playbook) -> Mapping[str, object]:
    """Contribute plain data to the deployment's ``data.nix``, the one attribute set every
    rendered file reads.

    Called once per rendering (when the task graph is built, and again for a teardown with a
    playbook whose services are all switched off). The returned mapping is merged into
    ``data.nix`` at the top level, after the engine's own keys, in plugin order: the acme plugin
    returns ``{"acme": {"server": ..., "email": ..., "acceptTerms": ...}}`` — or
    ``{"acme": None}`` without an ``[acme]`` table, so the key is always there for the Nix code
    that reads it. Like everything rendered it is copied into the world-readable Nix store:
    name a secret by the path of its file on the host, never by value.

    :param playbook: the validated playbook (``playbook.section(name)`` is the plugin's table).
    :return: a mapping (``None`` counts as empty) from top-level keys to plain data — ``str``,
        ``int``, ``float``, ``bool``, ``None``, lists (or tuples) and dicts with ``str`` keys of
        these. A key the engine writes itself (``schema``, ``deployment``, ``hosts``,
        ``services``, ``initialUser``) or that another plugin returns, or a value that is not
        plain data, is a :class:`~fedi_run.engine.errors.PluginError` naming the plugin(s).

    All implementations are called (not ``firstresult``).

    .. versionadded:: 0.2.0
    """


@hookspec
def fedi_run_secret_generators() -> Mapping[str, Callable[[], str]]:
    """Contribute secret generators: how the secrets this plugin's
    :class:`~fedi_run.engine.planning.operations.Secret` operations name are made.

    Called once per run, when the project is loaded. The engine itself offers only generic
    generators (``hex16``, ``hex32``, ``hex64``, ``alnum32``, ``base64-32``); a format of a
    service's own (the garage plugin's ``garage-key-id``: ``GK`` and 24 hex digits) comes from
    its plugin. Every ``Secret`` of every task is checked against the known generators when
    the project loads, before any host is contacted: an unknown name is an error naming the
    task, its plugin and the known generators.

    A generator runs on the deployer, only when the secret must be written (absent on the
    host, or ``--rotate-secrets``); its value is masked in every output at once and reaches
    the host on stdin, never on a command line, in a log, the state or the Nix store. It must
    use a cryptographically secure source (``secrets``), return a non-empty one-line ``str``
    and have no side effects.

    :return: a mapping (``None`` counts as empty) from generator names (letters, digits and
        ``-``) to functions taking no argument. A name another plugin or the engine also
        offers is a :class:`~fedi_run.engine.errors.PluginError` naming both.

    All implementations are called (not ``firstresult``).

    .. versionadded:: 0.2.0
    """
