"""The panel's Django application."""

from __future__ import annotations

from django.apps import AppConfig


class PanelConfig(AppConfig):
    """fedi-run's web panel (label ``fedi_panel``)."""

    name = "fedi_run.panel"
    label = "fedi_panel"
    verbose_name = "fedi-run panel"
    default_auto_field = "django.db.models.BigAutoField"
