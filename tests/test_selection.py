"""Selection: one implementation for plan, graph, run and teardown; closed under dependencies
unless --no-deps, and every order respects dependencies (property tests)."""

from __future__ import annotations

import pytest
from helpers import EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from fedi_run.engine.errors import SelectionError
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.selection import Selector, select
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.project import load_project


@pytest.fixture(scope="module")
def fediversity():
    return load_project(EXAMPLES / "fediversity.toml")


def test_no_filter_selects_everything(fediversity):
    selection = fediversity.select()
    assert set(selection.order) == set(fediversity.graph.tasks)
    assert set(selection.reasons.values()) == {"all"}


def test_only_pulls_in_dependencies_and_says_by_what(fediversity):
    selection = fediversity.select(Selector(only=("mastodon.s3",)))
    assert selection.reasons["mastodon.s3"] == "--only mastodon.s3"
    assert selection.reasons["garage.key.mastodon"] == "required by mastodon.s3"
    assert selection.reasons["garage.secrets"] == "required by garage.key.mastodon"
    assert selection.reasons["acme.reach@mastodon"].startswith("required by")
    assert "peertube.secrets" not in selection
    assert "nixops4.apply" not in selection


def test_no_deps_takes_exactly_the_selection(fediversity):
    selection = fediversity.select(Selector(only=("mastodon.s3",), with_dependencies=False))
    assert selection.order == ("mastodon.s3",)


def test_glob_and_family(fediversity):
    selection = fediversity.select(
        Selector(only=("acme.reach@*", "garage.key.*"), with_dependencies=False)
    )
    assert set(selection.order) == {
        "acme.reach@garage",
        "acme.reach@mastodon",
        "acme.reach@peertube",
        "acme.reach@pixelfed",
        "garage.key.mastodon",
        "garage.key.peertube",
        "garage.key.pixelfed",
    }
    family = fediversity.select(Selector(only=("acme.reach",), with_dependencies=False))
    assert {i.split("@")[0] for i in family.order} == {"acme.reach"} and len(family) == 4


def test_tags_and_skip_tags(fediversity):
    selection = fediversity.select(
        Selector(tags=("secrets",), skip_tags=("garage",), with_dependencies=False)
    )
    assert set(selection.order) == {"mastodon.secrets", "peertube.secrets", "pixelfed.secrets"}


def test_limit_selects_by_host(fediversity):
    selection = fediversity.select(Selector(limit=("pixel*",), with_dependencies=False))
    assert {fediversity.graph.tasks[i].host for i in selection.order} == {"pixelfed"}
    local = fediversity.select(Selector(limit=("local",), with_dependencies=False))
    assert {fediversity.graph.tasks[i].host for i in local.order} == {None}


def test_from_takes_the_task_and_everything_after(fediversity):
    order = fediversity.graph.order
    start = order[len(order) // 2]
    selection = fediversity.select(Selector(start=start, with_dependencies=False))
    assert selection.order == order[order.index(start) :]


def test_apply_needs_everything(fediversity):
    selection = fediversity.select(Selector(only=("nixops4.apply",)))
    assert set(selection.order) == set(fediversity.graph.tasks)
    assert selection.order[-1] == "nixops4.apply"


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            Selector(only=("mastodon.secret",)),
            "--only 'mastodon.secret' matches no task (did you mean 'mastodon.secrets'?)",
        ),
        (Selector(tags=("secret",)), "no task has the tag 'secret' (did you mean 'secrets'?)"),
        (
            Selector(limit=("mastdon",)),
            "--limit 'mastdon' matches no host that has tasks (did you mean 'mastodon'?)",
        ),
        (Selector(start="nope.task"), "--from 'nope.task' is not a task"),
        (Selector(only=("mastodon.*",), limit=("garage",)), "matches no task together"),
    ],
)
def test_selection_errors(fediversity, selector, message):
    with pytest.raises(SelectionError) as caught:
        fediversity.select(selector)
    assert message in str(caught.value)


@st.composite
def graphs(draw):
    """Random acyclic graphs: task i may only require tasks j < i (shuffled ids)."""
    count = draw(st.integers(1, 30))
    hosts = ["h0", "h1", "h2"]
    names = draw(st.permutations([f"t.n{i}" for i in range(count)]))
    tasks = []
    for index, name in enumerate(names):
        requires = (
            draw(st.lists(st.sampled_from(names[:index]), unique=True, max_size=4)) if index else []
        )
        tags = draw(st.lists(st.sampled_from(["x", "y", "z"]), unique=True, max_size=2))
        tasks.append(
            Task(name, draw(st.sampled_from(hosts)), requires=tuple(requires), tags=tuple(tags))
        )
    return TaskGraph.build(tasks, hosts)


@st.composite
def graph_and_selector(draw):
    graph = draw(graphs())
    ids = sorted(graph.tasks)
    only = tuple(draw(st.lists(st.sampled_from(ids), max_size=3, unique=True)))
    limit = tuple(draw(st.lists(st.sampled_from(sorted(graph.hosts())), max_size=2, unique=True)))
    with_dependencies = draw(st.booleans())
    return graph, Selector(only=only, limit=limit, with_dependencies=with_dependencies)


def _position(order):
    return {task_id: index for index, task_id in enumerate(order)}


@settings(max_examples=200, deadline=None)
@given(graph_and_selector())
def test_property_order_respects_dependencies_and_selection_is_closed(case):
    """Closed under dependencies up to the --limit boundary: a dependency is selected, or it
    is on a host outside the limit and listed in ``outside`` (to be checked as done)."""
    graph, selector = case
    try:
        selection = select(graph, selector)
    except SelectionError:
        return  # the filters matched nothing together: an error, not an empty run
    position = _position(selection.order)
    assert len(position) == len(selection.order)  # no duplicates
    if selector.limit:
        assert {graph.tasks[t].host for t in selection.order} <= set(selector.limit)
    for task_id in selection.order:
        for dependency in graph.dependencies(task_id):
            if dependency in position:
                assert position[dependency] < position[task_id]
            elif selector.with_dependencies:
                assert task_id in selection.outside[dependency], (task_id, dependency)
                assert selector.limit and graph.tasks[dependency].host not in selector.limit
    if not selector.with_dependencies:
        assert selection.outside == {}
    for dependency, needed_by in selection.outside.items():
        assert dependency not in position
        assert all(dependency in graph.dependencies(t) for t in needed_by)
    for task_id in selection.order:
        if selection.reasons[task_id].startswith("required by "):
            assert selector.with_dependencies
            dependent = selection.reasons[task_id].removeprefix("required by ")
            assert task_id in graph.dependencies(dependent)


@settings(max_examples=100, deadline=None)
@given(graphs())
def test_property_steps_hold_only_independent_tasks(graph):
    steps = graph.steps()
    step_of = {task_id: n for n, step in enumerate(steps) for task_id in step}
    assert sorted(step_of) == sorted(graph.tasks)
    for task_id in graph.tasks:
        for dependency in graph.dependencies(task_id):
            assert step_of[dependency] < step_of[task_id]
