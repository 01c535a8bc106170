"""Runs carried out by workers (issue 16): a run's queue and worker states, its worker, its
heartbeat, Stop asked from any web process, resume and only; the output of a running run as
ordered events."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("fedi_panel", "0001_initial")]

    operations = [
        migrations.AlterField(
            model_name="run",
            name="state",
            field=models.CharField(
                choices=[
                    ("queued", "queued"),
                    ("running", "running"),
                    ("finished", "finished"),
                    ("error", "could not run"),
                    ("broken", "broken off"),
                ],
                default="running",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="run",
            name="resume",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="run",
            name="only",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="run",
            name="worker",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        migrations.AddField(
            model_name="run",
            name="worker_host",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        migrations.AddField(
            model_name="run",
            name="worker_pid",
            field=models.IntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="run",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="run",
            name="stop_requested_by",
            field=models.CharField(blank=True, default="", max_length=150),
        ),
        migrations.CreateModel(
            name="RunEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("number", models.IntegerField()),
                ("task", models.CharField(blank=True, default="", max_length=500)),
                ("stream", models.CharField(max_length=16)),
                ("text", models.TextField()),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="fedi_panel.run",
                    ),
                ),
            ],
            options={
                "ordering": ("run", "number"),
                "constraints": [
                    models.UniqueConstraint(
                        fields=("run", "number"), name="one_event_number_per_run"
                    )
                ],
            },
        ),
    ]
