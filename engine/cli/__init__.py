"""The ``fedi-run`` command line."""
