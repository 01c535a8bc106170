"""A plugin that forgot the @hookimpl marker: it would silently do nothing."""


def fedi_run_tasks(playbook):
    return []
