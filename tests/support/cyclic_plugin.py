"""A plugin whose tasks form a cycle."""

from fedi_run.engine.api import Task, hookimpl


@hookimpl
def fedi_run_tasks(playbook):
    host = next(iter(playbook.hosts))
    return [
        Task("loop.a", host, requires=("loop.c",)),
        Task("loop.b", host, requires=("loop.a",)),
        Task("loop.c", host, requires=("loop.b",)),
    ]
