"""Benchmark: building, validating and planning a synthetic graph of 10,000 tasks on 100 hosts,
selecting one task from it, and `fedi-run --help` start-up.

Run:  python bench/plan_bench.py [--repeat N]

Prints a table of medians (and the goals from the foundation issue). It measures; it does not
assert: the goals are read off the table, not enforced by a timed test.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedi_run.engine.planning.graph import TaskGraph
from fedi_run.engine.planning.plan import make_plan
from fedi_run.engine.planning.selection import Selector, select
from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.project import load_project

HOSTS = 100
TASKS = 10_000


def synthetic_tasks(hosts: int = HOSTS, count: int = TASKS, seed: int = 1) -> list[Task]:
    """``count`` tasks over ``hosts`` hosts: each waits for the previous task on its host and,
    one time in three, for a random earlier task elsewhere (about 1.3 edges per task)."""
    rng = random.Random(seed)
    tasks = []
    for index in range(count):
        host = f"h{index % hosts}"
        requires = []
        if index >= hosts:
            requires.append(f"bench.t{index - hosts}@{host}")
        if index > 0 and rng.random() < 1 / 3:
            other = rng.randrange(index)
            requires.append(f"bench.t{other}@h{other % hosts}")
        tasks.append(
            Task(
                f"bench.t{index}@{host}",
                host,
                requires=tuple(dict.fromkeys(requires)),
                tags=(f"g{index % 7}",),
            )
        )
    return tasks


def synthetic_playbook(directory: Path, hosts: int = HOSTS, count: int = TASKS) -> Path:
    """A playbook.toml with ``count`` tasks as an operator would write them: ``count / hosts``
    task tables, each run on every host (``hosts = [...]``), each after the previous one on the
    same host, each a jinja2 template over the playbook and the host."""
    lines = ['[deployment]\nname = "bench"\ndomain = "bench.example.org"\n']
    names = [f"h{h}" for h in range(hosts)]
    for h in range(hosts):
        lines.append(f'[hosts.h{h}]\naddress = "127.0.{h // 250}.{h % 250 + 2}"\n')
    for index in range(count // hosts):
        requires = f'requires = ["tasks.t{index - 1}"]\n' if index else ""
        lines.append(
            f"[tasks.t{index}]\nhosts = {names!r}\n".replace("'", '"')
            + f'run = "echo {index} > /tmp/{{{{ deployment.name }}}}-'
            f'{{{{ host.name }}}}-{index}"\n{requires}'
        )
    path = directory / "bench.toml"
    path.write_text("\n".join(lines))
    return path


def timed(function, repeat: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    tasks = synthetic_tasks()

    def build_and_plan():
        graph = TaskGraph.build(tasks, {f"h{h}" for h in range(HOSTS)})
        return graph, make_plan("bench", graph, select(graph, Selector()))

    plan_time, (graph, plan) = timed(build_and_plan, args.repeat)
    target = graph.order[len(graph.order) // 2]
    select_time, selection = timed(lambda: select(graph, Selector(only=(target,))), args.repeat)
    select_plan_time, _ = timed(
        lambda: make_plan("bench", graph, select(graph, Selector(only=(target,)))), args.repeat
    )
    with tempfile.TemporaryDirectory() as tmp:
        playbook = synthetic_playbook(Path(tmp))
        toml_time, project = timed(lambda: project_plan(playbook), max(3, args.repeat // 2))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    help_time, _ = timed(
        lambda: subprocess.run(["fedi-run", "--help"], capture_output=True, env=env, check=True),
        args.repeat,
    )
    python_time, _ = timed(
        lambda: subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True),
        args.repeat,
    )

    rows = [
        (f"build + validate + plan, {TASKS} tasks / {HOSTS} hosts (Python API)", plan_time, 1.0),
        (
            f"the same from a playbook.toml: 100 task tables x {HOSTS} hosts (read, render, plan)",
            toml_time,
            1.0,
        ),
        (f"select one task ({len(selection)} with its dependencies)", select_time, 0.2),
        ("select one task and plan it", select_plan_time, 0.2),
        ("fedi-run --help (whole process)", help_time, 0.3),
        ("  python -c pass (interpreter start, for reference)", python_time, None),
    ]
    print(f"fedi-run plan benchmark: median of {args.repeat} runs, {os.cpu_count()} cores")
    print(f"{'measurement':<84} {'median':>9} {'goal':>7} {'ratio':>6}")
    for name, seconds, goal in rows:
        goal_text = f"{goal:.1f} s" if goal else "-"
        ratio = f"{seconds / goal:.2f}" if goal else "-"
        print(f"{name:<84} {seconds * 1000:>7.1f}ms {goal_text:>7} {ratio:>6}")
    print(f"edges: {len(graph.edges())}, steps: {len(plan.steps)}")


def project_plan(playbook: Path):
    project = load_project(playbook, apply=True)
    return project.plan()


if __name__ == "__main__":
    main()
