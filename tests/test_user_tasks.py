"""The operator's own tasks: templates over the playbook's values, per-host ids, errors that
name the key and the line."""

from __future__ import annotations

import pytest
from helpers import EXAMPLES, MINIMAL

from fedi_run.engine.errors import PlaybookError
from fedi_run.engine.planning.operations import Command, Directory, Fetch, File, Restore
from fedi_run.engine.project import load_project


def test_basic_example_tasks():
    graph = load_project(EXAMPLES / "basic.toml").graph
    hello = graph.tasks["tasks.hello"]
    assert hello.host == "hello" and hello.tags == ("programs",)
    [action] = hello.actions
    assert (
        isinstance(action, File) and action.path == "/usr/local/bin/hello" and action.mode == 0o755
    )
    assert 'echo "Hello from hello in basic.example.org!"' in action.content
    assert hello.undo_actions() == (Restore("/usr/local/bin/hello"),)
    assert (
        graph.tasks["tasks.motd@cowsay"].actions[0].content
        == "Welcome to basic.example.org (cowsay)\n"
    )
    assert graph.dependencies("tasks.motd@hello") == ["tasks.cowsay", "tasks.hello"]


def test_operations_syntax(write, tmp_path):
    (tmp_path / "motd.txt").write_text("literal {{ not a template }}\n")
    path = write(
        "p.toml",
        MINIMAL
        + """
[tasks.dir]
host = "web"
directory = { path = "/srv/app", mode = "0750", owner = "root" }
[tasks.conf]
host = "web"
file = { path = "/srv/app/conf", src = "motd.txt", mode = "0600" }
requires = ["tasks.dir"]
[tasks.gone]
host = "web"
file = { path = "/srv/old", present = false }
[tasks.back]
host = "web"
fetch = { remote = "/etc/hostname", local = "out/hostname" }
[tasks.guarded]
host = "web"
run = "touch /srv/app/marker"
creates = "/srv/app/marker"
unless = "test -e /nope"
""",
    )
    tasks = load_project(path).graph.tasks
    assert tasks["tasks.dir"].actions == (Directory("/srv/app", mode=0o750, owner="root"),)
    assert tasks["tasks.dir"].undo_actions() == (
        Directory("/srv/app", present=False, recursive=False),
    )
    assert tasks["tasks.conf"].actions == (
        File("/srv/app/conf", "literal {{ not a template }}\n", mode=0o600),
    )
    assert tasks["tasks.gone"].actions == (File("/srv/old", present=False),)
    assert tasks["tasks.back"].actions == (
        Fetch("/etc/hostname", str(tmp_path / "out" / "hostname")),
    )
    assert tasks["tasks.guarded"].actions == (
        Command("touch /srv/app/marker", creates="/srv/app/marker", unless="test -e /nope"),
    )
    assert tasks["tasks.guarded"].undo_actions() == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'run = "true"\nfile = { path = "/x", content = "" }',
            "expected exactly one of `run`, `file`, `directory` or `fetch`, found run, file",
        ),
        (
            'file = { path = "relative", content = "" }',
            "tasks.x.file.path: found 'relative', expected an absolute path on the host",
        ),
        (
            'file = { path = "/x", content = "", mode = "644x" }',
            "tasks.x.file.mode: found '644x', expected an octal file mode",
        ),
        ('file = { path = "/x" }', "tasks.x.file: expected exactly one of `content` or `src`"),
        ('directory = { path = "/x" }\ncreates = "/y"', "`creates` and `unless` guard `run` only"),
        ('run = "true"\ntimeout = 0', "tasks.x.timeout: found 0, expected a number > 0"),
    ],
)
def test_operation_errors(write, table, message):
    path = write("p.toml", MINIMAL + f'[tasks.x]\nhost = "web"\n{table}\n')
    with pytest.raises(PlaybookError) as caught:
        load_project(path)
    assert message in str(caught.value)


def test_template_sees_services_and_quote_filter(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
[initial_user]
username = "admin"
display_name = "O'Brien & co"
email = "admin@example.org"
password_file = "pw"

[tasks.who]
host = "web"
run = "echo {{ initial_user.display_name | quote }} {{ services.mastodon.enabled }}"
""",
    )
    task = load_project(path).graph.tasks["tasks.who"]
    assert task.actions[0].run == "echo 'O'\"'\"'Brien & co' False"


def test_user_task_may_require_a_plugin_task(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
[hosts.garage]
address = "127.0.0.3"
[services.mastodon]
enable = true
host = "web"
[tasks.motd]
host = "web"
run = "true"
requires = ["mastodon.secrets"]
""",
    )
    graph = load_project(path).graph
    assert graph.dependencies("tasks.motd") == ["mastodon.secrets"]


def test_undefined_variable_names_the_key(write):
    path = write("p.toml", MINIMAL + '[tasks.x]\nhost = "web"\nrun = "echo {{ deployment.nme }}"\n')
    with pytest.raises(PlaybookError) as caught:
        load_project(path)
    message = str(caught.value)
    assert message.startswith(f"error: {path}: tasks.x.run: template error at line 1:")
    assert "`deployment.nme` is not defined (did you mean `deployment.name`?)" in message


def test_syntax_error_names_the_line(write):
    path = write(
        "p.toml",
        MINIMAL
        + '[tasks.x]\nhost = "web"\nrun = """\ntrue\necho {{ oops \n"""\nundo = "{% if %}"\n',
    )
    with pytest.raises(PlaybookError) as caught:
        load_project(path)
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}: tasks.x.run: template syntax error at line 2:")
    assert problems[1].startswith(f"{path}: tasks.x.undo: template syntax error at line 1:")


def test_template_cannot_reach_python_internals(write):
    path = write(
        "p.toml", MINIMAL + '[tasks.x]\nhost = "web"\nrun = "{{ deployment.__class__.__mro__ }}"\n'
    )
    with pytest.raises(PlaybookError, match="tasks.x.run: template error"):
        load_project(path)


def test_unknown_requirement_in_user_task(write):
    path = write(
        "p.toml", MINIMAL + '[tasks.x]\nhost = "web"\nrun = "true"\nrequires = ["tasks.y"]\n'
    )
    with pytest.raises(PlaybookError) as caught:
        load_project(path)
    assert str(caught.value) == f"error: {path}: tasks.x.requires: unknown task 'tasks.y'"


RUNTIME_ERRORS = [
    ("{{ 1/0 }}", "division by zero"),
    ("{{ 10 // 0 }}", "ZeroDivisionError"),
    ("{{ 9**9999 }}", "ValueError"),
    ("{{ 2**100000 }}", "an integer of more than 65536 bits"),
    ("{{ (2**40000) * (2**40000) }}", "an integer of more than 65536 bits"),
    ("{{ 1e308*10 }}", "overflow"),
    ("{{ 1e308**2 }}", "OverflowError"),
    ("{{ -1e308 - 1e308 }}", "overflow"),
    ("{{ range(10**9)|list }}", "Range too big"),
    ("{{ 'a' + 1 }}", "can only concatenate str"),
    ("{{ '%s %s' % 1 }}", "not enough arguments for format string"),
    ("{{ '%d' % 'x' }}", "TypeError"),
    ("{{ 'x'.encode('nope') }}", "unknown encoding: nope"),
    ("{{ 'abc'.index('z') }}", "ValueError"),
    ("{{ 'a' < 1 }}", "TypeError"),
    ("{{ 'a' * 10**10 }}", "more than 1048576 characters by repeating"),
    ("{{ [1] * 10**10 }}", "by repeating"),
    ("{{ [[0]*1000000]*1000000 }}", "by repeating"),
    ("{{ 'x'.center(10**10) }}", "a width of 10000000000"),
    ("{{ 'x'|center(10**10) }}", "a width of 10000000000"),
    ("{{ 'x'|indent(10**9, true) }}", "an indent of 1000000000"),
    ("{{ '{:>10000000000}'.format(1) }}", "a width of 10000000000"),
    ("{{ '{:>{w}}'.format(1, w=10**10) }}", "a width of 10000000000"),
    ("{{ ('{0}' * 1000).format('a' * 100000) }}", "by formatting"),
    ("{{ '%10000000000d' % 1 }}", "a width of 10000000000"),
    ("{{ '%*d' % (10**10, 1) }}", "a width of 10000000000"),
    ("{{ ('%(a)s' * 1000) % {'a': 'x' * 100000} }}", "by formatting with %"),
    ("{{ '%10000000000d'|format(1) }}", "a width of 10000000000"),
    ("{{ (1).to_bytes(10**10, 'big') }}", "a width of 10000000000"),
    ("{{ ('a' * 600000).join(['b', 'c', 'd']) }}", "by joining"),
    ("{{ (['a' * 100000] * 10)|join('x' * 100000) }}", "by joining"),
    ("{{ ('a' * 1000000).replace('a', 'bbbb') }}", "by replacing"),
    ("{{ ('\t' * 1000000).expandtabs(1000) }}", "by expanding tabs"),
    ("{{ ('a' * 600000) + ('b' * 600000) }}", "by adding"),
    ("{{ [['a' * 600000]]|sum(start=['b' * 600000]) }}", "by adding"),
    ("{{ [1]|slice(10**10) }}", "a count of 10000000000"),
    ("{{ [1]|batch(10**10, 0)|list }}", "a count of 10000000000"),
    ("{{ {'a': 1}|tojson(indent=10**9) }}", "an indent over 64"),
    ("{{ lipsum(10**9) }}", "`lipsum` is not defined"),
    ("{{ ('<a>' * 300000)|striptags }}", "more than 100000 characters"),
    ("{{ [].append(1) }}", "unsafe"),
    ("{{ hosts.web.update({'address': 'evil'}) }}", "unsafe"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursive too deeply"),
    ("{{ " + "(" * 300 + "1" + ")" * 300 + " }}", "too deeply"),
    (
        "{% set ns = namespace(s='a') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}",
        "a value of more than 1048576 characters and items",
    ),
    (
        "{% set ns = namespace(x=[0]) %}{% for i in range(100) %}{% set ns.x = [ns.x, ns.x] %}"
        "{% endfor %}",
        "a value of more than 1048576 characters and items",
    ),
    (
        "{% set ns = namespace(s='ab') %}{% for i in range(100) %}"
        "{% set ns.s %}{{ ns.s }}{{ ns.s }}{% endset %}{% endfor %}",
        "more than 16777216 characters",
    ),
    (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "more than 1000000 loop iterations and calls",
    ),
    (
        "{% for i in range(100000) %}{% for j in range(100000) %}" + "x" * 50 + "{% endfor %}"
        "{% endfor %}",
        "outputs more than 16777216 characters",
    ),
]


@pytest.mark.reliability(
    "bad input",
    "templates that fail or run away while rendering: division by zero, integer and float "
    "overflow, huge ranges, strings, lists, widths, joins and formats, type errors, unknown "
    "codecs, recursion, nesting, endless loops",
    "a playbook error naming the file, the key, the template's line and what went wrong, within "
    "seconds and without filling memory; nothing run",
)
def test_a_template_error_while_rendering_names_the_key_and_line(write, fuzz_cases):
    import time

    for template, expected in RUNTIME_ERRORS:
        path = write(
            "p.toml", MINIMAL + '[tasks.x]\nhost = "web"\nrun = """\ntrue\n' + template + '\n"""\n'
        )
        started = time.monotonic()
        with pytest.raises(PlaybookError) as caught:
            load_project(path)
        fuzz_cases.append("template")
        assert time.monotonic() - started < 15, template
        [problem] = caught.value.problems
        assert problem.file == path and problem.key == "tasks.x.run", (template, problem)
        assert problem.message.startswith("template "), (template, problem)
        assert expected in problem.message, (template, problem)
        if "too deeply" not in expected:
            assert "at line 2:" in problem.message, (template, problem)


def test_a_slow_template_is_stopped_at_the_deadline(write, monkeypatch):
    import time

    from fedi_run.engine.planning import template_sandbox

    monkeypatch.setattr(template_sandbox, "MAX_SECONDS", 0.5)
    path = write(
        "p.toml",
        MINIMAL + '[tasks.x]\nhost = "web"\nrun = """{% for i in range(100000) %}'
        "{{ ('a' * 500000).replace('a', 'b')|length }}{% endfor %}\"\"\"\n",
    )
    started = time.monotonic()
    with pytest.raises(PlaybookError, match="takes longer than 0.5 seconds to render"):
        load_project(path)
    assert time.monotonic() - started < 5


def test_every_templated_key_reports_its_own_runtime_error(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
[tasks.run]
host = "web"
run = "echo {{ 1/0 }}"
undo = "echo {{ 'a' + 1 }}"
[tasks.file]
host = "web"
file = { path = "/etc/motd", content = "{{ 'x'.encode('nope') }}" }
""",
    )
    with pytest.raises(PlaybookError) as caught:
        load_project(path)
    found = {p.key: p.message for p in caught.value.problems}
    assert set(found) == {"tasks.run.run", "tasks.run.undo", "tasks.file.file.content"}
    assert "division by zero" in found["tasks.run.run"]
    assert "can only concatenate" in found["tasks.run.undo"]
    assert "unknown encoding" in found["tasks.file.file.content"]


def test_the_sandbox_leaves_ordinary_templates_alone(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
[hosts.db]
address = "127.0.0.3"
[tasks.x]
host = "web"
run = \"\"\"{% macro up(s) %}{{ s|upper }}{% endmacro -%}
{% for name, h in hosts|dictsort %}{{ name }}={{ h.address }}{{ ',' if not loop.last }}{% endfor %}
{{ [1, 2, 3]|join('-') }} {{ '%05d' % 42 }} {{ '{}:{}'.format('a', 2**10) }} {{ 'x'.center(5) }}|
{{ [[1], [2]]|sum(start=[]) }} {{ [1, 2, 3]|sum }} {{ up(deployment.name) }} {{ 7 // 2 }}
{{ (hosts.web.address ~ ':' ~ hosts.web.port)|quote }} {{ 'ab' * 3 }} {{ range(3)|list }}
{{ (([[1]] * 100000)|sum(start=[]))|length }}\"\"\"
""",
    )
    task = load_project(path).graph.tasks["tasks.x"]
    assert task.actions[0].run.splitlines() == [
        "db=127.0.0.3,web=127.0.0.2",
        "1-2-3 00042 a:1024   x  |",
        "[1, 2] 6 TEST 3",
        "127.0.0.2:22 ababab [0, 1, 2]",
        "100000",  # in linear time
    ]
