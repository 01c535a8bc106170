"""Writing Nix: values as Nix literals, and the modules plugins contribute to the deployment.

:func:`to_nix` writes any JSON-like value as a Nix expression that evaluates to the same data
(strings escaped, so no value can inject Nix code). :func:`render_template` renders a plugin's
jinja2 template with StrictUndefined and two filters:

* ``{{ value | nix }}`` — ``value`` as a Nix literal (any JSON-like value);
* ``{{ name | nix_key }}`` — ``name`` as an attribute name (bare when it can be, quoted else).

A plugin's :class:`NixModule` is rendered into ``hosts/<host>/<name>.nix`` of the deployment
(see ``engine.render``); it names its secret files in ``secrets`` — their paths on the host,
never their values — so the deployment's ``data.nix`` lists them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*")
KEYWORDS = {"if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"}
MODULE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
"""A module's name: it becomes the file name ``<name>.nix``."""


@dataclass(frozen=True)
class NixModule:
    """A plugin's part of a host's NixOS configuration.

    * ``name``: unique on the host (lowercase letters, digits, ``_`` and ``-``); the module is
      written to ``hosts/<host>/<name>.nix`` and imported by the host's module. A module that
      configures a service is named after it (``mastodon``).
    * ``text``: a NixOS module — an expression such as ``{ ... }: { services.x.enable =
      true; }``. Write every value with the ``nix`` filter so no value can inject Nix code.
    * ``secrets``: the secret files the module names, as ``(name, path on the host)`` pairs (a
      mapping is accepted too). Paths only: the deployment is copied into the world-readable
      Nix store, so a secret value must never be in ``text``. A module named after a service
      puts these under ``services.<name>.secrets`` in the deployment's ``data.nix``.
    """

    name: str
    text: str
    secrets: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not MODULE_NAME.fullmatch(self.name):
            raise ValueError(
                f"NixModule name {self.name!r}: expected lowercase letters, digits, '_' and '-' "
                "(it becomes the file name <name>.nix)"
            )
        if not isinstance(self.text, str):
            raise TypeError(
                f"NixModule {self.name!r}: text must be a str, not {type(self.text).__name__}"
            )
        secrets = self.secrets
        pairs = tuple(secrets.items()) if isinstance(secrets, Mapping) else tuple(secrets)
        checked = []
        for pair in pairs:
            if not (
                isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            ):
                raise TypeError(
                    f"NixModule {self.name!r}: secrets must be (name, path) pairs of str"
                )
            name, path = pair
            if not name or not path.startswith("/") or any(c in path for c in "\x00\n\r"):
                raise ValueError(
                    f"NixModule {self.name!r}: secret {name!r}: expected an absolute path on the "
                    f"host, found {path!r}"
                )
            checked.append((name, path))
        names = [name for name, _ in checked]
        if len(set(names)) != len(names):
            raise ValueError(f"NixModule {self.name!r}: a secret is named twice in {names}")
        object.__setattr__(self, "secrets", tuple(checked))

    @property
    def secret_paths(self) -> dict[str, str]:
        """``secrets`` as a dict, name → path."""
        return dict(self.secrets)


def _string(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a Nix string cannot hold a NUL character")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def _key(key: str) -> str:
    return key if IDENTIFIER.fullmatch(key) and key not in KEYWORDS else _string(key)


def nix_key(key: str) -> str:
    """``key`` as a Nix attribute name: bare when it is an identifier, a quoted string else."""
    if not isinstance(key, str):
        raise TypeError(f"an attribute name must be a str, not {type(key).__name__}")
    return _key(key)


def _number(value: float) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"Nix has no literal for {value!r}")
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if "." not in mantissa:
            text = f"{mantissa}.0{e}{exponent}"
    else:
        text = repr(int(value))
    # a negative literal is a negation: parenthesised, it is one term even in a list
    return f"({text})" if text.startswith("-") else text


def to_nix(value: Any, indent: int = 0) -> str:
    """``value`` (None, bool, int, float, str, list/tuple, dict with str keys) as Nix."""
    pad = "  " * indent
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return "[ ]"
        items = "".join(f"{pad}  {to_nix(item, indent + 1)}\n" for item in value)
        return f"[\n{items}{pad}]"
    if isinstance(value, Mapping):
        if not value:
            return "{ }"
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"an attribute name must be a str, not {type(k).__name__}")
        items = "".join(f"{pad}  {_key(k)} = {to_nix(v, indent + 1)};\n" for k, v in value.items())
        return f"{{\n{items}{pad}}}"
    raise TypeError(f"cannot write {type(value).__name__} as Nix")


def collect_modules(host: str, results: Iterable[tuple[str, Any]]) -> list[tuple[str, NixModule]]:
    """The ``(plugin, result)`` pairs of hook ``fedi_run_nix_modules`` for ``host``, checked:
    ``(plugin, module)`` for each module, in order.

    A result that is not an iterable of :class:`NixModule` values (``None`` counts as none),
    or two modules of one name on the host, is a :class:`PluginError` naming the plugin(s).
    """
    from fedi_run.engine.errors import PluginError

    owners: dict[str, str] = {}
    modules = []
    for plugin, result in results:
        if result is None:
            continue
        if isinstance(result, (NixModule, str, bytes, Mapping)) or not isinstance(result, Iterable):
            raise PluginError(
                f"error: plugin {plugin!r}: fedi_run_nix_modules returned {result!r}, expected "
                "an iterable of NixModule values (a list, or [] when nothing runs on the host)"
            )
        for module in result:
            if not isinstance(module, NixModule):
                raise PluginError(
                    f"error: plugin {plugin!r}: fedi_run_nix_modules returned {module!r}, "
                    "expected NixModule values"
                )
            if module.name in owners:
                raise PluginError(
                    f"error: plugins {owners[module.name]!r} and {plugin!r} both contribute a "
                    f"NixOS module named {module.name!r} to host {host!r}; module names must "
                    "be unique on a host"
                )
            owners[module.name] = plugin
            modules.append((plugin, module))
    return modules


def runs_on(playbook: Any, service: str, host: str) -> bool:
    """Whether ``service``'s module belongs on ``host``: the service is known, its host
    (``playbook.service_host``) is ``host`` and that host is in ``playbook.hosts``. True for a
    disabled service too — its module then switches it off."""
    return (
        service in playbook.services
        and host in playbook.hosts
        and playbook.service_host(service) == host
    )


def service_modules(
    playbook: Any,
    host: str,
    service: str,
    package: str,
    secret_files: Callable[[Any], Mapping[str, str]],
    **context: Any,
) -> list[NixModule]:
    """The module of ``service`` on ``host`` — nothing when it does not run there.

    Renders ``templates/<service>.nix.j2`` of ``package`` with ``enable`` (whether the service
    is on), ``domain`` (``<service>.<domain>``), ``secrets`` (name → path on the host, from
    ``secret_files(playbook)``; empty when the service is off, since then no task places them)
    and ``context``; the module is named ``service`` and declares ``secrets``.
    """
    if not runs_on(playbook, service, host):
        return []
    enable = playbook.is_enabled(service)
    secrets = dict(secret_files(playbook)) if enable else {}
    text = render_template(
        package,
        f"{service}.nix.j2",
        enable=enable,
        domain=playbook.service_domain(service),
        secrets=secrets,
        **context,
    )
    return [NixModule(service, text, secrets)]


@cache
def _environment(package: str):
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def defined(value: Any) -> Any:
        if isinstance(value, jinja2.Undefined):
            str(value)  # StrictUndefined: raises UndefinedError naming what is missing
        return value

    environment.filters["nix"] = lambda value, indent=0: to_nix(defined(value), indent)
    environment.filters["nix_key"] = lambda value: nix_key(defined(value))
    return environment


def render_template(package: str, template: str, **context: Any) -> str:
    """Render ``templates/<template>`` of the Python package ``package`` with ``context``."""
    return _environment(package).get_template(template).render(**context)
