"""The checker behind test_upstream_options.py: a rendered deployment against the upstream facts
in engine/nixops/upstream_options.json.

:func:`evaluate` runs the real ``nix-instantiate --eval --strict --json`` (Debian's nix-bin,
offline) once on upstream_eval.nix, which calls every rendered host module with stub arguments
(upstream_stubs.nix), follows its relative imports and returns the definitions as written, and
evaluates flake.nix's outputs with stub inputs recording what ``nixops4.lib.mkRoot`` is given.
:func:`check_hosts` and :func:`check_flake` then walk the definitions against the facts and
return one message per failure: a definition of an option upstream does not declare (``<name>``
in a fact's path matches any attribute name; ``freeform``, ``attrs`` and ``anything`` types
accept anything below them), a value of the wrong type, a removed or read-only option, a
conflict between definitions of a single-valued option, and a required option left unset while
its conditions hold (all modules of a host merged). Each message names the playbook, the host
or flake, the file, the option path, and what the fact says with its source.

The checker follows the module system where it matters: mkIf/mkMerge/mkOverride/mkOrder are
unwrapped at any depth; a definition under a false mkIf is still checked for existence (as
NixOS does) but not for its type, nor counted as set, nor as a removed option's use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FACTS_FILE = ROOT / "engine" / "nixops" / "upstream_options.json"
EVAL_NIX = Path(__file__).resolve().with_name("upstream_eval.nix")
NIX_HINT = (
    "nix-instantiate is not installed: the rendered modules must be evaluated with the real Nix "
    "evaluator (apt-get install nix-bin)"
)
NIX_ENV = {"NIX_CONFIG": "substituters =\nexperimental-features = nix-command flakes"}
NIXOS_COMPONENT = "nixops4-nixos.modules.nixops4Component.nixos"
MODULE_SYSTEM = "the module system itself (nixpkgs lib/modules.nix)"
MISSING = object()
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*")


# --- facts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Type:
    """A parsed type of the facts' vocabulary (see the file's ``types``)."""

    name: str
    args: tuple[Any, ...] = ()

    def __str__(self) -> str:
        if self.name in ("listOf", "attrsOf", "nullOr"):
            inner = str(self.args[0])
            return f"{self.name} {inner if ' ' not in inner else '(' + inner + ')'}"
        if self.name == "either":
            parts = [str(a) if " " not in str(a) else f"({a})" for a in self.args]
            return "either " + " ".join(parts)
        if self.name == "enum":
            return "enum " + json.dumps(list(self.args))
        if self.name == "strMatching":
            return "strMatching " + json.dumps(self.args[0])
        return self.name


SIMPLE_TYPES = {
    "str", "bool", "int", "positive-int", "unsigned-int", "port", "path", "lines", "package",
    "attrs", "anything", "function", "module", "unit-option", "submodule", "freeform",
    "component", "nixops4-root",
}  # fmt: skip


def parse_type(text: str) -> Type:
    """``text`` (``"listOf (either package str)"``) as a :class:`Type`; ValueError if it is not
    of the vocabulary."""
    parsed, end = _parse(text, 0)
    if text[end:].strip():
        raise ValueError(f"unexpected {text[end:]!r} in type {text!r}")
    return parsed


def _parse(text: str, at: int) -> tuple[Type, int]:
    while at < len(text) and text[at] == " ":
        at += 1
    if text.startswith("(", at):
        inner, at = _parse(text, at + 1)
        while text[at] == " ":
            at += 1
        if not text.startswith(")", at):
            raise ValueError(f"missing ')' in type {text!r}")
        return inner, at + 1
    match = re.compile(r"[A-Za-z][A-Za-z0-9-]*").match(text, at)
    if not match:
        raise ValueError(f"no type name at {text[at:]!r} in {text!r}")
    name, at = match.group(), match.end()
    if name in ("listOf", "attrsOf", "nullOr"):
        inner, at = _parse(text, at)
        return Type(name, (inner,)), at
    if name == "either":
        first, at = _parse(text, at)
        second, at = _parse(text, at)
        return Type(name, (first, second)), at
    if name in ("enum", "strMatching"):
        while text[at] == " ":
            at += 1
        value, at = json.JSONDecoder().raw_decode(text, at)
        return Type(name, tuple(value) if name == "enum" else (value,)), at
    if name not in SIMPLE_TYPES:
        raise ValueError(f"unknown type {name!r} in {text!r}")
    return Type(name), at


@dataclass(frozen=True)
class Fact:
    """One entry of engine/nixops/upstream_options.json."""

    scope: str
    path: str
    type: Type
    required: bool = False
    when: tuple[str, ...] = ()
    removed: bool = False
    message: str | None = None
    default: Any = MISSING
    read_only: bool = False
    same_options_as: str | None = None
    repository: str = ""
    commit: str = ""
    file: str = ""
    line: int | None = None
    anchor: str | None = None

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))

    @property
    def source(self) -> str:
        where = f":{self.line}" if self.line else (f", at {self.anchor!r}" if self.anchor else "")
        if not self.repository:
            return self.file
        return f"{self.repository}@{self.commit[:8]} {self.file}{where}"

    @property
    def container(self) -> bool:
        """Whether the definitions below this path are sub-options (a submodule)."""
        t = self.type
        if t.name in ("submodule", "freeform"):
            return True
        return t.name in ("attrsOf", "nullOr") and t.args[0].name in ("submodule", "freeform")

    @property
    def freeform(self) -> bool:
        return self.type.name == "freeform"

    def says(self) -> str:
        """What the fact says, with its source: ``"str, required while …; NixOS/nixpkgs@…"``."""
        words = [str(self.type)]
        if self.removed:
            words = [f"removed: {self.message}"]
        elif self.required:
            words.append("required" + (f" while {' and '.join(self.when)}" if self.when else ""))
        if self.read_only:
            words.append("read-only")
        return f"upstream: {', '.join(words)}; {self.source}"


@dataclass
class Facts:
    """The facts, by scope, each with the trie :func:`walk` descends."""

    by_scope: dict[str, list[Fact]]
    pins: list[dict[str, Any]]

    def trie(self, *scopes: str, extra: Iterable[Fact] = ()) -> Node:
        facts = [f for s in scopes for f in self.by_scope.get(s, [])] + list(extra)
        return build_trie(facts)

    def defaults(self, scope: str) -> dict[str, Any]:
        """The literal defaults of ``scope`` (paths without ``<name>``) as one tree."""
        tree: dict[str, Any] = {}
        for fact in self.by_scope.get(scope, []):
            if fact.default is MISSING or "<name>" in fact.parts or fact.removed:
                continue
            node = tree
            for part in fact.parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    break
            else:
                existing = node.get(fact.parts[-1])
                if isinstance(existing, dict) and isinstance(fact.default, dict):
                    existing.update(fact.default)
                else:
                    node[fact.parts[-1]] = fact.default
        return tree


def load_facts(path: Path = FACTS_FILE) -> Facts:
    """The facts file, parsed; ValueError naming the entry for a malformed one."""
    data = json.loads(path.read_text())
    scopes: dict[str, list[Fact]] = {}
    for scope in ("nixos", "flake", "component", "nixos-component"):
        facts = []
        for entry in data[scope]:
            try:
                facts.append(
                    Fact(
                        scope=scope,
                        path=entry["path"],
                        type=parse_type(entry["type"]),
                        required=bool(entry.get("required", False)),
                        when=tuple(entry.get("when", ())),
                        removed=bool(entry.get("removed", False)),
                        message=entry.get("message"),
                        default=entry.get("default", MISSING),
                        read_only=bool(entry.get("read_only", False)),
                        same_options_as=entry.get("same_options_as"),
                        repository=entry["repository"],
                        commit=entry["commit"],
                        file=entry["file"],
                        line=entry.get("line"),
                        anchor=entry.get("anchor"),
                    )
                )
            except (KeyError, ValueError) as error:
                raise ValueError(f"{path}: {scope} entry {entry.get('path')!r}: {error}") from None
        scopes[scope] = facts
    return Facts(scopes, data.get("pins", []))


@dataclass
class Node:
    """A trie of option paths; ``<name>`` children match any attribute name."""

    children: dict[str, Node] = field(default_factory=dict)
    fact: Fact | None = None

    def child(self, key: str) -> Node | None:
        return self.children.get(key) or self.children.get("<name>")


def build_trie(facts: Iterable[Fact]) -> Node:
    root = Node()
    facts = list(facts)
    for fact in facts:
        node = root
        for part in fact.parts:
            node = node.children.setdefault(part, Node())
        node.fact = fact
    for fact in facts:  # pixelfed.nginx has the options of an nginx virtual host
        if fact.same_options_as:
            target = _find(root, tuple(fact.same_options_as.split(".")))
            if target is not None:
                _find(root, fact.parts).children = target.children
    return root


def _find(node: Node, parts: tuple[str, ...]) -> Node | None:
    for part in parts:
        node = node.children.get(part)
        if node is None:
            return None
    return node


# --- values -----------------------------------------------------------------------------------

MARKER_TYPES = ("if", "merge", "override", "order")


def is_marker(value: Any) -> bool:
    return isinstance(value, dict) and value.get("_type") in MARKER_TYPES and len(value) <= 3


def special(value: Any) -> str | None:
    """The kind of a value upstream_eval.nix replaced: pkg, path, function, outPath, marker."""
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key in ("__pkg", "__path", "__function", "__outPath", "__marker"):
            return key[2:]
    return None


def describe(value: Any) -> str:
    """``value`` for a message: its Nix rendering, shortened."""
    kind = special(value)
    if kind == "pkg":
        return f"the package pkgs.{value['__pkg']}"
    if kind == "path":
        return f"the path {value['__path']}"
    if kind == "function":
        return "a function"
    if kind == "marker":
        return value["__marker"]
    if kind == "outPath":
        return f"a derivation-like set ({value['__outPath']})"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        text = json.dumps(value)
        if len(text) > 60:
            text = text[:56] + '…"'
        return f"the string {text}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the float {value}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        names = ", ".join(sorted(value)[:6]) + (", …" if len(value) > 6 else "")
        return f"an attribute set {{ {names} }}"
    return repr(value)


def active_values(value: Any) -> Iterator[Any]:
    """The values a (possibly mkIf/mkMerge-wrapped) value contributes when evaluated; a false
    mkIf contributes nothing."""
    if is_marker(value):
        if value["_type"] == "if":
            if value.get("condition") is True:
                yield from active_values(value.get("content"))
        elif value["_type"] == "merge":
            for content in value.get("contents", []):
                yield from active_values(content)
        else:
            yield from active_values(value.get("content"))
    else:
        yield value


POSIX_CLASSES = {
    "[:alnum:]": "a-zA-Z0-9",
    "[:alpha:]": "a-zA-Z",
    "[:digit:]": "0-9",
    "[:upper:]": "A-Z",
    "[:lower:]": "a-z",
    "[:space:]": r"\s",
    "[:xdigit:]": "0-9a-fA-F",
}


def _posix(pattern: str) -> str:
    for name, replacement in POSIX_CLASSES.items():
        pattern = pattern.replace(name, replacement)
    return pattern


def type_error(value: Any, t: Type) -> str | None:
    """Why ``value`` is not of type ``t`` (a short phrase), or None when it is."""
    for v in active_values(value):
        problem = _type_error(v, t)
        if problem:
            return problem
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_error(value: Any, t: Type) -> str | None:
    kind = special(value)
    name = t.name
    ok: bool
    if name in ("anything",):
        return None
    if name in ("str", "lines"):
        ok = isinstance(value, str)
    elif name == "bool":
        ok = isinstance(value, bool)
    elif name == "int":
        ok = _is_int(value)
    elif name == "positive-int":
        ok = _is_int(value) and value > 0
    elif name == "unsigned-int":
        ok = _is_int(value) and value >= 0
    elif name == "port":
        ok = _is_int(value) and 0 <= value <= 65535
    elif name == "path":
        ok = (isinstance(value, str) and value.startswith("/")) or kind in (
            "path",
            "pkg",
            "outPath",
        )
    elif name == "package":
        ok = kind in ("pkg", "outPath") or (
            isinstance(value, str) and value.startswith("/nix/store/")
        )
    elif name in ("attrs", "submodule", "freeform"):
        ok = isinstance(value, dict) and kind not in ("function", "path")
        if ok and name != "attrs" and kind is None:
            return None
    elif name == "function":
        ok = kind == "function"
    elif name in ("module", "component"):
        ok = (isinstance(value, dict) and kind in (None, "function", "path", "marker")) or (
            isinstance(value, str) and value.startswith("/")
        )
    elif name == "unit-option":
        if isinstance(value, list):
            for item in value:
                if isinstance(item, list) or _type_error(item, t):
                    return f"{describe(item)} in a list is not a systemd unit setting"
            return None
        ok = isinstance(value, (bool, int, str)) or kind in ("path", "pkg", "outPath")
    elif name == "nixops4-root":
        ok = value == {"__marker": "nixops4.lib.mkRoot"}
    elif name == "listOf":
        if not isinstance(value, list):
            ok = False
        else:
            for i, item in enumerate(value):
                problem = type_error(item, t.args[0])
                if problem:
                    return f"element {i}: {problem}"
            return None
    elif name == "attrsOf":
        if not isinstance(value, dict) or kind is not None:
            ok = False
        else:
            for key, item in value.items():
                problem = type_error(item, t.args[0])
                if problem:
                    return f"attribute {show_key(key)}: {problem}"
            return None
    elif name == "nullOr":
        if value is None:
            return None
        problem = _type_error(value, t.args[0])
        if problem and t.args[0].name not in ("listOf", "attrsOf"):
            return f"{describe(value)} is not of type {t}"
        return problem
    elif name == "either":
        if any(_type_error(value, alt) is None for alt in t.args):
            return None
        ok = False
    elif name == "enum":
        ok = any(type(value) is type(v) and value == v for v in t.args)
    elif name == "strMatching":
        ok = isinstance(value, str) and re.fullmatch(_posix(t.args[0]), value) is not None
    else:  # pragma: no cover - parse_type admits no other name
        raise ValueError(f"unknown type {name}")
    return None if ok else f"{describe(value)} is not of type {t}"


UNIQUE = {"str", "bool", "int", "positive-int", "unsigned-int", "port", "path", "package", "enum",
          "strMatching", "unit-option"}  # fmt: skip
"""Types whose definitions must agree (mergeEqualOption upstream); lists and lines concatenate."""


def single_valued(t: Type) -> bool:
    if t.name in ("nullOr",):
        return single_valued(t.args[0])
    if t.name == "either":
        return all(single_valued(a) for a in t.args)
    return t.name in UNIQUE


def show_key(key: str) -> str:
    return key if IDENTIFIER.fullmatch(key) else json.dumps(key)


def show_path(parts: Iterable[str]) -> str:
    return ".".join(show_key(p) for p in parts)


def leaves(value: Any, parts: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """The leaf paths below ``parts`` of a definition (markers unwrapped, at any condition)."""
    if is_marker(value):
        inner = value.get("contents") if value["_type"] == "merge" else [value.get("content")]
        for content in inner or []:
            yield from leaves(content, parts)
    elif isinstance(value, dict) and value and special(value) is None:
        for key, item in value.items():
            yield from leaves(item, parts + (key,))
    else:
        yield parts, value


# --- walking the definitions ------------------------------------------------------------------


@dataclass
class Definition:
    """One definition of an option (or of a key below a freeform one)."""

    parts: tuple[str, ...]
    value: Any
    active: bool
    priority: int
    file: str
    fact: Fact | None


@dataclass
class Walk:
    """What walking one module's definitions found."""

    where: str  # "[playbook] host web, hosts/web/mastodon.nix"
    file: str
    definitions: list[Definition] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def fail(self, parts: Iterable[str], text: str) -> None:
        self.failures.append(f"{self.where}: {show_path(parts)}: {text}")


def walk(
    value: Any,
    parts: tuple[str, ...],
    node: Node,
    out: Walk,
    active: bool = True,
    priority: int = 100,
    scope: str = "nixos",
) -> None:
    """Check the definition ``value`` at ``parts`` (trie ``node``) and record it in ``out``."""
    if is_marker(value):
        kind = value["_type"]
        if kind == "if":
            condition = value.get("condition")
            if not isinstance(condition, bool):
                out.fail(parts, f"mkIf's condition is {describe(condition)}, not a bool")
                condition = False
            walk(value.get("content"), parts, node, out, active and condition, priority, scope)
        elif kind == "merge":
            for content in value.get("contents", []):
                walk(content, parts, node, out, active, priority, scope)
        elif kind == "override":
            walk(value.get("content"), parts, node, out, active, value.get("priority", 100), scope)
        else:
            walk(value.get("content"), parts, node, out, active, priority, scope)
        return
    fact = node.fact
    if fact is not None and not fact.container:
        out.definitions.append(Definition(parts, value, active, priority, out.file, fact))
        if not active:
            return
        if fact.removed:
            out.fail(parts, f"removed upstream: {json.dumps(fact.message)} ({fact.source})")
        elif fact.read_only:
            out.fail(parts, f"read-only upstream: it cannot be defined ({fact.says()})")
        else:
            problem = type_error(value, fact.type)
            if problem:
                out.fail(parts, f"{problem} ({fact.says()})")
        return
    if fact is not None and fact.type.name == "nullOr" and value is None:
        out.definitions.append(Definition(parts, value, active, priority, out.file, fact))
        return
    if not isinstance(value, dict) or special(value) is not None:
        below = ", ".join(sorted(node.children)[:8])
        if fact is None and not node.children:
            return
        what = (
            f"upstream declares options below it ({below}{', …' if len(node.children) > 8 else ''})"
        )
        if fact is not None:
            what = f"{what}; {fact.says()}"
        out.fail(parts, f"{describe(value)} is not an attribute set: {what}")
        return
    if fact is not None:
        out.definitions.append(Definition(parts, value, active, priority, out.file, fact))
    for key, item in value.items():
        here = parts + (key,)
        child = node.child(key)
        if child is not None:
            walk(item, here, child, out, active, priority, scope)
        elif fact is not None and fact.freeform:
            out.definitions.append(Definition(here, item, active, priority, out.file, None))
        else:
            for leaf, _ in leaves(item, here):
                out.fail(leaf, undeclared(node, parts, scope))


def undeclared(node: Node, parts: tuple[str, ...], scope: str) -> str:
    """The message for a definition below ``parts`` that no fact declares."""
    known = sorted(k for k in node.children if k != "<name>")
    if not parts:
        where = "at the top level"
    else:
        where = f"below {show_path(parts)}"
    sources = sorted({f.source.split(",")[0].rsplit(":", 1)[0] for f in _facts_below(node)})
    hint = (
        f"; it declares: {', '.join(known[:12])}{', …' if len(known) > 12 else ''}" if known else ""
    )
    origin = f" ({'; '.join(sources[:3])})" if sources and parts else ""
    return (
        f"upstream declares no such option {where}{hint}{origin}. "
        f"engine/nixops/upstream_options.json [{scope}] lists every option the rendering may "
        "define: if upstream declares this one, add "
        "it there with its repository, commit, file and line"
    )


def _facts_below(node: Node, depth: int = 0) -> Iterator[Fact]:
    if node.fact is not None:
        yield node.fact
    if depth < 2:
        for child in node.children.values():
            yield from _facts_below(child, depth + 1)


def merged(definitions: list[Definition]) -> tuple[bool, Any, list[Definition]]:
    """``(set, value, winners)`` of one option's definitions, as the module system picks them:
    the active ones of the highest priority (lowest number)."""
    live = [d for d in definitions if d.active]
    if not live:
        return False, None, []
    best = min(d.priority for d in live)
    winners = [d for d in live if d.priority == best]
    return True, winners[0].value, winners


def matches(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    return len(pattern) == len(parts) and all(p in ("<name>", q) for p, q in zip(pattern, parts))


# --- hosts ------------------------------------------------------------------------------------


INPUT_USE = re.compile(r"\binputs\.([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_'-]*)+)")
PACKAGE_USE = re.compile(r"\bpkgs\.([A-Za-z_][A-Za-z0-9_'-]*)")
INHERIT_PKGS = re.compile(r"inherit\s*\(\s*pkgs\s*\)\s*([^;]*);")
WITH_PKGS = re.compile(r"with\s+pkgs\s*;\s*\[([^\]]*)\]")


def package_names(texts: Iterable[str]) -> list[str]:
    """The ``pkgs.<name>`` the modules use: ``pkgs.x``, ``inherit (pkgs) x``,
    ``with pkgs; [ x ]``."""
    names: set[str] = set()
    for text in texts:
        names.update(PACKAGE_USE.findall(text))
        for group in INHERIT_PKGS.findall(text) + WITH_PKGS.findall(text):
            names.update(IDENTIFIER.findall(group))
    reserved = {"lib", "system", "stdenv", "hostPlatform", "formats"}
    return sorted(n for n in names if not n.startswith("write") and n not in reserved)


def nix_instantiate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real ``nix-instantiate``, offline. AssertionError with the install hint when it is
    missing: the check must never be skipped."""
    executable = shutil.which("nix-instantiate")
    assert executable, NIX_HINT
    return subprocess.run(
        [executable, *args],
        env={**os.environ, **NIX_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def nix_errors(stderr: str) -> str:
    """stderr without nix's harmless warnings."""
    lines = [
        line
        for line in stderr.splitlines()
        if not line.startswith("warning: the group 'nixbld'") and line.strip()
    ]
    return "\n".join(lines[-25:])


@dataclass
class Evaluation:
    """What upstream_eval.nix returned, and the parts that could not be evaluated."""

    hosts: dict[str, Any]
    flake: Any
    errors: dict[str, str]  # "host <name>" / "flake.nix" -> nix's error
    flake_inputs: Any = None  # flake.nix's inputs, when its outputs could not be evaluated


def evaluate(
    directory: Path,
    hosts: Iterable[str],
    facts: Facts,
    flake: bool = True,
    skip: Iterable[str] = (),
) -> Evaluation:
    """Evaluate the deployment in ``directory`` with one ``nix-instantiate`` call; when that
    fails, each host and the flake alone, so each error is reported where it happened."""
    hosts = list(hosts)
    texts = [p.read_text() for p in directory.rglob("*.nix")]
    base = {
        "root": str(directory.resolve()),
        "skip": [str(directory.resolve() / s) for s in skip],
        "packages": package_names(texts),
        "defaults": facts.defaults("nixos"),
        "flakeInputs": False,
        "inputAttributes": [
            {"path": f.path, "type": f.type.name}
            for f in facts.by_scope["flake"]
            if not f.path.startswith("outputs.")
        ],
    }

    def run(spec: dict[str, Any]) -> tuple[Any, str | None]:
        spec_file = directory.parent / f".upstream-spec-{os.getpid()}-{id(spec)}.json"
        spec_file.write_text(json.dumps(spec))
        try:
            done = nix_instantiate(
                "--eval", "--strict", "--json", str(EVAL_NIX), "--argstr", "spec", str(spec_file)
            )
        finally:
            spec_file.unlink()
        if done.returncode != 0:
            return None, nix_errors(done.stderr)
        return json.loads(done.stdout), None

    flake_text = (directory / "flake.nix").read_text() if flake else ""
    known = {f.path.split(".")[0] for f in facts.by_scope["flake"]} | {
        p["path"].split(".", 1)[1] for p in facts.pins
    }
    base["otherInputAttributes"] = [
        {"path": path, "type": "module"}
        for path in sorted(set(INPUT_USE.findall(flake_text)))
        if path.split(".")[0] not in known
    ]
    result, error = run({**base, "hosts": hosts, "flake": flake, "catch": True})
    errors: dict[str, str] = {}
    if result is None:
        result = {"hosts": {}, "flake": None}
        parts = [(h, {"hosts": [h], "flake": False}) for h in hosts]
        if flake:
            parts.append((None, {"hosts": [], "flake": True}))
        for host, spec in parts:
            part, error = run({**base, **spec, "catch": False})
            label = f"host {host}" if host else "flake.nix"
            if part is None:
                errors[label] = error or "nix-instantiate failed"
            elif host:
                result["hosts"][host] = part["hosts"][host]
            else:
                result["flake"] = part["flake"]
    for host, value in list(result["hosts"].items()):
        if value == {"error": True}:  # a throw, caught: run it alone for the message
            _, error = run({**base, "hosts": [host], "flake": False, "catch": False})
            errors[f"host {host}"] = error or "nix-instantiate failed"
            del result["hosts"][host]
    if flake and result.get("flake") == {"error": True}:
        _, error = run({**base, "hosts": [], "flake": True, "catch": False})
        errors["flake.nix"] = error or "nix-instantiate failed"
        result["flake"] = None
    inputs = None
    if flake and result.get("flake") is None:  # its inputs are checked all the same
        part, error = run(
            {**base, "hosts": [], "flake": False, "flakeInputs": True, "catch": False}
        )
        inputs = part["flakeInputs"] if part else None
    return Evaluation(result["hosts"], result.get("flake"), errors, inputs)


def relative(directory: Path, file: str) -> str:
    root = str(directory.resolve()) + "/"
    return file[len(root) :] if file.startswith(root) else file


MODULE_ARGS_FACT = Fact(
    scope="nixos",
    path="_module.args",
    type=Type("attrsOf", (Type("anything"),)),
    file=MODULE_SYSTEM,
)


def check_hosts(label: str, directory: Path, evaluation: Evaluation, facts: Facts) -> list[str]:
    """Every failure of the hosts' modules (see the module docstring)."""
    failures: list[str] = []
    for part, error in evaluation.errors.items():
        if part.startswith("host "):
            hint = ""
            if "attribute '" in error and "' missing" in error:
                hint = (
                    "\n(a module read an option no module of the host defines and "
                    "engine/nixops/upstream_options.json gives no default for, or a lib/pkgs "
                    "attribute the stubs in tests/nixops/upstream_stubs.nix do not provide)"
                )
            failures.append(f"[{label}] {part}: evaluating its modules failed:\n{error}{hint}")
    trie = facts.trie("nixos", extra=[MODULE_ARGS_FACT])
    for host, result in sorted(evaluation.hosts.items()):
        definitions: list[Definition] = []
        for module in result["modules"]:
            file = relative(directory, module["file"])
            where = f"[{label}] host {host}, {file}"
            status = module["status"]
            if status == "skipped":
                continue
            if status != "loaded":
                failures.append(f"{where}: {MODULE_STATUS[status]}")
                continue
            for key in module.get("unsupported", []):
                failures.append(
                    f"{where}: the top-level attribute {key!r} beside `config`/`options` is an "
                    f"error of the module system ({MODULE_SYSTEM})"
                )
            for option in module.get("options", []):
                failures.append(
                    f"{where}: declares its own option {option}: the rendered modules may only "
                    "define options upstream declares (engine/nixops/upstream_options.json)"
                )
            out = Walk(where, file)
            walk(module["defs"], (), trie, out)
            failures.extend(out.failures)
            definitions.extend(out.definitions)
        failures.extend(conflicts(f"[{label}] host {host}", definitions))
        failures.extend(required(f"[{label}] host {host}", definitions, facts.by_scope["nixos"]))
    return failures


MODULE_STATUS = {
    "missing": "is imported but not part of the rendering",
    "outside": "is imported from outside the deployment directory: the flake cannot read it",
    "not-a-module": "is not a module (neither an attribute set nor a function returning one)",
    "stub": "imports a flake input's module, which a host module cannot reach",
}


def conflicts(where: str, definitions: list[Definition]) -> list[str]:
    """Differing definitions of a single-valued option at the same priority."""
    by_path: dict[tuple[str, ...], list[Definition]] = {}
    for d in definitions:
        if d.fact is None or d.fact.container:
            continue
        if d.fact.type.name == "attrsOf" and isinstance(d.value, dict):
            element = Fact(**{**d.fact.__dict__, "type": d.fact.type.args[0]})
            for key, item in d.value.items():
                for v in active_values(item) if d.active else []:
                    by_path.setdefault(d.parts + (key,), []).append(
                        Definition(d.parts + (key,), v, True, d.priority, d.file, element)
                    )
            continue
        by_path.setdefault(d.parts, []).append(d)
    failures = []
    for parts, defs in sorted(by_path.items()):
        fact = defs[0].fact
        if not single_valued(fact.type):
            continue
        is_set, _, winners = merged(defs)
        values = [w for w in winners if not isinstance(w.value, list)]
        distinct = {json.dumps(w.value, sort_keys=True) for w in values}
        if len(distinct) > 1:
            shown = "; ".join(f"{describe(w.value)} in {w.file}" for w in values)
            failures.append(
                f"{where}: {show_path(parts)}: conflicting definitions at the same priority: "
                f"{shown} ({fact.says()})"
            )
    return failures


def required(where: str, definitions: list[Definition], facts: list[Fact]) -> list[str]:
    """Required options left unset (or null) while every option of their ``when`` is true."""
    by_path: dict[tuple[str, ...], list[Definition]] = {}
    for d in definitions:
        by_path.setdefault(d.parts, []).append(d)
    defaults = {f.parts: f.default for f in facts}

    def value_of(parts: tuple[str, ...]) -> Any:
        is_set, value, _ = merged(by_path.get(parts, []))
        return value if is_set else defaults.get(parts, None)

    def is_set(parts: tuple[str, ...]) -> tuple[bool, list[str]]:
        """Whether an active, non-null definition is at ``parts`` or below; the files."""
        found = [
            d
            for p, defs in by_path.items()
            if p[: len(parts)] == parts
            for d in defs
            if d.active and d.value is not None
        ]
        return bool(found), sorted({d.file for d in found})

    failures = []
    for fact in facts:
        if not fact.required or fact.removed:
            continue
        if any(value_of(tuple(w.split("."))) is not True for w in fact.when):
            continue
        enabling = sorted(
            {d.file for w in fact.when for d in by_path.get(tuple(w.split(".")), []) if d.active}
        )
        if "<name>" in fact.parts:  # each defined instance of the enclosing attrsOf
            cut = max(i for i, p in enumerate(fact.parts) if p == "<name>") + 1
            instances = {
                p[:cut] for p in by_path if len(p) >= cut and matches(fact.parts[:cut], p[:cut])
            }
            targets = sorted(i + fact.parts[cut:] for i in instances)
        else:
            targets = [fact.parts]
        for target in targets:
            ok, _ = is_set(target)
            if ok:
                continue
            null = any(d.active and d.value is None for d in by_path.get(target, []))
            state = "defines it as null" if null else "defines it"
            because = f" while {' and '.join(fact.when)} is true" if fact.when else ""
            failures.append(
                f"{where}, {', '.join(enabling) if enabling else 'all modules'}: "
                f"{show_path(target)}: "
                f"required{because}, but no module of the host {state} ({fact.says()})"
            )
    return failures


# --- the flake --------------------------------------------------------------------------------

MKROOT_ARGUMENTS = {"modules", "specialArgs", "prefix"}
REVISION = re.compile(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])")


def markers(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if special(value) == "marker":
            yield value["__marker"]
        for item in value.values():
            yield from markers(item)
    elif isinstance(value, list):
        for item in value:
            yield from markers(item)


def check_flake(label: str, directory: Path, evaluation: Evaluation, facts: Facts) -> list[str]:
    """Every failure of flake.nix against the facts' flake, component and nixos-component
    sections: its outputs and the input attributes it uses, every component's definitions,
    the required options of each nixops4-nixos member, each host module reached by a member,
    and every input pinned to a revision."""
    where = f"[{label}] flake.nix"
    if "flake.nix" in evaluation.errors:
        failures = [
            f"{where}: evaluating its outputs with stub inputs failed:\n"
            + evaluation.errors["flake.nix"]
        ]
        if evaluation.flake_inputs is not None:
            failures += check_inputs(where, evaluation.flake_inputs, facts)
        return failures
    flake = evaluation.flake
    failures: list[str] = []
    by_path = {f.path: f for f in facts.by_scope["flake"]}
    for fact in facts.by_scope["flake"]:
        if not fact.path.startswith("outputs."):
            continue
        name = fact.path.split(".", 1)[1]
        present = name in flake["outputNames"]
        if fact.removed and present:
            failures.append(
                f"{where}: {fact.path}: removed upstream: {json.dumps(fact.message)} "
                f"({fact.source})"
            )
        elif fact.required and not present:
            failures.append(f"{where}: {fact.path}: not defined, but required ({fact.says()})")
    root_fact = by_path.get("outputs.nixops4")
    mkroot = by_path["nixops4.lib.mkRoot"]
    if "nixops4" in flake["outputNames"] and root_fact is not None:
        problem = type_error(flake["nixops4"], root_fact.type)
        if problem:
            failures.append(
                f"{where}: outputs.nixops4: {problem}: build it with nixops4.lib.mkRoot "
                f"({root_fact.says()}; {mkroot.source})"
            )
        for argument in sorted(set(flake["mkRootArguments"]) - MKROOT_ARGUMENTS):
            failures.append(
                f"{where}: nixops4.lib.mkRoot: no argument {argument!r}: it takes "
                f"{{ modules; specialArgs ? {{}}; prefix ? []; }} ({mkroot.source})"
            )
        if flake["root"] is not None and "modules" not in flake["mkRootArguments"]:
            failures.append(f"{where}: nixops4.lib.mkRoot: `modules` is required ({mkroot.source})")
    used = sorted(set(markers(flake)))
    for marker in used:
        fact = by_path.get(marker)
        if fact is not None and fact.removed:
            failures.append(
                f"{where}: {marker}: removed upstream: {json.dumps(fact.message)} ({fact.source})"
            )

    reached: list[str] = []
    inspectable = True
    components = []
    if flake["root"] is not None:
        components.append(("outputs.nixops4", flake["root"]))
    for name, deployment in sorted((flake.get("deployments") or {}).items()):
        if deployment is not None:
            components.append((f"outputs.nixops4Deployments.{show_key(name)}", deployment))
    while components:
        path, component = components.pop(0)
        found, can_see = check_component(where, path, component, facts, failures)
        reached.extend(found)
        inspectable = inspectable and can_see
        for name, member in sorted(component["members"].items()):
            components.append((f"{path}.members.{show_key(name)}", member))

    if flake["root"] is not None and inspectable:
        for host_file in sorted(directory.glob("hosts/*.nix")):
            if str(host_file.resolve()) not in reached:
                failures.append(
                    f"{where}: no nixops4-nixos member's nixos.module imports "
                    f"hosts/{host_file.name}: the modules checked here would not be deployed"
                )
    failures.extend(check_inputs(where, flake["inputs"], facts))
    return failures


def check_component(
    where: str, path: str, component: Mapping[str, Any], facts: Facts, failures: list[str]
) -> tuple[list[str], bool]:
    """Check one component's modules; returns the host module files its nixos.module reaches,
    and whether its nixos.module could be inspected."""
    imports = [m.get("marker") for m in component["modules"] if m["status"] == "stub"]
    for module in component["modules"]:
        if module["status"] == "loaded":
            imports += list(markers(module.get("imports", [])))
    is_nixos = NIXOS_COMPONENT in imports
    scopes = ("component", "nixos-component") if is_nixos else ("component",)
    own: list[Fact] = []
    for module in component["modules"]:
        for option in module.get("options", []):
            own.append(
                Fact(scope="component", path=option, type=Type("anything"), file=module["file"])
            )
    trie = facts.trie(*scopes, extra=own)
    definitions: list[Definition] = []
    for module in component["modules"]:
        label = f"{where} ({path})"
        if module["status"] not in ("loaded", "stub"):
            failures.append(
                f"{label}, {module['file']}: "
                + MODULE_STATUS.get(module["status"], module["status"])
            )
            continue
        if module["status"] == "stub":
            continue
        out = Walk(label, module["file"])
        walk(module["defs"], (), trie, out, scope="+".join(scopes))
        failures.extend(out.failures)
        definitions.extend(out.definitions)
    reached: list[str] = []
    can_see = True
    if is_nixos:
        condition = f"imports {NIXOS_COMPONENT}"
        needed = [
            f
            for s in scopes
            for f in facts.by_scope[s]
            if f.required and (not f.when or f.when == (condition,))
        ]
        for fact in needed:
            if not any(
                d.parts == fact.parts and d.active and d.value is not None for d in definitions
            ):
                failures.append(
                    f"{where} ({path}): {fact.path}: required by a member that imports "
                    f"{NIXOS_COMPONENT}, but not defined ({fact.says()})"
                )
        for d in definitions:
            if d.parts == ("nixos", "module") and d.active:
                files, seen = module_files(d.value)
                reached.extend(files)
                can_see = can_see and seen
    return reached, can_see


def module_files(value: Any) -> tuple[list[str], bool]:
    """The files a deferred module names (itself a path, or its imports); whether it could
    be inspected (a function cannot)."""
    kind = special(value)
    if kind == "path":
        return [value["__path"]], True
    if isinstance(value, str):
        return [value], True
    if kind == "function":
        return [], False
    if isinstance(value, dict) and kind is None:
        files: list[str] = []
        seen = True
        for item in value.get("imports", []):
            more, ok = module_files(item)
            files += more
            seen = seen and ok
        return files, seen
    return [], True


def check_inputs(where: str, inputs: Mapping[str, Any], facts: Facts) -> list[str]:
    """Every input pinned to a revision (or following another input); no input the facts do
    not describe."""
    pins = {p["path"].split(".", 1)[1]: p for p in facts.pins}
    failures = []
    for name, value in sorted(inputs.items()):
        pin = pins.get(name)
        if pin is None:
            failures.append(
                f"{where}: inputs.{show_key(name)}: engine/nixops/upstream_options.json has no "
                f"facts about this input (it knows {', '.join(sorted(pins))})"
            )
            continue
        if not isinstance(value, dict):
            value = {"url": value}
        if "follows" in value:
            continue
        url = value.get("url", "")
        line = f":{pin['line']}" if pin.get("line") else ""
        if not (REVISION.search(str(url)) or REVISION.fullmatch(str(value.get("rev", "")))):
            failures.append(
                f"{where}: inputs.{show_key(name)}: {json.dumps(url)} names no revision: the "
                "first apply "
                f"would lock whatever upstream's HEAD is; pin it (known to work: {pin['value']}, "
                f"{pin['repository']}@{pin['commit'][:8]} {pin['file']}{line})"
            )
    return failures


def check_deployment(
    label: str, directory: Path, hosts: Iterable[str], facts: Facts, skip: Iterable[str] = ()
) -> list[str]:
    """All failures of the deployment rendered into ``directory``: hosts and flake."""
    hosts = list(hosts)
    evaluation = evaluate(
        directory, hosts, facts, flake=(directory / "flake.nix").exists(), skip=skip
    )
    failures = check_hosts(label, directory, evaluation, facts)
    if (directory / "flake.nix").exists():
        failures += check_flake(label, directory, evaluation, facts)
    seen: set[str] = set()
    return [f for f in failures if not (f in seen or seen.add(f))]
