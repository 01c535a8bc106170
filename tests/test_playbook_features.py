"""The playbook's `[vars]`, `env`, `when`, `changed_when` and `owner = "user:group"`: what the
loader accepts and refuses (naming the key), the tasks and the plan they make, and — on the fake
pool, whose scripts a real local `sh` runs — what they do."""

from __future__ import annotations

import os

import pytest
from fakes.harness import run_tasks
from fakes.pool import FakePool
from helpers import MINIMAL

from fedi_run.engine.errors import PlaybookError
from fedi_run.engine.execute import scripts
from fedi_run.engine.model.validators import check_owner
from fedi_run.engine.planning.operations import ChangedWhen, Command, Directory, File
from fedi_run.engine.planning.plan import make_plan
from fedi_run.engine.planning.selection import Selector, select
from fedi_run.engine.project import load_project
from fedi_run.engine.report.events import Status


def problems(path, *inventories) -> str:
    with pytest.raises(PlaybookError) as raised:
        load_project(path, inventories=inventories, apply=False)
    return str(raised.value)


def tasks_of(path, *inventories):
    return load_project(path, inventories=inventories, apply=False).graph.tasks


# [vars] -----------------------------------------------------------------------------------------


def test_vars_reach_every_template_as_plain_data(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
[vars]
motd_text = "Hello"
raw = "{{ deployment.name }}"
ports = [80, 443]
site = { name = "blog", debug = false }

[tasks.motd]
host = "web"
[tasks.motd.file]
path = "/etc/motd"
content = "{{ vars.motd_text }} {{ vars.raw }} {{ vars.ports | join(',') }} {{ vars.site.name }}\\n"
""",
    )
    [action] = tasks_of(path)["tasks.motd"].actions
    assert action.content == "Hello {{ deployment.name }} 80,443 blog\n"


def test_an_inventorys_vars_merge_key_by_key_over_the_playbooks(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
[vars]
a = "playbook"
site = { name = "blog", port = 80 }

[tasks.show]
host = "web"
run = "echo {{ vars.a }} {{ vars.b }} {{ vars.site.name }} {{ vars.site.port }}"
""",
    )
    first = write("first.toml", '[vars]\nb = "first"\nsite = { port = 8080 }\n')
    second = write("second.toml", '[vars]\nb = "second"\n')
    [command] = tasks_of(path, first, second)["tasks.show"].actions
    assert command.run == "echo playbook second blog 8080"


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ('"motd-text" = 1', "vars.motd-text", "expected a variable name"),
        ('"1st" = 1', "vars.1st", "expected a variable name"),
        ('ok = { deep = ["a\\u001bb"] }', "vars.ok", "control character U+001B (ESC)"),
    ],
)
def test_bad_vars_are_playbook_errors_naming_the_key(write, table, key, message):
    path = write("p.toml", MINIMAL + f"\n[vars]\n{table}\n")
    text = problems(path)
    assert f"p.toml: {key}: " in text and message in text


def test_vars_must_be_a_table(write):
    path = write("p.toml", "vars = 3\n" + MINIMAL)
    assert "vars: found 3, expected a table" in problems(path)


# env --------------------------------------------------------------------------------------------


def test_env_values_are_templates_handed_to_run_and_undo(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
[tasks.app]
hosts = ["web"]
run = "make install"
undo = "make uninstall"
env = { PREFIX = "/srv/{{ host.name }}", DOMAIN = "{{ deployment.domain }}" }
""",
    )
    task = tasks_of(path)["tasks.app@web"]
    env = (("PREFIX", "/srv/web"), ("DOMAIN", "example.org"))
    assert task.actions == (Command("make install", env=env),)
    assert task.undo_actions() == (Command("make uninstall", env=env),)


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ('run = "true"\nenv = { "RAILS-ENV" = "x" }', "tasks.t.env.RAILS-ENV", "variable name"),
        ('run = "true"\nenv = { "9X" = "x" }', "tasks.t.env.9X", "not starting with a digit"),
        ('run = "true"\nenv = { A = "{{ nope }}" }', "tasks.t.env.A", "nope"),
        ('run = "true"\nenv = { A = 1 }', "tasks.t.env.A", "expected a string"),
        (
            'file = { path = "/x", content = "" }\nenv = { A = "b" }',
            "tasks.t",
            "`env` is for the task's commands",
        ),
        ("run = 'true'\nenv = { A = '{{ \"\\x00\" }}' }", "tasks.t.env.A", "NUL"),
    ],
)
def test_bad_env_is_a_playbook_error_naming_the_key(write, table, key, message):
    path = write("p.toml", MINIMAL + f'\n[tasks.t]\nhost = "web"\n{table}\n')
    text = problems(path)
    assert f"p.toml: {key}: " in text and message in text, text


def test_env_values_never_reach_the_scripts_text(tmp_path):
    hostile = 'it\'s $(touch {}) `id` "q" ;\nnext line'.format(tmp_path / "injected")
    out = tmp_path / "env.out"
    part = scripts.command_part(
        "0.0",
        f'printf "%s" "$HOSTILE" > {out}',
        None,
        'test "$HOSTILE" != never',
        env=(("HOSTILE", hostile),),
    )
    script = scripts.compile_script([[part]], check=False)
    assert hostile not in script.text and "HOSTILE" not in script.text
    task_pool = FakePool()
    from fedi_run.engine.planning.tasks import Task

    task = Task(
        "tasks.env",
        "web",
        actions=(
            Command(
                f'printf "%s" "$HOSTILE" > {out}',
                unless='test "$HOSTILE" != never',
                env=(("HOSTILE", hostile),),
            ),
        ),
    )
    ran = run_tasks([task], task_pool)
    # the guard saw it too: `test "$HOSTILE" != never` succeeded, so the command did not run
    assert ran.statuses["tasks.env"] == Status.OK and not out.exists()
    task = Task(
        "tasks.env",
        "web",
        actions=(Command(f'printf "%s" "$HOSTILE" > {out}', env=(("HOSTILE", hostile),)),),
    )
    ran = run_tasks([task], task_pool)
    assert ran.statuses["tasks.env"] == Status.CHANGED
    assert out.read_text() == hostile
    assert not (tmp_path / "injected").exists()
    assert all(hostile not in call.command for call in ran.calls)


# when -------------------------------------------------------------------------------------------


def test_when_false_keeps_the_task_in_the_graph_and_plan_as_skipped(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
[tasks.off]
host = "web"
run = "{{ initial_user.username }}"
when = "{{ services.mastodon.enabled }}"

[tasks.on]
host = "web"
run = "true"
when = " True "
requires = ["tasks.off"]

[tasks.literal]
host = "web"
run = "true"
when = false
""",
    )
    project = load_project(path, apply=False)
    tasks = project.graph.tasks
    assert tasks["tasks.off"].skipped == "when: false" and tasks["tasks.off"].actions == ()
    assert tasks["tasks.off"].undo_actions() == ()
    assert tasks["tasks.literal"].skipped == "when: false"
    assert tasks["tasks.on"].skipped == "" and tasks["tasks.on"].actions == (Command("true"),)
    assert project.graph.dependencies("tasks.on") == ["tasks.off"]
    plan = make_plan("test", project.graph, select(project.graph, Selector()))
    line = next(line for line in plan.render().splitlines() if "tasks.off" in line)
    assert line.endswith("(skipped: when: false)")
    assert {t.id: t.skipped for t in plan.tasks}["tasks.off"] == "when: false"
    planned = {t["id"]: t["skipped"] for t in plan.to_json()["tasks"]}
    assert planned["tasks.off"] == "when: false" and planned["tasks.on"] == ""


@pytest.mark.parametrize(
    ("when", "found"),
    [("{{ 'yes' }}", "'yes'"), ("maybe", "'maybe'"), ("{{ '' }}", "an empty string")],
)
def test_when_that_is_not_true_or_false_is_a_playbook_error(write, when, found):
    path = write("p.toml", MINIMAL + f'\n[tasks.t]\nhost = "web"\nrun = "true"\nwhen = "{when}"\n')
    assert f"tasks.t.when: rendered to {found}, expected true or false" in problems(path)


def test_when_renders_per_host(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
[hosts.db]
address = "127.0.0.3"

[tasks.t]
hosts = ["web", "db"]
run = "true"
when = "{{ host.name == 'db' }}"
""",
    )
    tasks = tasks_of(path)
    assert tasks["tasks.t@web"].skipped == "when: false"
    assert tasks["tasks.t@db"].skipped == ""


def test_a_skipped_task_never_reaches_its_host_and_its_dependants_run(tmp_path):
    from fedi_run.engine.planning.tasks import Task

    marker = tmp_path / "after"
    tasks = [
        Task("tasks.off", "web", skipped="when: false"),
        Task("tasks.after", "web", requires=("tasks.off",), actions=(Command(f"touch {marker}"),)),
    ]
    ran = run_tasks(tasks, FakePool())
    assert ran.statuses == {"tasks.off": Status.SKIPPED, "tasks.after": Status.CHANGED}
    assert ran.message("tasks.off") == "skipped: when: false"
    assert "tasks.off" not in ran.started() and marker.exists()
    assert len(ran.calls) == 1  # the dependant's script only
    down = run_tasks(tasks, FakePool(), kind="teardown")
    assert down.statuses["tasks.off"] == Status.SKIPPED


# changed_when -----------------------------------------------------------------------------------


def test_changed_when_is_a_boolean_or_a_template_checked_at_load(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
[tasks.never]
host = "web"
run = "true"
changed_when = false

[tasks.judged]
host = "web"
run = "apt-get update"
changed_when = "{{ 'updated' in result.stdout }}"
""",
    )
    tasks = tasks_of(path)
    assert tasks["tasks.never"].actions == (Command("true", changed_when=False),)
    [judged] = tasks["tasks.judged"].actions
    assert isinstance(judged.changed_when, ChangedWhen)
    judge = judged.changed_when.judge
    assert judge({"stdout": "3 updated", "stderr": "", "exit_status": 0}) is True
    assert judge({"stdout": "nothing", "stderr": "", "exit_status": 0}) is False


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{% if %}", "template syntax error at line 1"),
        ("{{ resutl.stdout }}", "'resutl' is undefined (did you mean 'result'?)"),
    ],
)
def test_a_broken_changed_when_is_a_playbook_error(write, template, message):
    path = write(
        "p.toml",
        MINIMAL + f'\n[tasks.t]\nhost = "web"\nrun = "true"\nchanged_when = "{template}"\n',
    )
    text = problems(path)
    assert "p.toml: tasks.t.changed_when: " in text and message in text


def test_changed_when_only_on_run(write):
    path = write(
        "p.toml",
        MINIMAL + '\n[tasks.t]\nhost = "web"\ndirectory = { path = "/x" }\nchanged_when = true\n',
    )
    assert "`changed_when` is for `run` tasks only" in problems(path)


def test_changed_when_decides_from_the_commands_real_output(write, tmp_path):
    path = write(
        "p.toml",
        MINIMAL
        + """
[tasks.yes]
host = "web"
run = "echo updated; echo oops >&2"
changed_when = "{{ result.stdout.startswith('updated') and 'oops' in result.stderr }}"

[tasks.no]
host = "web"
run = "echo nothing"
changed_when = "{{ 'updated' in result.stdout }}"

[tasks.never]
host = "web"
run = "echo x"
changed_when = false

[tasks.bad]
host = "web"
run = "echo maybe"
changed_when = "{{ result.stdout | trim }}"

[tasks.failing]
host = "web"
run = "exit 3"
changed_when = "{{ true }}"
""",
    )
    graph = load_project(path, apply=False).graph
    ran = run_tasks(graph, FakePool(), order=[t for t in graph.order if t.startswith("tasks.")])
    assert ran.statuses["tasks.yes"] == Status.CHANGED
    assert ran.statuses["tasks.no"] == Status.OK
    assert ran.statuses["tasks.never"] == Status.OK
    assert ran.statuses["tasks.bad"] == Status.FAILED
    assert "changed_when: rendered to 'maybe', expected true or false" in ran.message("tasks.bad")
    assert "exited with status 3" in ran.message("tasks.failing")
    check = run_tasks(graph, FakePool(), order=["tasks.never", "tasks.no"], check=True)
    assert check.statuses == {"tasks.never": Status.OK, "tasks.no": Status.CHANGED}


# owner ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "owner", ["www-data", "mastodon:www-data", "Admin.User_1", "0:0", "1000", "app:100"]
)
def test_owner_accepts_users_groups_and_numeric_ids(owner):
    assert check_owner(owner) == owner


@pytest.mark.parametrize(
    "owner", ["", ":", "user:", ":group", "-x", "a:b:c", "a b", "x" * 33, "4294967295", "a;b"]
)
def test_owner_refuses_anything_else(owner):
    with pytest.raises(ValueError, match="expected 'user' or 'user:group'"):
        check_owner(owner)


def test_owner_user_group_in_the_playbook(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
[tasks.d]
host = "web"
directory = { path = "/srv/app", owner = "app:www-data" }

[tasks.f]
host = "web"
file = { path = "/srv/app/x", content = "x", owner = "0:0" }

[tasks.bad]
host = "web"
file = { path = "/srv/app/y", content = "y", owner = "app:www:data" }
""",
    )
    text = problems(path)
    assert "tasks.bad.file.owner: found 'app:www:data', expected 'user' or 'user:group'" in text
    path.write_text(path.read_text().replace('"app:www:data"', '"app"'))
    tasks = tasks_of(path)
    assert tasks["tasks.d"].actions == (Directory("/srv/app", owner="app:www-data"),)
    assert tasks["tasks.f"].actions == (File("/srv/app/x", "x", owner="0:0"),)


def test_owner_by_id_or_name_is_set_once_and_then_kept(tmp_path):
    from fedi_run.engine.planning.tasks import Task

    user, group = os.getuid(), os.getgid()
    folder, conf = tmp_path / "dir", tmp_path / "dir" / "conf"
    import grp
    import pwd

    by_name = f"{pwd.getpwuid(user).pw_name}:{grp.getgrgid(group).gr_name}"
    tasks = [
        Task("tasks.dir", "web", actions=(Directory(str(folder), 0o750, f"{user}:{group}"),)),
        Task(
            "tasks.conf",
            "web",
            requires=("tasks.dir",),
            actions=(File(str(conf), "x\n", 0o640, by_name),),
        ),
    ]
    first = run_tasks(tasks, FakePool())
    assert first.statuses == {"tasks.dir": Status.CHANGED, "tasks.conf": Status.CHANGED}
    assert (folder.stat().st_uid, folder.stat().st_gid) == (user, group)
    assert (conf.stat().st_uid, conf.stat().st_gid) == (user, group)
    second = run_tasks(tasks, FakePool())
    assert second.statuses == {"tasks.dir": Status.OK, "tasks.conf": Status.OK}
    # a different group (by id) than the file has is a change
    other = next((g.gr_gid for g in grp.getgrall() if g.gr_gid != group), None)
    assert other is not None
    drift = [Task("tasks.conf", "web", actions=(File(str(conf), "x\n", 0o640, f"{user}:{other}"),))]
    third = run_tasks(drift, FakePool())
    assert third.statuses == {"tasks.conf": Status.CHANGED}
    assert conf.stat().st_gid == other
