"""Loading plugins, and the typed facade through which the engine calls their hooks.

Plugins come from the ``fedi_run`` entry-point group (the five built-in ones too, exactly as a
third party's) and from ``--plugin MODULE``. ``FEDI_RUN_DISABLE_PLUGINS=a,b`` blocks plugins
by name before they are imported. Two plugins with one name, a hook implementation with no
matching hook, or a plugin that fails to import is a :class:`PluginError` naming the plugin and
where it came from.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from fedi_run.engine.errors import FediRunError, PluginError
from fedi_run.engine.model.validators import did_you_mean
from fedi_run.engine.plugin import hookspecs

if TYPE_CHECKING:
    from fedi_run.engine.model.playbook import Playbook
    from fedi_run.engine.model.sections import ConfigSection
    from fedi_run.engine.nixops.nix import NixModule
    from fedi_run.engine.planning.tasks import Task

ENTRY_POINT_GROUP = "fedi_run"
GENERATOR_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
"""A secret generator's name: lower-case letters, digits and ``-`` (``hex32``)."""
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
    parsed: dict[object, tuple[str, str]] = {}  # a distribution's METADATA, read once
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        if dist is None:
            dist_name, version = "unknown distribution", "unknown"
        else:
            key = getattr(dist, "_path", id(dist))
            if key not in parsed:
                found = dist.metadata
                parsed[key] = (found["Name"], found["Version"])
            dist_name, version = parsed[key]
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
                "the @hookimpl marker (from fedi_run.engine.api import hookimpl), so it would "
                "never be called"
            )


_COLLECTED: contextvars.ContextVar[list[tuple[str, object]]] = contextvars.ContextVar(
    "fedi_run_hook_results"
)
"""The ``(plugin, result)`` pairs of the hook call in progress (see :meth:`Plugins._each`)."""


def _attribute_results(manager: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Wrap each plain hook implementation of ``plugin`` so that its result is recorded with
    the plugin's name, and an unexpected exception becomes a :class:`PluginError` naming it.
    Hook wrappers are left as they are."""
    for caller in manager.get_hookcallers(plugin) or ():
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin or impl.hookwrapper or impl.wrapper:
                continue
            impl.function = _recording(impl.function, name, caller.name)


def _recording(function, plugin: str, hook_name: str):
    """``function`` (called by pluggy with positional arguments), recording its result."""

    @functools.wraps(function)
    def call(*args):
        try:
            result = function(*args)
        except FediRunError:
            raise
        except Exception as error:  # noqa: BLE001 - a plugin bug, reported as such
            raise PluginError(
                f"error: plugin {plugin!r} failed in {hook_name}: {type(error).__name__}: {error}"
            ) from error
        collected = _COLLECTED.get(None)
        if collected is not None:
            collected.append((plugin, result))
        return result

    return call


def _wrapper_names(manager: pluggy.PluginManager, hook_name: str) -> str:
    """The names of the plugins with a hook wrapper around ``hook_name`` (for attribution)."""
    impls = getattr(manager.hook, hook_name).get_hookimpls()
    names = [impl.plugin_name for impl in impls if impl.hookwrapper or impl.wrapper]
    return ", ".join(names) or "a hook wrapper"


def _not_plain_data(value: object, where: str) -> str | None:
    """Why ``value`` (at ``where``) is not plain data for ``data.nix``; None when it is."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _not_plain_data(item, f"{where}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r}, which is not a str"
            problem = _not_plain_data(item, f"{where}.{key}")
            if problem:
                return problem
        return None
    return f"{where} is a {type(value).__name__}"


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
        loaded: list[tuple[str, object]] = []
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
            loaded.append((candidate.name, plugin))
            module = getattr(plugin, "__name__", type(plugin).__name__)
            infos.append(PluginInfo(candidate.name, candidate.version, candidate.origin, module))
        # pluggy calls the implementations registered last first: registered in reverse, the
        # plugins are called in load order (tryfirst/trylast and wrappers still take effect).
        for name, plugin in reversed(loaded):
            try:
                manager.register(plugin, name=name)
            except pluggy.PluginValidationError as error:
                origin = seen[name].origin
                raise PluginError(
                    f"error: plugin {name!r} ({origin}) is invalid: {error}"
                ) from None
            _attribute_results(manager, plugin, name)
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
        """Call ``hook_name`` through pluggy — so ``tryfirst``, ``trylast`` and hook wrappers
        take effect — and return its results in call order as ``(plugin name, result)``
        pairs. A result a hook wrapper put in place of a plugin's is attributed to the
        wrapper's plugin."""
        collected: list[tuple[str, object]] = []
        token = _COLLECTED.set(collected)
        try:
            results = getattr(self._manager.hook, hook_name)(**kwargs)
        finally:
            _COLLECTED.reset(token)
        owners = {id(result): plugin for plugin, result in collected}
        wrapper = _wrapper_names(self._manager, hook_name)
        return [(owners.get(id(result), wrapper), result) for result in results]

    def config_sections(self) -> list[tuple[str, ConfigSection]]:
        """Every plugin's :class:`ConfigSection`, as ``(plugin, section)``; names unique."""
        from fedi_run.engine.model.configuration_json import CORE_KEYS
        from fedi_run.engine.model.sections import ConfigSection

        owners: dict[str, str] = {}
        keys: dict[str, str] = {}
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
                key = section.configuration_key
                if key in CORE_KEYS:
                    raise PluginError(
                        f"error: plugin {plugin!r}: section {section.name!r} declares the "
                        f"configuration.json key {key!r}, which fedi-run reads itself"
                    )
                if key in keys:
                    raise PluginError(
                        f"error: plugins {keys[key]!r} and {plugin!r} both declare the "
                        f"configuration.json key {key!r}"
                    )
                if key is not None:
                    keys[key] = plugin
                owners[section.name] = plugin
                sections.append((plugin, section))
        return sections

    def nix_data(self, playbook: Playbook, reserved: Collection[str] = ()) -> dict[str, Any]:
        """Every plugin's data for ``data.nix`` (hook ``fedi_run_nix_data``), merged in plugin
        order. A key in ``reserved`` (the engine's own) or returned by two plugins, a key that
        is not a ``str``, or a value that is not plain data is a :class:`PluginError` naming
        the plugin(s)."""
        owners: dict[str, str] = {}
        merged: dict[str, Any] = {}
        for plugin, result in self._each("fedi_run_nix_data", playbook=playbook):
            if result is None:
                continue
            if not isinstance(result, Mapping):
                raise PluginError(
                    f"error: plugin {plugin!r}: fedi_run_nix_data returned {result!r}, expected "
                    "a mapping of top-level keys to plain data"
                )
            for key, value in result.items():
                if not isinstance(key, str) or not key:
                    raise PluginError(
                        f"error: plugin {plugin!r}: fedi_run_nix_data returned the key {key!r}, "
                        "expected a non-empty str"
                    )
                if key in reserved:
                    raise PluginError(
                        f"error: plugin {plugin!r}: fedi_run_nix_data returned the key {key!r}, "
                        f"which data.nix holds for fedi-run itself (its own keys: "
                        f"{', '.join(reserved)})"
                    )
                if key in owners:
                    raise PluginError(
                        f"error: plugins {owners[key]!r} and {plugin!r} both return the data.nix "
                        f"key {key!r} (hook fedi_run_nix_data)"
                    )
                problem = _not_plain_data(value, key)
                if problem:
                    raise PluginError(
                        f"error: plugin {plugin!r}: fedi_run_nix_data: {problem}; expected "
                        "plain data (str, int, float, bool, None, lists and dicts with str keys)"
                    )
                owners[key] = plugin
                merged[key] = value
        return merged

    def secret_generators(
        self, built_in: Mapping[str, Callable[[], str]] = {}
    ) -> tuple[dict[str, Callable[[], str]], dict[str, str]]:
        """The ``built_in`` generators and every plugin's (hook ``fedi_run_secret_generators``):
        ``(name → generator, name → who offers it)`` — ``"fedi-run"`` for a built-in one. A name
        offered twice, a name that is not lower-case letters, digits and ``-``, or a value that
        is not callable is a :class:`PluginError` naming the plugin(s)."""
        generators = dict(built_in)
        owners = dict.fromkeys(built_in, "fedi-run")
        for plugin, result in self._each("fedi_run_secret_generators"):
            if result is None:
                continue
            if not isinstance(result, Mapping):
                raise PluginError(
                    f"error: plugin {plugin!r}: fedi_run_secret_generators returned {result!r}, "
                    "expected a mapping of generator names to functions"
                )
            for name, generator in result.items():
                if not isinstance(name, str) or not GENERATOR_NAME.fullmatch(name):
                    raise PluginError(
                        f"error: plugin {plugin!r}: fedi_run_secret_generators returned the name "
                        f"{name!r}, expected lower-case letters, digits and '-'"
                    )
                if name in owners:
                    first = owners[name]
                    first = "fedi-run itself" if first == "fedi-run" else f"plugin {first!r}"
                    raise PluginError(
                        f"error: plugin {plugin!r} offers the secret generator {name!r}, which "
                        f"{first} offers too; rename one"
                    )
                if not callable(generator):
                    raise PluginError(
                        f"error: plugin {plugin!r}: the secret generator {name!r} is "
                        f"{generator!r}, expected a function taking no argument"
                    )
                generators[name] = generator
                owners[name] = plugin
        return generators, owners

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
                _check_reads(plugin, task, playbook)
                tasks.append(replace(task, plugin=plugin))
        return tasks


def _check_reads(plugin: str, task: Task, playbook: Playbook) -> None:
    """Every key ``task`` says it reads (``Task.reads``) names a playbook value."""
    for dotted in task.reads:
        try:
            playbook.value_at(*dotted.split("."))
        except (KeyError, TypeError):
            raise PluginError(
                f"error: plugin {plugin!r}: task {task.id} reads {dotted!r}, which names no "
                "value of the playbook; expected a dotted key such as 'initial_user.password_file'"
            ) from None
