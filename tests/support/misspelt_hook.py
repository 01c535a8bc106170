"""A plugin with a hook implementation whose name matches no hook."""

from fedi_run.engine.api import hookimpl


@hookimpl
def fedi_run_taks(playbook):
    return []
