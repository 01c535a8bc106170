"""Loading plugins, and the typed facade through which the engine calls their hooks.

Plugins come from the ``fedi_run`` entry-point group (the five built-in ones too, exactly as a
third party's) and from ``--plugin MODULE``. ``FEDI_RUN_DISABLE_PLUGINS=a,b`` blocks plugins
by name before they are imported. Two plugins with one name, a hook implementation with no
matching hook, or a plugin that fails to import is a :class:`PluginError` naming the plugin and
where it came from.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

from fedi_run.engine.errors import PluginError
from fedi_run.engine.model.validators import did_you_mean
from fedi_run.engine.plugin import hookspecs

if TYPE_CHECKING:
    from fedi_run.engine.model.playbook import Playbook
    from fedi_run.engine.model.sections import ConfigSection
    from fedi_run.engine.nixops.nix import NixModule
    from fedi_run.engine.planning.tasks import Task

ENTRY_POINT_GROUP = "fedi_run"
DISABLE_ENV = "FEDI_RUN_DISABLE_PLUGINS"
BUILT_IN_DISTRIBUTION = "fedi-run"


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its name, version and where it came from."""

    name: str
    version: str
    origin: str
    module: str

    @property
    def built_in(self) -> bool:
        """Whether the plugin ships with fedi-run itself."""
        return self.origin == "built in"


@dataclass(frozen=True)
class _Candidate:
    name: str
    origin: str
    version: str
    load: object  # () -> module


def disabled_from_environment(
    environ: os._Environ[str] | dict[str, str] = os.environ,
) -> frozenset[str]:
    """The plugin names listed in ``FEDI_RUN_DISABLE_PLUGINS`` (comma separated)."""
    raw = environ.get(DISABLE_ENV, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _entry_point_candidates() -> list[_Candidate]:
    candidates = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else "unknown distribution"
        version = dist.version if dist is not None else "unknown"
        if dist_name == BUILT_IN_DISTRIBUTION:
            origin = "built in"
        else:
            origin = f"distribution {dist_name} {version}"
        candidates.append(_Candidate(ep.name, origin, version, ep.load))
    return candidates


def _module_candidate(module_name: str) -> _Candidate:
    def load() -> ModuleType:
        return importlib.import_module(module_name)

    try:
        module = load()
    except Exception as error:  # noqa: BLE001 - any import failure is the plugin's
        raise PluginError(
            f"error: --plugin {module_name}: cannot import it: {type(error).__name__}: {error}"
        ) from None
    name = getattr(module, "PLUGIN_NAME", module_name.rsplit(".", 1)[-1])
    version = str(getattr(module, "__version__", "unknown"))
    return _Candidate(name, f"module {module_name} (--plugin)", version, lambda: module)


def _check_hook_names(plugin: object, candidate: _Candidate) -> None:
    """Every ``fedi_run_*`` callable must be a marked implementation of a known hook."""
    known = {name for name in dir(hookspecs) if name.startswith("fedi_run_")}
    for name in dir(plugin):
        if not name.startswith("fedi_run_") or not callable(getattr(plugin, name)):
            continue
        if name not in known:
            hint = did_you_mean(name, known)
            raise PluginError(
                f"error: plugin {candidate.name!r} ({candidate.origin}) defines {name}, which is "
                f"not a fedi-run hook{hint}; the hooks are: {', '.join(sorted(known))}"
            )
        if not hasattr(getattr(plugin, name), "fedi_run_impl"):
            raise PluginError(
                f"error: plugin {candidate.name!r} ({candidate.origin}) defines {name} without "
                "the @hookimpl marker (from fedi_run.engine.plugin.hookspecs import hookimpl), "
                "so it would never be called"
            )


class Plugins:
    """The loaded plugins and a typed call for each hook.

    Build it with :meth:`load`. The hook calls attribute every result to the plugin that
    returned it, so clashes name both sides.
    """

    def __init__(self, manager: pluggy.PluginManager, infos: Sequence[PluginInfo]):
        self._manager = manager
        self.infos: tuple[PluginInfo, ...] = tuple(infos)

    @classmethod
    def load(
        cls,
        modules: Iterable[str] = (),
        disabled: Iterable[str] | None = None,
        objects: Iterable[tuple[str, object]] = (),
    ) -> Plugins:
        """Load the entry-point plugins, then ``modules`` (``--plugin``), then ``objects``
        (``(name, plugin)`` pairs, for tests and embedding), skipping ``disabled`` names
        (default: ``FEDI_RUN_DISABLE_PLUGINS``)."""
        blocked = disabled_from_environment() if disabled is None else frozenset(disabled)
        candidates = _entry_point_candidates()
        candidates += [_module_candidate(m) for m in modules]
        candidates += [
            _Candidate(n, "registered object", "unknown", lambda o=o: o) for n, o in objects
        ]
        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        seen: dict[str, _Candidate] = {}
        infos = []
        for candidate in candidates:
            if candidate.name in blocked:
                continue
            if candidate.name in seen:
                raise PluginError(
                    f"error: two plugins are named {candidate.name!r}: one from "
                    f"{seen[candidate.name].origin}, one from {candidate.origin}. Uninstall one, "
                    f"or block it with {DISABLE_ENV}={candidate.name} (which blocks both)."
                )
            seen[candidate.name] = candidate
            try:
                plugin = candidate.load()  # type: ignore[operator]
            except Exception as error:  # noqa: BLE001
                raise PluginError(
                    f"error: plugin {candidate.name!r} ({candidate.origin}) failed to import: "
                    f"{type(error).__name__}: {error}"
                ) from None
            _check_hook_names(plugin, candidate)
            try:
                manager.register(plugin, name=candidate.name)
            except pluggy.PluginValidationError as error:
                raise PluginError(
                    f"error: plugin {candidate.name!r} ({candidate.origin}) is invalid: {error}"
                ) from None
            module = getattr(plugin, "__name__", type(plugin).__name__)
            infos.append(PluginInfo(candidate.name, candidate.version, candidate.origin, module))
        try:
            manager.check_pending()
        except pluggy.PluginValidationError as error:
            raise PluginError(
                f"error: plugin {error.plugin_name()!r} implements a hook that does not exist "
                f"({error}); see engine/plugin/hookspecs.py for the hooks"
            ) from None
        return cls(manager, infos)

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the loaded plugins, in load order."""
        return tuple(info.name for info in self.infos)

    def _each(self, hook_name: str, **kwargs: object) -> list[tuple[str, object]]:
        """Call every implementation of ``hook_name``; ``(plugin name, result)`` pairs."""
        caller = getattr(self._manager.hook, hook_name)
        results = []
        for impl in caller.get_hookimpls():  # in registration order
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                result = impl.function(**args)
            except Exception as error:  # noqa: BLE001 - a plugin bug, reported as such
                from fedi_run.engine.errors import FediRunError

                if isinstance(error, FediRunError):
                    raise
                raise PluginError(
                    f"error: plugin {impl.plugin_name!r} failed in {hook_name}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            results.append((impl.plugin_name, result))
        return results

    def config_sections(self) -> list[tuple[str, ConfigSection]]:
        """Every plugin's :class:`ConfigSection`, as ``(plugin, section)``; names unique."""
        from fedi_run.engine.model.sections import ConfigSection

        owners: dict[str, str] = {}
        sections = []
        for plugin, result in self._each("fedi_run_config_sections"):
            for section in result or ():
                if not isinstance(section, ConfigSection):
                    raise PluginError(
                        f"error: plugin {plugin!r}: fedi_run_config_sections returned "
                        f"{section!r}, expected ConfigSection values"
                    )
                if section.name in owners:
                    raise PluginError(
                        f"error: plugins {owners[section.name]!r} and {plugin!r} both declare the "
                        f"playbook section {section.name!r}"
                    )
                owners[section.name] = plugin
                sections.append((plugin, section))
        return sections

    def nix_modules(self, playbook: Playbook, host: str) -> list[tuple[str, NixModule]]:
        """Every plugin's NixOS modules for ``host``, as ``(plugin, module)``; names unique on
        the host."""
        from fedi_run.engine.nixops.nix import collect_modules

        return collect_modules(
            host, self._each("fedi_run_nix_modules", playbook=playbook, host=host)
        )

    def tasks(self, playbook: Playbook) -> list[Task]:
        """Every plugin's tasks for ``playbook``, each with ``plugin`` filled in."""
        from fedi_run.engine.planning.tasks import Task

        tasks = []
        for plugin, result in self._each("fedi_run_tasks", playbook=playbook):
            for task in result or ():
                if not isinstance(task, Task):
                    raise PluginError(
                        f"error: plugin {plugin!r}: fedi_run_tasks returned {task!r}, "
                        "expected Task values"
                    )
                tasks.append(replace(task, plugin=plugin))
        return tasks
