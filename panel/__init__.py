"""fedi-run's web panel: a Django application on the deployer (``pip install 'fedi-run[panel]'``).

An operator logs in, describes a deployment in a form (domain, an inventory's hosts, a switch
per service, the initial user), saves it, deploys it and watches the run live; the run history
keeps each run's recap and (masked) log; a teardown asks for a confirmation first.

Nothing here imports Django at module level except the Django application's own modules
(models, views, forms, urls): :mod:`fedi_run.panel.cli` is what ``fedi-run panel`` mounts, and
it imports Django only when a command runs. See docs/panel.md.
"""
