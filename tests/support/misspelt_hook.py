"""A plugin with a hook implementation whose name matches no hook."""

from fedi_run.engine.plugin.hookspecs import hookimpl


@hookimpl
def fedi_run_taks(playbook):
    return []
