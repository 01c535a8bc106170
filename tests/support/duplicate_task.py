"""A plugin that returns a task id the mastodon plugin also returns."""

from fedi_run.engine.planning.tasks import Task
from fedi_run.engine.plugin.hookspecs import hookimpl


@hookimpl
def fedi_run_tasks(playbook):
    if playbook.is_enabled("mastodon"):
        return [Task("mastodon.secrets", playbook.service_host("mastodon"))]
    return []
