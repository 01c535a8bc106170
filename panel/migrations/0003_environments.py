"""Environments defined by staff (issue 17): their hosts and users; a deployment's environment,
its last health check; a run's ``check`` (the engine's ``--check``, before a deploy)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import fedi_run.panel.models


class Migration(migrations.Migration):
    dependencies = [
        ("fedi_panel", "0002_runs_on_workers"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="deployment",
            name="health",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="deployment",
            name="health_checked_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="deployment",
            name="health_run",
            field=models.IntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="run",
            name="check",
            field=models.BooleanField(default=False),
        ),
        migrations.CreateModel(
            name="Environment",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "key",
                    models.CharField(
                        default=fedi_run.panel.models.new_key,
                        editable=False,
                        max_length=32,
                        unique=True,
                    ),
                ),
                ("name", models.CharField(max_length=63, unique=True)),
                ("description", models.CharField(blank=True, default="", max_length=200)),
                ("extra", models.TextField(blank=True, default="")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "users",
                    models.ManyToManyField(
                        blank=True, related_name="environments", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
            options={"ordering": ("name", "id")},
        ),
        migrations.AddField(
            model_name="deployment",
            name="environment",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="deployments",
                to="fedi_panel.environment",
            ),
        ),
        migrations.CreateModel(
            name="EnvironmentHost",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=63)),
                ("address", models.CharField(max_length=253)),
                ("port", models.IntegerField(default=22)),
                ("user", models.CharField(default="root", max_length=32)),
                ("host_key", models.CharField(blank=True, default="", max_length=1000)),
                ("identity", models.CharField(blank=True, default="", max_length=4096)),
                ("nixos", models.CharField(blank=True, default="", max_length=4096)),
                ("services", models.JSONField(blank=True, default=list)),
                (
                    "environment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="hosts",
                        to="fedi_panel.environment",
                    ),
                ),
            ],
            options={
                "ordering": ("environment", "id"),
                "constraints": [
                    models.UniqueConstraint(
                        fields=("environment", "name"), name="one_host_name_per_env"
                    )
                ],
            },
        ),
    ]
