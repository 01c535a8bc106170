"""The panel's database: deployments (each owned by one operator) and their runs.

A :class:`Deployment` holds what the form asks for — never the initial user's password, which
lives only in a 0600 file in the deployment's directory (:mod:`fedi_run.panel.paths`). A
:class:`Run` is one deploy or teardown as the panel started it: while it runs, its live state
is in memory (:mod:`fedi_run.panel.live`); when it ends, its tasks, recap and masked log are
stored here. The engine keeps its own record in the deployment's state database
(``engine_run_id`` points there).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


def new_key() -> str:
    """A deployment's directory name: 32 random hex digits."""
    return uuid.uuid4().hex


class Deployment(models.Model):
    """One deployment of one operator: the values its playbook is written from."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deployments"
    )
    key = models.CharField(max_length=32, unique=True, editable=False, default=new_key)
    name = models.CharField(max_length=63)
    domain = models.CharField(max_length=253)
    inventory = models.CharField(max_length=4096)
    services = models.JSONField(default=list, blank=True)
    acme_email = models.CharField(max_length=254, blank=True, default="")
    acme_accept_terms = models.BooleanField(default=False)
    initial_username = models.CharField(max_length=64)
    initial_display_name = models.CharField(max_length=100)
    initial_email = models.CharField(max_length=254)
    apply = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name", "id")
        constraints = (
            models.UniqueConstraint(fields=("owner", "name"), name="one_name_per_operator"),
        )

    def __str__(self) -> str:
        return self.name


class Run(models.Model):
    """One deploy (``kind="run"``) or teardown started from the panel."""

    RUNNING, FINISHED, ERROR = "running", "finished", "error"
    STATES = ((RUNNING, "running"), (FINISHED, "finished"), (ERROR, "could not run"))

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=16, default="run")
    state = models.CharField(max_length=16, choices=STATES, default=RUNNING)
    apply = models.BooleanField(default=True)
    engine_run_id = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_status = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    tasks = models.JSONField(default=list, blank=True)
    recap = models.JSONField(default=dict, blank=True)
    log = models.TextField(blank=True, default="")
    apply_output = models.TextField(blank=True, default="")

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} of {self.deployment}"

    @property
    def kind_label(self) -> str:
        """``deploy`` or ``teardown``."""
        return "deploy" if self.kind == "run" else self.kind

    @property
    def result(self) -> str:
        """A short result: ``running``, ``done``, ``failed (exit 1)``, ``could not run``."""
        if self.state == self.RUNNING:
            return "running"
        if self.state == self.ERROR:
            return "could not run"
        if self.exit_status == 0:
            return "done"
        if self.exit_status == 130:
            return "interrupted"
        return f"failed (exit {self.exit_status})"
