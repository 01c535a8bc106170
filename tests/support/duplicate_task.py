"""A plugin that returns a task id the mastodon plugin also returns."""

from fedi_run.engine.api import Task, hookimpl


@hookimpl
def fedi_run_tasks(playbook):
    if playbook.is_enabled("mastodon"):
        return [Task("mastodon.secrets", playbook.service_host("mastodon"))]
    return []
