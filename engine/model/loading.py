"""Reading a playbook, its inventories and a Fediversity configuration into a :class:`Playbook`.

The contract of :func:`load_playbook`: it either returns a fully validated, merged
:class:`~fedi_run.engine.model.playbook.Playbook`, or raises one
:class:`~fedi_run.engine.errors.PlaybookError` carrying *every* problem found, each naming the
file the value came from, its key path, what was found and what was expected.
:func:`load_partial` is the same reading that keeps the valid parts beside the problems
(:class:`PartialPlaybook`), so that the project checks the rest in the same pass.

Merging: each inventory (``-i``, in order) may hold only ``[hosts.*]``, ``[vars]`` and the plugin
tables declared for inventories (``ConfigSection.in_inventory``, such as ``[acme]``); its tables are
merged key by key over the playbook's. A configuration file (``--configuration``) is read
last, with the keys the service plugins declare (``ConfigSection.configuration_key``). Relative
paths are resolved against the directory of the file that names them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from fedi_run.engine.errors import PlaybookError, Problem
from fedi_run.engine.model import configuration_json as configuration
from fedi_run.engine.model import pydantic_problems as describe
from fedi_run.engine.model.playbook import (
    VARS,
    DeploymentSection,
    HostSection,
    InitialUserSection,
    PathMarker,
    Playbook,
    RunSection,
    Section,
    ServiceConfig,
    UserTaskSection,
)
from fedi_run.engine.model.sections import ConfigSection
from fedi_run.engine.model.validators import (
    check_host_name,
    check_plain_name,
    did_you_mean,
    is_url,
    nesting_message,
    too_deep,
)

Key = tuple[str, ...]
CORE_TABLES: dict[str, type[Section]] = {
    "deployment": DeploymentSection,
    "initial_user": InitialUserSection,
    "run": RunSection,
}
NAMED_TABLES: dict[str, type[Section]] = {"hosts": HostSection, "tasks": UserTaskSection}
INVENTORY_HOSTS = "hosts"
"""The engine's own table an inventory may hold; plugins declare theirs
(:func:`inventory_tables`)."""
VARS_TABLE = "vars"
"""``[vars]``: the operator's own values, free-form; an inventory may hold it too."""


def inventory_tables(sections: Iterable[ConfigSection]) -> tuple[str, ...]:
    """The tables an inventory may hold: ``[hosts.*]`` and every plugin table declared
    ``in_inventory``, sorted."""
    declared = sorted(s.name for s in sections if s.kind == "table" and s.in_inventory)
    return (INVENTORY_HOSTS, VARS_TABLE, *declared)


def inventory_message(tables: Sequence[str]) -> str:
    """What an inventory holding another table is told: ``an inventory may hold only
    [hosts.*] and [acme] tables`` (with the tables of :func:`inventory_tables`)."""
    names = [f"[{INVENTORY_HOSTS}.*]", *(f"[{t}]" for t in tables if t != INVENTORY_HOSTS)]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"an inventory may hold only {listed} tables"


def read_toml(path: Path) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Parse the TOML file ``path``; ``(document, [])`` or ``(None, [the problem])`` — a
    document nested deeper than :data:`~fedi_run.engine.model.validators.MAX_DEPTH` is one."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return None, [Problem(path, "", f"cannot read the file: {error.strerror or error}")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, [
            Problem(path, "", f"not valid UTF-8 (byte {error.start}); expected a UTF-8 TOML file")
        ]
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return None, [Problem(path, "", f"not valid TOML: {error}")]
    except RecursionError:
        return None, [Problem(path, "", "not valid TOML: nested too deeply")]
    deep = too_deep(document)  # dotted keys nest without limit, and nothing after recurses
    if deep is not None:
        return None, [Problem(path, describe.dotted(deep[:1]), nesting_message(deep))]
    return document, []


class _Merged:
    """The merged document and, for every table and value, the file it came from."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origins: dict[Key, Path] = {}

    def merge(self, document: Mapping[str, Any], source: Path, prefix: Key = ()) -> None:
        target = self.data
        for part in prefix:
            target = target.setdefault(part, {})
        self.origins.setdefault(prefix, source)
        for key, value in document.items():
            here = prefix + (key,)
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                self.merge(value, source, here)
            else:
                target[key] = value
                self._forget_below(here)
                self.origins[here] = source

    def _forget_below(self, key: Key) -> None:
        for known in [k for k in self.origins if k[: len(key)] == key and len(k) > len(key)]:
            del self.origins[known]

    def origin(self, key: Key) -> Path:
        for length in range(len(key), -1, -1):
            if key[:length] in self.origins:
                return self.origins[key[:length]]
        raise KeyError(key)  # pragma: no cover - the root always has an origin


@functools.cache
def _path_fields(model: type[BaseModel]) -> frozenset[str]:
    """Names of ``model``'s fields declared as :data:`~fedi_run.engine.model.playbook.FilePath`."""

    def marked(annotation: Any) -> bool:
        if typing.get_origin(annotation) is typing.Annotated:
            if any(isinstance(m, PathMarker) for m in annotation.__metadata__):
                return True
        return any(marked(arg) for arg in typing.get_args(annotation))

    return frozenset(
        name
        for name, field in model.model_fields.items()
        if marked(field.annotation) or any(isinstance(m, PathMarker) for m in field.metadata)
    )


def _resolve_paths(table: Any, model: type[BaseModel], key: Key, merged: _Merged) -> None:
    """Make the relative paths in ``table`` absolute, relative to the file each came from."""
    if not isinstance(table, dict):
        return
    for name in _path_fields(model):
        value = table.get(name)
        base = None if value is None else merged.origin(key + (name,)).parent
        if name in _path_sequences(model):
            if isinstance(value, list):  # each path of an array; anything else: the model says
                table[name] = [_absolute(item, base) for item in value]
        elif isinstance(value, str) and value:
            table[name] = _absolute(value, base)
    for name, nested in _nested_models(model).items():
        _resolve_paths(table.get(name), nested, key + (name,), merged)


def _absolute(value: Any, base: Path) -> Any:
    """A path string made absolute against ``base`` (``~`` expanded); a URL (``[run] state =
    "postgresql://…"``) or another value as it is."""
    if not isinstance(value, str) or not value or is_url(value):
        return value
    expanded = os.path.expanduser(value)
    if not os.path.isabs(expanded):
        expanded = os.path.normpath(os.path.join(base.absolute(), expanded))
    return expanded


@functools.cache
def _path_sequences(model: type[BaseModel]) -> frozenset[str]:
    """The path fields of ``model`` that hold an array of paths (``[run] inventory``)."""
    return frozenset(
        name
        for name in _path_fields(model)
        if typing.get_origin(model.model_fields[name].annotation) is tuple
    )


@functools.cache
def _nested_models(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The fields of ``model`` that hold a table validated by another model."""
    nested = {}
    for name, field in model.model_fields.items():
        for candidate in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                nested[name] = candidate
    return nested


def _freeze(value: Any) -> Any:
    """Lists become tuples (the models are immutable and strict)."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


class _Validator:
    """Validates one table at a time so that one bad table never hides another's problems."""

    def __init__(self, merged: _Merged):
        self.merged = merged
        self.problems: list[Problem] = []
        self.keys: list[Key] = []

    def problem(self, key: Key, message: str) -> None:
        self.problems.append(Problem(self.merged.origin(key), describe.dotted(key), message))
        self.keys.append(key)

    def table(self, model: type[Section], value: Any, key: Key) -> Section | None:
        if not isinstance(value, dict):
            self.problem(key, f"found {describe.found(value)}, expected a table")
            return None
        _resolve_paths(value, model, key, self.merged)
        try:
            return model.model_validate(_freeze(value))
        except ValidationError as error:
            for item in error.errors():
                loc = key + tuple(str(part) for part in item["loc"] if part != "[key]")
                self.problem(loc, describe.message(item, model, item["loc"]))
            return None

    def free_table(self, adapter: TypeAdapter, value: Any, key: Key) -> Mapping[str, Any]:
        """A table of free keys (``[vars]``) validated by ``adapter``; ``{}`` when it has
        problems."""
        if not isinstance(value, dict):
            self.problem(key, f"found {describe.found(value)}, expected a table")
            return {}
        try:
            return adapter.validate_python(_freeze(value))
        except ValidationError as error:
            for item in error.errors():
                loc = key + tuple(str(part) for part in item["loc"] if part != "[key]")
                self.problem(loc, describe.message(item, Section, item["loc"]))
            return {}

    def named_tables(
        self, model: type[Section], value: Any, key: Key, check_name=check_plain_name
    ) -> dict[str, Section]:
        if not isinstance(value, dict):
            self.problem(key, f"found {describe.found(value)}, expected a table of tables")
            return {}
        result = {}
        for name, table in value.items():
            try:
                check_name(name)
            except ValueError as error:
                self.problem(key + (name,), f"{name!r} is not a valid name: {error}")
                continue
            validated = self.table(model, table, key + (name,))
            if validated is not None:
                result[name] = validated
        return result


@dataclasses.dataclass(frozen=True)
class PartialPlaybook:
    """What :func:`load_partial` makes of the files, problems or not.

    ``playbook`` holds the valid parts (None: nothing to check further — a file could not be
    read, or is not TOML): a table with problems of its own is left out (a ``[tasks.<name>]``,
    a ``[hosts.<name>]`` and the tasks on it, a service's options) or, for a table there must
    be (``[deployment]``), stands in with its text values. ``broken`` names those tables
    (``("tasks", "x")``, ``("deployment",)``); ``complete`` is True when only the operator's
    tables (``[tasks.*]``, ``[vars]``, an unknown table) are broken, so that the plugins can
    build their tasks from ``playbook``.
    """

    playbook: Playbook | None
    problems: tuple[Problem, ...]
    broken: frozenset[Key] = frozenset()
    complete: bool = True


def load_playbook(
    path: Path,
    sections: Sequence[ConfigSection],
    inventories: Iterable[Path] = (),
    configuration_file: Path | None = None,
    disabled_plugins: Iterable[str] = (),
) -> Playbook:
    """Read, merge and validate; see the module docstring for the contract."""
    partial = load_partial(path, sections, inventories, configuration_file, disabled_plugins)
    if partial.problems:
        raise PlaybookError(partial.problems)
    assert partial.playbook is not None
    return partial.playbook


def load_partial(
    path: Path,
    sections: Sequence[ConfigSection],
    inventories: Iterable[Path] = (),
    configuration_file: Path | None = None,
    disabled_plugins: Iterable[str] = (),
) -> PartialPlaybook:
    """Read, merge and validate, keeping what is valid beside every problem found (see
    :class:`PartialPlaybook`): what the project checks further in the same pass."""
    path = Path(path)
    problems: list[Problem] = []
    merged = _Merged()
    document, found = read_toml(path)
    problems += found
    if document is not None:
        merged.merge(document, path)
    allowed = inventory_tables(sections)
    for inventory in inventories:
        inventory = Path(inventory)
        document, found = read_toml(inventory)
        problems += found
        if document is None:
            continue
        for table, value in document.items():
            if table not in allowed:
                problems.append(Problem(inventory, table, inventory_message(allowed)))
            elif not isinstance(value, dict):
                problems.append(
                    Problem(inventory, table, f"found {describe.found(value)}, expected a table")
                )
            else:
                merged.merge({table: value}, inventory)
    if configuration_file is not None:
        keys = {s.configuration_key: s.name for s in sections if s.configuration_key}
        document, found = configuration.read(Path(configuration_file), keys)
        problems += found
        if document is not None:
            merged.merge(document, Path(configuration_file))
    if problems:
        return PartialPlaybook(None, tuple(problems))
    return _validate(path, merged, sections, frozenset(disabled_plugins))


def _validate(
    path: Path, merged: _Merged, sections: Sequence[ConfigSection], disabled: frozenset[str]
) -> PartialPlaybook:
    check = _Validator(merged)
    data = merged.data
    services = {s.name: s for s in sections if s.kind == "service"}
    tables = {s.name: s for s in sections if s.kind == "table"}
    known = [*CORE_TABLES, *NAMED_TABLES, "services", VARS_TABLE, *tables]
    for key in data:
        if key not in known:
            hint = _disabled_hint(key, disabled) or did_you_mean(key, known)
            check.problem((key,), f"unknown table{hint}; expected one of: {', '.join(known)}")
    values: dict[str, Any] = {}
    if "deployment" not in data:
        check.problem(
            ("deployment",), "missing; expected a [deployment] table with name and domain"
        )
    for name, model in CORE_TABLES.items():
        if name in data:
            values[name] = check.table(model, data[name], (name,))
    values["hosts"] = check.named_tables(
        HostSection, data.get("hosts", {}), ("hosts",), check_name=check_host_name
    )
    values["tasks"] = check.named_tables(UserTaskSection, data.get("tasks", {}), ("tasks",))
    values[VARS_TABLE] = check.free_table(VARS, data.get(VARS_TABLE, {}), (VARS_TABLE,))
    service_values: dict[str, ServiceConfig] = {}
    raw_services = data.get("services", {})
    if not isinstance(raw_services, dict):
        check.problem(
            ("services",), f"found {describe.found(raw_services)}, expected a table of tables"
        )
        raw_services = {}
    for name, raw in raw_services.items():
        if name not in services:
            hint = _disabled_hint(name, disabled) or did_you_mean(name, services)
            check.problem(
                ("services", name),
                f"unknown service{hint}; known services: {', '.join(sorted(services)) or 'none'}",
            )
            continue
        validated = check.table(services[name].model, raw, ("services", name))
        if validated is not None:
            service_values[name] = validated  # type: ignore[assignment]
    for name, section in services.items():
        if name not in raw_services:
            service_values[name] = section.model()  # type: ignore[assignment]
    table_values = {
        name: (check.table(section.model, data[name], (name,)) if name in data else None)
        for name, section in tables.items()
    }
    enabled = _enabled(service_values, services, merged)
    hosts = values["hosts"]
    raw_hosts = data.get("hosts", {}) if isinstance(data.get("hosts"), dict) else {}
    for service, reason in sorted(enabled.items(), key=lambda item: item[1].startswith("needed")):
        config = service_values[service]
        host = config.host or service
        if host not in hosts and host not in raw_hosts:
            where = ("services", service, "host") if config.host else ("services", service)
            check.problem(
                where,
                f"service {service!r} ({reason}) runs on host {host!r}, which is not defined; "
                f"expected one of the [hosts] tables: {', '.join(raw_hosts) or 'none'}"
                f"{did_you_mean(host, raw_hosts)}",
            )
    for name, task in values["tasks"].items():
        for index, host in enumerate([task.host] if task.host else task.hosts or ()):
            if host not in raw_hosts:
                key = ("tasks", name, "host") if task.host else ("tasks", name, "hosts", str(index))
                check.problem(
                    key,
                    f"found {host!r}, expected a host defined under [hosts]"
                    f"{did_you_mean(host, raw_hosts)}",
                )
    broken = {_table_of(key) for key in check.keys}
    for name, task in list(values["tasks"].items()):  # on a host left out: left out too
        if any(host not in hosts for host in ([task.host] if task.host else task.hosts or ())):
            broken.add(("tasks", name))
            del values["tasks"][name]
    deployment = values.get("deployment")
    if deployment is None:
        raw = data.get("deployment") if isinstance(data.get("deployment"), dict) else {}
        deployment = DeploymentSection.model_construct(
            **{k: raw[k] if isinstance(raw.get(k), str) else "" for k in ("name", "domain")}
        )
    playbook = Playbook(
        source=path,
        deployment=deployment,
        hosts=hosts,
        services=service_values,
        enabled=enabled,
        sections=table_values,
        initial_user=values.get("initial_user"),
        tasks=values["tasks"],
        run=values.get("run") or RunSection(),
        vars=values[VARS_TABLE],
        origins=merged.origins,
        needs={name: section.needs for name, section in services.items()},
    )
    operators = {"tasks", VARS_TABLE}
    complete = all(key[0] in operators or key[0] not in known for key in broken)
    return PartialPlaybook(playbook, tuple(check.problems), frozenset(broken), complete)


def _table_of(key: Key) -> Key:
    """The table a problem's key is in: ``("tasks", "x")`` for ``tasks.x.run``."""
    return key[:2] if key[0] in (*NAMED_TABLES, "services") and len(key) > 1 else key[:1]


def _enabled(
    values: Mapping[str, ServiceConfig], sections: Mapping[str, ConfigSection], merged: _Merged
) -> dict[str, str]:
    """Each enabled service and why: the file that enables it, or the service that needs it."""
    enabled = {
        name: f"enabled in {merged.origin(('services', name, 'enable')).name}"
        for name, config in values.items()
        if config.enable
    }
    needed_by: dict[str, list[str]] = {}
    pending = list(enabled)
    while pending:
        name = pending.pop()
        for needed in sections[name].needs:
            if needed in sections and needed not in enabled:
                if needed not in needed_by:
                    pending.append(needed)
                needed_by.setdefault(needed, []).append(name)
    for name, needers in needed_by.items():
        enabled[name] = f"needed by {', '.join(sorted(needers))}"
    return dict(sorted(enabled.items()))


def _disabled_hint(name: str, disabled: frozenset[str]) -> str:
    if name in disabled:
        return f" (the plugin {name!r} is blocked by FEDI_RUN_DISABLE_PLUGINS)"
    return ""
