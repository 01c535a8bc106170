"""The operator's own tasks: templates over the playbook's values, per-host ids, errors that
name the key and the line."""

from __future__ import annotations

import pytest

from conftest import EXAMPLES, MINIMAL
from fedi_run.engine.errors import PlaybookError
from fedi_run.engine.operations import Command
from fedi_run.engine.project import load_project


def test_basic_example_tasks():
    graph = load_project(EXAMPLES / "basic.toml").graph
    hello = graph.tasks["tasks.hello"]
    assert hello.host == "hello" and hello.tags == ("programs",)
    assert "Hello from hello in basic.example.org" in hello.actions[0].run
    assert hello.undo == (Command("rm -f /usr/local/bin/hello"),)
    assert graph.tasks["tasks.motd@cowsay"].actions[0].run == (
        "echo 'Welcome to basic.example.org (cowsay)' > /etc/motd"
    )
    assert graph.dependencies("tasks.motd@hello") == ["tasks.cowsay", "tasks.hello"]


def test_template_sees_services_and_quote_filter(write):
    path = write("p.toml", MINIMAL + """
[initial_user]
username = "admin"
display_name = "O'Brien & co"
email = "admin@example.org"
password_file = "pw"

[tasks.who]
host = "web"
run = "echo {{ initial_user.display_name | quote }} {{ services.mastodon.enabled }}"
""")
    task = load_project(path).graph.tasks["tasks.who"]
    assert task.actions[0].run == "echo 'O'\"'\"'Brien & co' False"


def test_user_task_may_require_a_plugin_task(write):
    path = write("p.toml", MINIMAL + """
[hosts.garage]
address = "127.0.0.3"
[services.mastodon]
enable = true
host = "web"
[tasks.motd]
host = "web"
run = "true"
requires = ["mastodon.secrets"]
""")
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
    path = write("p.toml", MINIMAL + '[tasks.x]\nhost = "web"\nrun = """\ntrue\necho {{ oops \n"""\nundo = "{% if %}"\n')
    with pytest.raises(PlaybookError) as caught:
        load_project(path)
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}: tasks.x.run: template syntax error at line 2:")
    assert problems[1].startswith(f"{path}: tasks.x.undo: template syntax error at line 1:")


def test_template_cannot_reach_python_internals(write):
    path = write("p.toml", MINIMAL + '[tasks.x]\nhost = "web"\nrun = "{{ deployment.__class__.__mro__ }}"\n')
    with pytest.raises(PlaybookError, match="tasks.x.run: template error"):
        load_project(path)


def test_unknown_requirement_in_user_task(write):
    from fedi_run.engine.errors import GraphError

    path = write("p.toml", MINIMAL + '[tasks.x]\nhost = "web"\nrun = "true"\nrequires = ["tasks.y"]\n')
    with pytest.raises(GraphError, match="task 'tasks.x' \\(the playbook's \\[tasks\\]\\) requires 'tasks.y', which is not a task"):
        load_project(path)
