"""What lets panel processes on different machines share only the database and the broker:
the initial user's password sealed in the database, where each deployment's engine state is,
a health check on the queue, each ended task's output, and the key check."""

import django.db.models.deletion
from django.db import migrations, models


def sqlite_for_deployments_that_ran(apps, schema_editor):
    """A deployment that ran before keeps its engine state where it is: its SQLite file."""
    deployment = apps.get_model("fedi_panel", "Deployment")
    deployment.objects.filter(runs__isnull=False).update(engine_state="sqlite")


class Migration(migrations.Migration):
    dependencies = [("fedi_panel", "0003_environments")]

    operations = [
        migrations.AddField(
            model_name="deployment",
            name="health_requested_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="deployment",
            name="initial_password_sealed",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="deployment",
            name="engine_state",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.CreateModel(
            name="StoredTaskOutput",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("task", models.CharField(max_length=500)),
                ("text", models.TextField(blank=True, default="")),
                ("size", models.BigIntegerField(default=0)),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="outputs",
                        to="fedi_panel.run",
                    ),
                ),
            ],
            options={
                "ordering": ("run", "id"),
                "constraints": [
                    models.UniqueConstraint(
                        fields=("run", "task"), name="one_output_per_task_of_run"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="KeyCheck",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("sealed", models.TextField()),
            ],
        ),
        migrations.RunPython(sqlite_for_deployments_that_ran, migrations.RunPython.noop),
    ]
