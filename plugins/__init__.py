"""fedi-run's built-in service plugins, each registered through the ``fedi_run`` entry-point
group."""
