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
    assert message.startswith(f"error: {path}: tasks.x.run: template error:")
    assert "has no attribute 'nme'" in message


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
    from fedi_run.engine.errors import GraphError

    path = write(
        "p.toml", MINIMAL + '[tasks.x]\nhost = "web"\nrun = "true"\nrequires = ["tasks.y"]\n'
    )
    with pytest.raises(
        GraphError,
        match=(
            "task 'tasks.x' \\(the playbook's \\[tasks\\]\\) requires 'tasks.y', "
            "which is not a task"
        ),
    ):
        load_project(path)
