"""Hooks go through pluggy, so ``tryfirst``, ``trylast`` and hook wrappers work, and every
result is still attributed to the plugin that returned it; ``Call`` names a function itself."""

from __future__ import annotations

import pytest
from helpers import MINIMAL

from fedi_run.engine.api import Call, Command, Task, hookimpl
from fedi_run.engine.errors import PluginError
from fedi_run.engine.plugin.manager import Plugins
from fedi_run.engine.project import load_project


def _task(task_id: str) -> Task:
    return Task(task_id, None, actions=(Command("true"),))


class Ordinary:
    @hookimpl
    def fedi_run_tasks(self):
        return [_task("ordinary.one")]


class First:
    @hookimpl(tryfirst=True)
    def fedi_run_tasks(self):
        return [_task("first.one")]


class Last:
    @hookimpl(trylast=True)
    def fedi_run_tasks(self):
        return [_task("last.one")]


class Wrapper:
    seen: list[list[str]] = []

    @hookimpl(wrapper=True)
    def fedi_run_tasks(self):
        results = yield
        Wrapper.seen.append([task.id for result in results for task in result])
        return [*results, [_task("wrapper.added")]]


def _ids(plugins: Plugins, write) -> list[str]:
    project = load_project(write("p.toml", MINIMAL), plugins=plugins, apply=False)
    return [t.id for t in plugins.tasks(project.playbook)]


def _load(*objects):
    return Plugins.load(
        disabled=("acme", "garage", "mastodon", "peertube", "pixelfed"), objects=objects
    )


def test_plugins_are_called_in_load_order_by_default(write):
    plugins = _load(("a", Last()), ("b", Ordinary()), ("c", First()))
    assert _ids(plugins, write) == ["first.one", "ordinary.one", "last.one"]


def test_a_tryfirst_implementation_runs_first_whatever_the_load_order(write):
    plugins = _load(("b", Ordinary()), ("c", First()))
    assert _ids(plugins, write)[0] == "first.one"
    plugins = _load(("c", First()), ("b", Ordinary()))
    assert _ids(plugins, write)[0] == "first.one"


def test_results_are_attributed_to_their_plugin(write):
    plugins = _load(("b", Ordinary()), ("c", First()))
    project = load_project(write("p.toml", MINIMAL), plugins=plugins, apply=False)
    owners = {t.id: t.plugin for t in plugins.tasks(project.playbook)}
    assert owners == {"first.one": "c", "ordinary.one": "b"}


def test_a_hook_wrapper_sees_and_extends_the_results(write):
    Wrapper.seen.clear()
    plugins = _load(("b", Ordinary()), ("w", Wrapper()))
    project = load_project(write("p.toml", MINIMAL), plugins=plugins, apply=False)
    tasks = plugins.tasks(project.playbook)
    assert Wrapper.seen[-1] == ["ordinary.one"]
    assert {t.id: t.plugin for t in tasks} == {"ordinary.one": "b", "wrapper.added": "w"}


class Broken:
    @hookimpl
    def fedi_run_tasks(self):
        raise ZeroDivisionError("on purpose")


def test_a_plugin_bug_is_a_plugin_error_naming_it(write):
    plugins = _load(("broken", Broken()))
    with pytest.raises(PluginError) as caught:
        _ids(plugins, write)
    assert str(caught.value) == (
        "error: plugin 'broken' failed in fedi_run_tasks: ZeroDivisionError: on purpose"
    )


def module_level(context):
    return False


def test_a_call_names_the_function_itself():
    call = Call(module_level)
    assert call.function is module_level
    assert call.name == "test_plugin_calls:module_level"


@pytest.mark.parametrize(
    "target, expected",
    [
        ("fedi_run.plugins.acme.reach:check", "expected the function itself, not str"),
        (lambda context: True, "expected a module-level function"),
    ],
)
def test_a_call_refuses_a_name_or_a_nested_function(target, expected):
    with pytest.raises(TypeError, match=expected):
        Call(target)


class ReadsNothing:
    @hookimpl
    def fedi_run_tasks(self):
        return [
            Task("reads.bad", None, actions=(Command("true"),), reads=("deployment.no_such_key",))
        ]


def test_a_task_reading_an_unknown_key_is_a_plugin_error(write):
    plugins = Plugins.load(disabled=(), objects=[("reads", ReadsNothing())])
    with pytest.raises(PluginError) as caught:
        load_project(write("p.toml", MINIMAL), plugins=plugins)
    expected = "task reads.bad reads 'deployment.no_such_key', which names no value"
    assert expected in str(caught.value)
