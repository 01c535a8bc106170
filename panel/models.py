"""The panel's database: environments (staff-defined hosts), deployments (each owned by one
operator, in one environment) and their runs.

An :class:`Environment` is an inventory of hosts a provider's staff define, each
:class:`EnvironmentHost` with the services it may carry, and the users who may deploy there;
the panel writes its inventory TOML from these rows (:mod:`fedi_run.panel.environments`), and
the engine's loader validates it, as ``fedi-run -i`` would.

A :class:`Deployment` holds what the form asks for; the initial user's password only sealed
(:mod:`fedi_run.panel.sealing`: the database never holds it in clear, nor the key). A
:class:`Run` is one deploy or teardown as the panel started it: while it runs, its live state
is in memory (:mod:`fedi_run.panel.live`) and its output in :class:`RunEvent` rows; when it
ends, its tasks, recap, masked log and each task's masked output (:class:`StoredTaskOutput`) are
stored here — whatever a web process shows of a run is in the database, never in a worker's
files. The engine keeps its own record in the deployment's engine state (``engine_run_id``
points there): a schema of this database when the panel's database is PostgreSQL
(``Deployment.engine_state``), else an SQLite file in the data directory.
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
    is, for a deployment made before environments, the path of its inventory file (one with
    an environment has its inventory written from the environment's rows wherever it is
    needed); ``health`` the last ``verify`` results (``health_run``: the deploy they followed;
    ``health_requested_at``: a check asked for, on the queue); ``initial_password_sealed``
    the initial user's password, sealed; ``engine_state`` where the engine keeps this
    deployment's state: ``"postgresql"`` (a schema of the panel's PostgreSQL database),
    ``"sqlite"`` (its directory's ``.fedi-run/state.db``), or ``""`` until its first run
    decides (:mod:`fedi_run.panel.deployment_files`)."""

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
    health_requested_at = models.DateTimeField(null=True, blank=True)
    initial_password_sealed = models.TextField(blank=True, default="")
    engine_state = models.CharField(max_length=16, blank=True, default="")
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
        ``interrupted``, ``could not run``, ``broken off`` (:func:`run_display.shown`)."""
        from fedi_run.panel.run_display import shown_run

        return shown_run(self).label


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


class StoredTaskOutput(models.Model):
    """What one task of an ended run printed, masked, as the engine's log of it says (its last
    256 KiB; ``size``: the whole log's bytes): stored by the worker with the run's record, so
    any web process shows it."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="outputs")
    task = models.CharField(max_length=500)
    text = models.TextField(blank=True, default="")
    size = models.BigIntegerField(default=0)

    class Meta:
        ordering = ("run", "id")
        constraints = (
            models.UniqueConstraint(fields=("run", "task"), name="one_output_per_task_of_run"),
        )


class KeyCheck(models.Model):
    """One row: a known text sealed under the panel's key by its first process, so that a
    process given another key is refused at start (:func:`fedi_run.panel.sealing.check_key`)."""

    sealed = models.TextField()
