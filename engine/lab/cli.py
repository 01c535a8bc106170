"""``fedi-run lab``: placeholder until the lab lands."""

import click


@click.group()
def lab() -> None:
    """Start and stop throwaway target hosts and an ACME server on this machine."""
