"""Environments defined by staff (issue 17): filled in by that work."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("panel", "0002_runs_on_workers")]

    operations = []
