"""The panel's database: environments (staff-defined hosts), deployments (each owned by one
operator, in one environment) and their runs.

An :class:`Environment` is an inventory of hosts a provider's staff define, each
:class:`EnvironmentHost` with the services it may carry, and the users who may deploy there;
the panel writes its inventory TOML from these rows (:mod:`fedi_run.panel.environments`), and
the engine's loader validates it, as ``fedi-run -i`` would.

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


class Environment(models.Model):
    """Hosts defined by staff, and who may deploy to them. ``extra`` holds the inventory's
    other tables (TOML text, such as ``[acme]``), appended to the generated inventory."""

    key = models.CharField(max_length=32, unique=True, editable=False, default=new_key)
    name = models.CharField(max_length=63, unique=True)
    description = models.CharField(max_length=200, blank=True, default="")
    extra = models.TextField(blank=True, default="")
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="environments"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name", "id")

    def __str__(self) -> str:
        return self.name


class EnvironmentHost(models.Model):
    """One ``[hosts.<name>]`` of an environment, and the services it may carry."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="hosts")
    name = models.CharField(max_length=63)
    address = models.CharField(max_length=253)
    port = models.IntegerField(default=22)
    user = models.CharField(max_length=32, default="root")
    host_key = models.CharField(max_length=1000, blank=True, default="")
    identity = models.CharField(max_length=4096, blank=True, default="")
    nixos = models.CharField(max_length=4096, blank=True, default="")
    services = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("environment", "id")
        constraints = (
            models.UniqueConstraint(fields=("environment", "name"), name="one_host_name_per_env"),
        )

    def __str__(self) -> str:
        return f"{self.name} of {self.environment}"

    @property
    def where(self) -> str:
        """``user@address:port``."""
        return f"{self.user}@{self.address}:{self.port}"


class Deployment(models.Model):
    """One deployment of one operator: the values its playbook is written from. ``inventory``
    is the path of its environment's generated inventory (set by the panel, never typed);
    ``health`` the last ``verify`` results (``health_run``: the deploy they followed)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deployments"
    )
    key = models.CharField(max_length=32, unique=True, editable=False, default=new_key)
    name = models.CharField(max_length=63)
    domain = models.CharField(max_length=253)
    environment = models.ForeignKey(
        Environment,
        on_delete=models.PROTECT,
        related_name="deployments",
        null=True,
        blank=True,
    )
    inventory = models.CharField(max_length=4096)
    services = models.JSONField(default=list, blank=True)
    acme_email = models.CharField(max_length=254, blank=True, default="")
    acme_accept_terms = models.BooleanField(default=False)
    initial_username = models.CharField(max_length=64)
    initial_display_name = models.CharField(max_length=100)
    initial_email = models.CharField(max_length=254)
    apply = models.BooleanField(default=True)
    health = models.JSONField(default=list, blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    health_run = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name", "id")
        constraints = (
            models.UniqueConstraint(fields=("owner", "name"), name="one_name_per_operator"),
        )

    def __str__(self) -> str:
        return self.name

    NEVER, DEPLOYED, FAILED, TORN_DOWN = "never deployed", "deployed", "failed", "torn down"

    def last_real_run(self) -> Run | None:
        """The newest ended deploy or teardown (a ``--check`` run changes nothing: left out)."""
        return self.runs.filter(check=False).exclude(state__in=Run.ACTIVE).first()

    @property
    def state(self) -> str:
        """``never deployed``, ``deployed``, ``failed`` or ``torn down``: from the newest
        ended deploy or teardown (done: deployed / torn down; else failed)."""
        last = self.last_real_run()
        if last is None:
            return self.NEVER
        if last.state == Run.FINISHED and last.exit_status == 0:
            return self.DEPLOYED if last.kind == "run" else self.TORN_DOWN
        return self.FAILED

    @property
    def deletable(self) -> bool:
        """Only a deployment never deployed or torn down may be deleted (and none running)."""
        return (
            self.state in (self.NEVER, self.TORN_DOWN)
            and not self.runs.filter(state__in=Run.ACTIVE).exists()
        )

    @property
    def name_fixed(self) -> bool:
        """The name is the NixOps4 deployment's and the engine's state key: fixed once a
        deploy or teardown was started."""
        return self.pk is not None and self.runs.filter(check=False).exists()


class Run(models.Model):
    """One deploy (``kind="run"``) or teardown started from the panel — the shared truth of
    the web processes and the workers (:mod:`fedi_run.panel.worker`). ``state``: ``queued``
    (waiting for a worker), ``running`` (a worker has it: ``worker``, ``worker_host``,
    ``worker_pid``, refreshed ``heartbeat_at``), then ``finished`` (with its exit status),
    ``error`` (could not run) or ``broken`` (broken off: its worker died or stopped
    heartbeating; Resume continues it). ``stop_requested_by``: who pressed Stop (the worker
    polls it). While it runs, its output is in :class:`RunEvent` rows and ``tasks``; at the end
    in ``log``, ``apply_output``, ``tasks`` and ``recap``."""

    QUEUED, RUNNING, FINISHED, ERROR, BROKEN = "queued", "running", "finished", "error", "broken"
    STATES = (
        (QUEUED, "queued"),
        (RUNNING, "running"),
        (FINISHED, "finished"),
        (ERROR, "could not run"),
        (BROKEN, "broken off"),
    )
    ACTIVE = (QUEUED, RUNNING)
    """The states of a run that holds its deployment: another deploy is refused."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=16, default="run")
    state = models.CharField(max_length=16, choices=STATES, default=RUNNING)
    apply = models.BooleanField(default=True)
    check = models.BooleanField(default=False)
    engine_run_id = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_status = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    tasks = models.JSONField(default=list, blank=True)
    recap = models.JSONField(default=dict, blank=True)
    log = models.TextField(blank=True, default="")
    apply_output = models.TextField(blank=True, default="")
    resume = models.BooleanField(default=False)
    only = models.JSONField(default=list, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")
    worker_host = models.CharField(max_length=255, blank=True, default="")
    worker_pid = models.IntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    stop_requested_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} of {self.deployment}"

    @property
    def active(self) -> bool:
        """Queued or running: the deployment is taken."""
        return self.state in self.ACTIVE

    @property
    def kind_label(self) -> str:
        """``deploy``, ``check`` (a deploy with ``--check``) or ``teardown``."""
        if self.kind == "run":
            return "check" if self.check else "deploy"
        return self.kind

    @property
    def result(self) -> str:
        """A short result: ``queued``, ``running``, ``done``, ``failed (exit 1)``,
        ``interrupted``, ``could not run``, ``broken off``."""
        if self.state in (self.QUEUED, self.RUNNING):
            return self.state
        if self.state == self.ERROR:
            return "could not run"
        if self.state == self.BROKEN:
            return "broken off"
        if self.exit_status == 0:
            return "done"
        if self.exit_status == 130:
            return "interrupted"
        return f"failed (exit {self.exit_status})"


class RunEvent(models.Model):
    """One piece of a run's output while it runs, numbered from 1 (the progress view's
    ``?after=N`` cursor): written by the worker in batches, read by any web process; deleted
    when the run's whole log is stored in its :class:`Run`."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    number = models.IntegerField()
    task = models.CharField(max_length=500, blank=True, default="")
    stream = models.CharField(max_length=16)
    text = models.TextField()

    class Meta:
        ordering = ("run", "number")
        constraints = (
            models.UniqueConstraint(fields=("run", "number"), name="one_event_number_per_run"),
        )
