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

The engine never calls these through ``pm.hook`` directly: ``engine.plugins.Plugins`` is the
typed facade over them.
"""

from __future__ import annotations

from collections.abc import Iterable
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
        Two plugins declaring one name is an error naming both.

    All implementations are called (not ``firstresult``).

    .. versionadded:: 0.1.0
    """


@hookspec
def fedi_run_tasks(playbook: Playbook) -> Iterable[Task]:
    """Contribute tasks to the deployment's graph.

    Called once per run with the validated playbook, after every plugin's sections were
    validated. Return the plugin's tasks for what the playbook enables — nothing for a
    disabled service — with their hosts, dependencies and tags. Tasks may require the tasks of
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
