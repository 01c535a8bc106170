"""The panel's template tags (``{% load panel_runs %}``)."""
