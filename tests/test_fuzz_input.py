"""Bad input, generated (hypothesis): malformed and hostile playbooks, inventories and
configuration files each end with exit status 2, a message naming the file and the key, no
traceback, and no run started — so no command ever reaches a host (every host of these
playbooks is 127.0.0.1 port 1, where nothing listens, and the run must not even get that far).

Round two adds the value classes that once slipped through: control characters in every
free-text field, IPv6 scope ids, dotted keys nested too deep, and templates that raise or run
away while rendering.

The number of cases that ran is printed at the end of the test session.
"""

from __future__ import annotations

import copy
import json
import tomllib

import pytest
import tomli_w
from click.testing import CliRunner
from helpers import EXAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedi_run.engine.cli.main import cli

BASE = tomllib.loads((EXAMPLES / "fediversity.toml").read_text())
for table in BASE["hosts"].values():
    table["address"] = "127.0.0.1"
    table["port"] = 1
BASE["tasks"] = {
    "motd": {
        "host": "mastodon",
        "run": "true",
        "requires": ["mastodon.secrets"],
        "tags": ["custom"],
    }
}

# Keys whose values are checked where they enter: any hostile value must be refused there.
STRICT_KEYS = [
    ("deployment", "name"),
    ("deployment", "domain"),
    ("hosts", "garage", "address"),
    ("hosts", "mastodon", "port"),
    ("hosts", "peertube", "user"),
    ("hosts", "pixelfed", "host_key"),
    ("services", "mastodon", "enable"),
    ("services", "pixelfed", "host"),
    ("acme", "server"),
    ("acme", "email"),
    ("acme", "accept_terms"),
    ("initial_user", "username"),
    ("initial_user", "email"),
    ("run", "forks"),
    ("tasks", "motd", "host"),
    ("tasks", "motd", "tags"),
]
METACHARACTERS = [";", "$(", "`", "'", '"', "\n", "\\", "|", "&", " ", "${", "\t", "*", "\u202e"]

hostile_text = st.one_of(
    st.just(""),
    st.builds(
        lambda base, meta: base + meta + "reboot",
        st.sampled_from(["a", "mastodon", "x.org"]),
        st.sampled_from(METACHARACTERS),
    ),
    st.builds(lambda n: "a" * n, st.integers(300, 5000)),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).map(
        lambda s: s + " ;"
    ),
)
wrong_types = st.one_of(
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
)


def _wrong_for(key: tuple[str, ...]):
    """A value the key must refuse."""
    value = BASE
    for part in key:
        value = value.get(part, "") if isinstance(value, dict) else ""
    if isinstance(value, bool):
        return st.one_of(hostile_text, st.integers(0, 5), st.lists(st.booleans(), max_size=2))
    if isinstance(value, int):
        return st.one_of(
            hostile_text,
            st.sampled_from([0, -1, 70000, 10**12]),
            st.lists(st.integers(), max_size=2),
        )
    if isinstance(value, list):
        return st.one_of(hostile_text, st.lists(hostile_text, min_size=1, max_size=3))
    return st.one_of(hostile_text, wrong_types)


@st.composite
def mutated(draw):
    """The example with one to three hostile changes; returns (document, keys changed)."""
    document = copy.deepcopy(BASE)
    changed = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "unknown", "missing", "cycle"]))
        if kind == "value":
            key = draw(st.sampled_from(STRICT_KEYS))
            target = document
            for part in key[:-1]:
                target = target[part]
            target[key[-1]] = draw(_wrong_for(key))
        elif kind == "unknown":
            table = draw(
                st.sampled_from(
                    [
                        ("deployment",),
                        ("hosts", "garage"),
                        ("services", "mastodon"),
                        ("acme",),
                        ("tasks", "motd"),
                        (),
                    ]
                )
            )
            name = draw(st.sampled_from(["adress", "enabel", "hots", "rm -rf /", "$(id)", "zzz"]))
            target = document
            for part in table:
                target = target[part]
            target[name] = 1
            key = (*table, name)
        elif kind == "missing":
            key = draw(
                st.sampled_from(
                    [
                        ("deployment", "name"),
                        ("deployment", "domain"),
                        ("hosts", "garage", "address"),
                        ("tasks", "motd", "run"),
                    ]
                )
            )
            target = document
            for part in key[:-1]:
                target = target[part]
            target.pop(key[-1], None)
        else:
            document["tasks"]["loop"] = {
                "host": "garage",
                "run": "true",
                "requires": ["tasks.motd"],
            }
            document["tasks"]["motd"]["requires"] = ["tasks.loop"]
            key = ("tasks",)
        changed.append(key)
    return document, changed


def _parses(data: bytes) -> bool:
    """Whether ``data`` is valid TOML (a cut that happens to end a table is a playbook)."""
    try:
        tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return True


def dotted(key) -> str:
    return ".".join(str(k) for k in key)


def run_cli(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def assert_refused(code, stdout, stderr, file_name):
    assert code == 2, (code, stdout[-2000:], stderr[-2000:])
    assert "Traceback" not in stdout + stderr
    assert '"run_started"' not in stdout  # nothing was run, so nothing reached any host
    assert file_name in stderr


FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.reliability(
    "bad input",
    "hostile playbook values: wrong types, missing/unknown sections, huge/empty values, cycles, "
    "duplicate ids, shell metacharacters, quotes and newlines",
    "exit 2, one paragraph naming the file and key, no traceback, no host contacted",
)
@FUZZ
@given(case=mutated())
def test_hostile_playbooks_are_refused_naming_the_key(case, tmp_path_factory, fuzz_cases):
    document, changed = case
    directory = tmp_path_factory.mktemp("fuzz")
    path = directory / "playbook.toml"
    path.write_text(tomli_w.dumps(document))
    code, stdout, stderr = run_cli(
        "run", path, "--json", "--no-apply", "--connect-timeout", "1", "--retries", "0"
    )
    fuzz_cases.append("playbook")
    assert_refused(code, stdout, stderr, str(path))
    # Some changed key (or a table above it) is named — or, for a cycle, the tasks involved.
    named = [dotted(key[:n]) for key in changed for n in range(len(key), 0, -1)]
    assert any(f": {name}" in stderr or f"'{name}" in stderr or name in stderr for name in named), (
        changed,
        stderr,
    )


@pytest.mark.reliability(
    "bad input",
    "garbage, truncated and invalid UTF-8 playbook files, deep nesting",
    "exit 2 naming the file, no traceback",
)
@FUZZ
@given(
    data=st.one_of(
        st.binary(min_size=1, max_size=200),
        st.builds(lambda b: tomli_w.dumps(BASE).encode()[:b], st.integers(1, 400)).filter(
            lambda b: not _parses(b)
        ),
        st.builds(
            lambda b: b'[deployment]\nname = "' + b + b'"\n',
            st.binary(min_size=1, max_size=10).filter(lambda b: not b.isascii()),
        ),
        st.integers(60, 400).map(
            lambda depth: ("x = " + "[" * depth + "]" * depth + "\n").encode()
        ),
    )
)
def test_garbage_files_are_refused(data, tmp_path_factory, fuzz_cases):
    directory = tmp_path_factory.mktemp("garbage")
    path = directory / "playbook.toml"
    path.write_bytes(data)
    code, stdout, stderr = run_cli("run", path, "--json", "--no-apply")
    fuzz_cases.append("garbage")
    assert_refused(code, stdout, stderr, str(path))


@pytest.mark.reliability(
    "bad input",
    "hostile inventory values",
    "exit 2 naming the inventory file and key, no traceback",
)
@FUZZ
@given(
    table=st.sampled_from(["hosts", "acme", "services", "deployment"]),
    value=st.one_of(hostile_text, wrong_types),
)
def test_hostile_inventories_are_refused(table, value, tmp_path_factory, fuzz_cases):
    directory = tmp_path_factory.mktemp("inventory")
    playbook = directory / "playbook.toml"
    playbook.write_text(tomli_w.dumps(BASE))
    inventory = directory / "inventory.toml"
    if table == "hosts":
        content = {"hosts": {"garage": {"address": value}}}
    elif table == "acme":
        content = {"acme": {"server": value}}
    else:
        content = {table: {"x": 1}}  # an inventory holds only [hosts.*] and [acme]
    inventory.write_text(tomli_w.dumps(content))
    code, stdout, stderr = run_cli("run", playbook, "-i", inventory, "--json", "--no-apply")
    fuzz_cases.append("inventory")
    assert_refused(code, stdout, stderr, str(inventory))


@pytest.mark.reliability(
    "bad input",
    "hostile Fediversity configuration.json values",
    "exit 2 naming the configuration file and key, no traceback",
)
@FUZZ
@given(
    field=st.sampled_from(["domain", "mastodon", "initialUser", "password", "unknown"]),
    value=st.one_of(hostile_text, wrong_types),
)
def test_hostile_configurations_are_refused(field, value, tmp_path_factory, fuzz_cases):
    if field == "mastodon" and isinstance(value, bool):
        value = "yes"  # true and false are what `enable` takes
    directory = tmp_path_factory.mktemp("configuration")
    playbook = directory / "playbook.toml"
    playbook.write_text(tomli_w.dumps(BASE))
    configuration = directory / "configuration.json"
    content = {
        "domain": {"domain": value},
        "mastodon": {"mastodon": {"enable": value}},
        "initialUser": {"initialUser": {"username": value}},
        "password": {"initialUser": {"password": "hunter2-secret"}},
        "unknown": {"mastodn": value},
    }[field]
    configuration.write_text(json.dumps(content))
    code, stdout, stderr = run_cli(
        "run", playbook, "--configuration", configuration, "--json", "--no-apply"
    )
    fuzz_cases.append("configuration")
    assert_refused(code, stdout, stderr, str(configuration) if field != "domain" else "")
    assert "hunter2-secret" not in stdout + stderr


# --- round two: the value classes that slipped through ------------------------------------------

FREE_TEXT_KEYS = [
    # (key, whether tab and newline are allowed there)
    (("tasks", "motd", "run"), True),
    (("tasks", "motd", "undo"), True),
    (("tasks", "motd", "unless"), True),
    (("tasks", "conf", "file", "content"), True),
    (("tasks", "motd", "description"), False),
    (("tasks", "motd", "requires"), False),
    (("initial_user", "display_name"), False),
    (("initial_user", "password_file"), False),
    (("hosts", "pixelfed", "host_key"), False),
    (("hosts", "garage", "identity"), False),
    (("tasks", "back", "fetch", "local"), False),
]
WITH_TEXT_TASKS = copy.deepcopy(BASE)
WITH_TEXT_TASKS["tasks"]["conf"] = {"host": "garage", "file": {"path": "/etc/x", "content": "x"}}
WITH_TEXT_TASKS["tasks"]["back"] = {
    "host": "garage",
    "fetch": {"remote": "/etc/hostname", "local": "out/hostname"},
}
control_characters = st.one_of(
    st.characters(whitelist_categories=("Cc",)), st.sampled_from(["\u2028", "\u2029"])
)
plain_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=20
)


@st.composite
def text_with_a_control_character(draw):
    key, lines = draw(st.sampled_from(FREE_TEXT_KEYS))
    control = draw(control_characters.filter(lambda c: not lines or c not in "\t\n"))
    before, after = draw(plain_text), draw(plain_text)
    document = copy.deepcopy(WITH_TEXT_TASKS)
    target = document
    for part in key[:-1]:
        target = target[part]
    current = target.get(key[-1], "true")
    if isinstance(current, list):
        target[key[-1]] = [before + control + after]
    else:
        prefix = current + " " if key[-1] == "host_key" else before
        target[key[-1]] = prefix + control + after
    return document, key


ROUND_TWO = settings(FUZZ, max_examples=50)


@pytest.mark.reliability(
    "bad input",
    "NUL and every other control character (category Cc, U+2028, U+2029; tab and newline "
    "where a value is one line) at any place in every free-text field",
    "exit 2, the message names the file and the key, no traceback, no host contacted",
)
@ROUND_TWO
@given(case=text_with_a_control_character())
def test_control_characters_in_free_text_are_refused(case, tmp_path_factory, fuzz_cases):
    document, key = case
    path = tmp_path_factory.mktemp("control") / "playbook.toml"
    path.write_text(tomli_w.dumps(document))
    code, stdout, stderr = run_cli("run", path, "--json", "--no-apply")
    fuzz_cases.append("control character")
    assert_refused(code, stdout, stderr, str(path))
    assert f": {dotted(key)}: " in stderr, (key, stderr)


SCOPE_METACHARACTERS = [" ", ";", "$(", "`", "'", '"', "\n", "\\", "|", "&", "%", "/", ":", "\x00"]
hostile_scope = st.one_of(
    st.builds(
        lambda base, meta, tail: base + meta + tail,
        st.sampled_from(["", "eth0", "x", "-"]),
        st.sampled_from(SCOPE_METACHARACTERS),
        st.sampled_from(["", "-oProxyCommand=reboot", "reboot", "1"]),
    ),
    st.builds(lambda n: "e" * n, st.integers(16, 300)),
    st.just(""),
    st.builds(lambda s: "-" + s, st.text(alphabet="abc0-", max_size=10)),
    st.text(min_size=1, max_size=20).filter(
        lambda s: not __import__("re").fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}", s)
    ),
)


@pytest.mark.reliability(
    "bad input",
    "an IPv6 scope id that is not a plain interface name (ssh options, shell metacharacters, "
    "quotes, newlines, a leading '-', too long), in the playbook or an inventory",
    "exit 2, the message names the file and hosts.<host>.address, no traceback, no host contacted",
)
@ROUND_TWO
@given(
    host=st.sampled_from(sorted(BASE["hosts"])),
    address=st.sampled_from(["fe80::1", "::1", "2001:db8::7"]),
    scope=hostile_scope,
    in_inventory=st.booleans(),
)
def test_hostile_scope_ids_are_refused(
    host, address, scope, in_inventory, tmp_path_factory, fuzz_cases
):
    directory = tmp_path_factory.mktemp("scope")
    document = copy.deepcopy(BASE)
    path = directory / "playbook.toml"
    args = ["run", path, "--json", "--no-apply"]
    where = path
    if in_inventory:
        where = directory / "inventory.toml"
        where.write_text(tomli_w.dumps({"hosts": {host: {"address": f"{address}%{scope}"}}}))
        args += ["-i", where]
    else:
        document["hosts"][host]["address"] = f"{address}%{scope}"
    path.write_text(tomli_w.dumps(document))
    code, stdout, stderr = run_cli(*args)
    fuzz_cases.append("scope id")
    assert_refused(code, stdout, stderr, str(where))
    assert f"{where}: hosts.{host}.address: " in stderr, stderr


@pytest.mark.reliability(
    "bad input",
    "dotted keys 65 to 2000 levels deep, in any table of a playbook or an inventory",
    "exit 2, 'nested too deeply' naming the file, no traceback",
)
@settings(ROUND_TWO, max_examples=30)
@given(
    depth=st.integers(65, 2000),
    table=st.sampled_from(["", "deployment", "hosts.garage", "tasks.motd", "acme", "services"]),
    name=st.sampled_from(["a", "x-1", '"quoted key"', "address", "deep"]),
    in_inventory=st.booleans(),
)
def test_deep_dotted_keys_are_refused(
    depth, table, name, in_inventory, tmp_path_factory, fuzz_cases
):
    directory = tmp_path_factory.mktemp("depth")
    path = directory / "playbook.toml"
    deep = ".".join([name] * depth) + " = 1\n"
    where, args = path, ["run", path, "--json", "--no-apply"]
    if in_inventory:
        path.write_text(tomli_w.dumps(BASE))
        where = directory / "inventory.toml"
        where.write_text("[hosts.garage]\n" + deep)
        args += ["-i", where]
    else:
        base = tomli_w.dumps(BASE)  # the deep key: at the top, or in a new table of ``table``
        path.write_text(deep + base if not table else f"{base}\n[{table}.deep]\n{deep}")
    code, stdout, stderr = run_cli(*args)
    fuzz_cases.append("depth")
    assert_refused(code, stdout, stderr, str(where))
    assert "nested too deeply" in stderr, stderr


RUNAWAY = [
    "{{ 1/0 }}",
    "{{ 7 % 0 }}",
    "{{ 2**70000 }}",
    "{{ 9**9999 }}",
    "{{ 1e308 * 10 }}",
    "{{ 1e308 ** 2 }}",
    "{{ range(10**9)|list }}",
    "{{ 'a' + 1 }}",
    "{{ '%s %s' % 1 }}",
    "{{ 'x'.encode('nope') }}",
    "{{ 'a' * 10**10 }}",
    "{{ [0] * 10**10 }}",
    "{{ 'x'.center(10**12) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '%*d' % (10**10, 1) }}",
    "{{ 'x'|indent(10**10) }}",
    "{{ [1]|batch(10**10, 0)|list }}",
    "{{ (1).to_bytes(10**10, 'big') }}",
    "{{ hosts.garage.update({}) }}",
    "{{ 'abc'[10] }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}",
]


@pytest.mark.reliability(
    "bad input",
    "templates that raise or run away while rendering (division by zero, overflows, huge "
    "values, widths and loops, type and lookup errors, unknown codecs, recursion), anywhere "
    "in a run, undo or file content template",
    "exit 2, the message names the file, the key and the template's line, no traceback, no "
    "host contacted",
)
@ROUND_TWO
@given(
    expression=st.sampled_from(RUNAWAY),
    key=st.sampled_from(["run", "undo", "file.content"]),
    lines_before=st.integers(0, 3),
    text=plain_text,
)
def test_template_runtime_errors_are_refused(
    expression, key, lines_before, text, tmp_path_factory, fuzz_cases
):
    template = "echo ok\n" * lines_before + text.replace("{", "").replace("}", "") + expression
    document = copy.deepcopy(BASE)
    task = {"host": "garage"}
    if key == "file.content":
        task["file"] = {"path": "/etc/x", "content": template}
    else:
        task["run"] = "true"
        task[key] = template
    document["tasks"]["runaway"] = task
    path = tmp_path_factory.mktemp("template") / "playbook.toml"
    path.write_text(tomli_w.dumps(document))
    code, stdout, stderr = run_cli("run", path, "--json", "--no-apply")
    fuzz_cases.append("template")
    assert_refused(code, stdout, stderr, str(path))
    assert f"{path}: tasks.runaway.{key}: template" in stderr, stderr
    assert f"template error at line {lines_before + 1}:" in stderr, stderr
