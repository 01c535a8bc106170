"""Runs carried out by workers (issue 16): filled in by that work."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("panel", "0001_initial")]

    operations = []
