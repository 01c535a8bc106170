"""The task graph: built from Task values, validated before anything runs."""

from __future__ import annotations

import pytest

from fedi_run.engine.errors import GraphError
from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.tasks import Task

HOSTS = {"a", "b", "c"}


def build(*tasks):
    return TaskGraph.build(tasks, HOSTS)


def test_edges_run_from_dependency_to_dependent():
    graph = build(Task("x.one", "a"), Task("x.two", "b", requires=("x.one",)))
    assert graph.dependencies("x.two") == ["x.one"]
    assert graph.dependents("x.one") == ["x.two"]
    assert graph.order == ("x.one", "x.two")
    assert graph.steps() == [["x.one"], ["x.two"]]


def test_independent_tasks_share_a_step():
    graph = build(Task("x.b", "a"), Task("x.a", "b"), Task("x.c", "c", requires=("x.a", "x.b")))
    assert graph.steps() == [["x.a", "x.b"], ["x.c"]]


def test_family_requirement_prefers_the_same_host():
    graph = build(
        Task("acme.trust@a", "a"),
        Task("acme.trust@b", "b"),
        Task("svc.x", "a", requires=("acme.trust",)),
        Task("svc.local", None, requires=("acme.trust",)),
    )
    assert graph.dependencies("svc.x") == ["acme.trust@a"]
    assert graph.dependencies("svc.local") == ["acme.trust@a", "acme.trust@b"]


def test_duplicate_id_names_both_plugins():
    with pytest.raises(GraphError) as caught:
        TaskGraph.build([Task("x.one", "a", plugin="p1"), Task("x.one", "b", plugin="p2")], HOSTS)
    assert str(caught.value) == (
        "error: invalid task graph: duplicate task id 'x.one': contributed by plugin 'p1' "
        "and by plugin 'p2'"
    )


def test_unknown_dependency_is_named_with_a_suggestion():
    with pytest.raises(GraphError) as caught:
        build(Task("x.one", "a"), Task("x.two", "a", requires=("x.oen",)))
    assert (
        "task 'x.two' (the engine) requires 'x.oen', which is not a task (did you mean 'x.one'?)"
        in str(caught.value)
    )


def test_unknown_host_is_named():
    with pytest.raises(GraphError) as caught:
        build(Task("x.one", "d"))
    assert "task 'x.one' (the engine) runs on host 'd', which is not in [hosts]" in str(
        caught.value
    )


def test_cycle_is_printed_in_full():
    with pytest.raises(GraphError) as caught:
        build(
            Task("x.a", "a", requires=("x.c",)),
            Task("x.b", "a", requires=("x.a",)),
            Task("x.c", "a", requires=("x.b",)),
        )
    message = str(caught.value)
    assert "dependency cycle:" in message
    cycle = message.split("dependency cycle: ")[1].split(" (")[0].split(" -> ")
    assert cycle[0] == cycle[-1] and sorted(cycle[:-1]) == ["x.a", "x.b", "x.c"]


def test_self_requirement():
    with pytest.raises(GraphError, match="task 'x.a' requires itself"):
        build(Task("x.a", "a", requires=("x.a",)))


def test_all_problems_at_once():
    with pytest.raises(GraphError) as caught:
        build(Task("x.a", "z", requires=("nope.x",)), Task("x.a", "a"))
    assert len(caught.value.problems) == 3


def test_task_ids_are_checked():
    with pytest.raises(ValueError, match="not of the form"):
        Task("noname", "a")
    with pytest.raises(ValueError, match="names host 'b' but runs on 'a'"):
        Task("x.y@b", "a")


def test_finished_with_runs_after_everything():
    graph = build(Task("x.a", "a"), Task("x.b", "b", requires=("x.a",)), Task("x.c", "c"))
    final = graph.finished_with(lambda sinks: Task("fin.al", None, requires=tuple(sinks)))
    assert final.order[-1] == "fin.al"
    assert final.ancestors(["fin.al"]) == {"x.a", "x.b", "x.c"}
    assert "fin.al" not in graph  # the original is unchanged


def test_edges_are_a_copy_the_graph_does_not_depend_on():
    graph = build(Task("x.a", "a"), Task("x.b", "b", requires=("x.a",)))
    edges = graph.edges()
    assert edges == [("x.a", "x.b")]
    edges.append(("x.b", "x.a"))
    assert graph.edges() == [("x.a", "x.b")] and graph.dependents("x.b") == []
