"""Template filters for runs (``{% load panel_runs %}``): a run's result label and tone
(:mod:`fedi_run.panel.run_display`, one colour per meaning on every page), its number (the
engine's history id), and the version of fedi-run for the footer."""

from __future__ import annotations

from django import template

from fedi_run.panel import run_display

register = template.Library()


@register.filter
def run_tone(run) -> str:
    """The CSS class of ``run``'s result: ok, failed, interrupted, broken, running, queued."""
    return run_display.shown_run(run).tone


@register.filter
def run_label(run) -> str:
    """``done``, ``failed (exit 1)``, ``interrupted``, ``could not run``, ``broken off``, …"""
    return run_display.shown_run(run).label


@register.filter
def run_number(run) -> str:
    """The engine's history id of ``run`` (``queued`` while it has none yet)."""
    return run_display.number(run.engine_run_id, run.state)


@register.simple_tag
def fedi_run_version() -> str:
    """The version of fedi-run serving the page."""
    from fedi_run.engine import __version__

    return __version__
