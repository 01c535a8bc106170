"""A deployment's files in this process's data directory — each written from the database
when it is needed, so that panel processes on different machines share only the database and
the broker.

Contract:

* :func:`write_playbook` writes ``<data dir>/deployments/<key>/playbook.toml`` (0600) from the
  deployment's row; :func:`inventory_file` writes its environment's inventory from the
  environment's host rows (:func:`fedi_run.panel.environments.materialize`; a deployment made
  before environments: its own inventory file);
* :func:`password_written` writes the initial user's password (unsealed from the database,
  :mod:`fedi_run.panel.initial_password`) to its 0600 file for the ``with`` block of a run and
  removes it after: no process keeps it in a file between runs;
* :func:`engine_state` is the engine's ``--state`` of the deployment: a schema of its own in
  the panel's PostgreSQL database, or ``.fedi-run/state.db`` in its directory (the panel on
  SQLite, or a deployment that already had that file) — decided at its first use and recorded
  in ``Deployment.engine_state``; :func:`engine_dir` is where the engine keeps the run's local
  files (output logs, the rendered NixOps4 deployment, ACME account keys) — in this process's
  data directory either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from fedi_run.engine.errors import PanelError
from fedi_run.panel import paths, site
from fedi_run.panel.models import Deployment

ENGINE_SCHEMA_PREFIX = "fedi_run_engine_"
"""A deployment's engine state schema: this and its key (32 hex digits)."""
SQLITE, POSTGRESQL = "sqlite", "postgresql"


def directory(deployment: Deployment) -> Path:
    """The deployment's directory in this process's data directory (created 0700)."""
    return paths.deployment_dir(site.current().data_dir, deployment.key)


def playbook_file(deployment: Deployment) -> Path:
    """The deployment's ``playbook.toml``, written by :func:`write_playbook`."""
    return directory(deployment) / paths.PLAYBOOK_FILE


def password_file(deployment: Deployment) -> Path:
    """Where the initial user's password is for the time of a run (0600)."""
    return directory(deployment) / paths.PASSWORD_FILE


def engine_dir(deployment: Deployment) -> Path:
    """The engine's local files of the deployment's runs: ``<directory>/.fedi-run``."""
    return directory(deployment) / ".fedi-run"


def sqlite_state(deployment: Deployment) -> Path:
    """The deployment's SQLite engine state: ``<directory>/.fedi-run/state.db``."""
    return engine_dir(deployment) / "state.db"


def spec_of(deployment: Deployment, password: Path | None = None):
    """The deployment as a :class:`~fedi_run.panel.playbooks.DeploymentSpec`."""
    from fedi_run.panel.catalog import catalog
    from fedi_run.panel.environments import placement_of
    from fedi_run.panel.playbooks import DeploymentSpec, InitialUser

    known = catalog()
    return DeploymentSpec(
        name=deployment.name,
        domain=deployment.domain,
        services=tuple(s for s in deployment.services if s in known.service_names()),
        known=known.service_names(),
        initial_user=InitialUser(
            deployment.initial_username,
            deployment.initial_display_name,
            deployment.initial_email,
            password or password_file(deployment),
        ),
        acme_email=deployment.acme_email,
        acme_accept_terms=deployment.acme_accept_terms,
        acme=known.acme,
        placement=tuple(placement_of(deployment).items()),
    )


def write_playbook(deployment: Deployment) -> Path:
    """(Re)write the deployment's ``playbook.toml`` (0600) from its current values."""
    from fedi_run.panel.playbooks import render_playbook

    return paths.write_private(playbook_file(deployment), render_playbook(spec_of(deployment)))


def inventory_file(deployment: Deployment) -> Path:
    """The inventory the deployment's runs read: its environment's, written here from the
    environment's rows; for a deployment made before environments, its own file."""
    from fedi_run.panel.environments import materialize

    if deployment.environment_id is None:
        return Path(deployment.inventory)
    return materialize(site.current().data_dir, deployment.environment)


@contextmanager
def password_written(deployment: Deployment) -> Iterator[str]:
    """For the ``with`` block: the initial user's password in its 0600 file (yields the
    password, "" when the deployment has none); the file is removed after, whatever happens."""
    from fedi_run.panel.initial_password import password_of

    password = password_of(deployment) or ""
    path = password_file(deployment)
    if password:
        paths.write_private(path, password + "\n")
    try:
        yield password
    finally:
        path.unlink(missing_ok=True)


def engine_state(deployment: Deployment) -> Path | str:
    """The engine's ``--state`` for the deployment (see the module's docstring): decided once,
    at its first use, and recorded in its row."""
    configured = site.current()
    choice = deployment.engine_state
    if not choice:
        had_file = sqlite_state(deployment).exists()
        choice = POSTGRESQL if configured.database_url and not had_file else SQLITE
        Deployment.objects.filter(pk=deployment.pk, engine_state="").update(engine_state=choice)
        choice = Deployment.objects.values_list("engine_state", flat=True).get(pk=deployment.pk)
        deployment.engine_state = choice
    if choice == SQLITE:
        return sqlite_state(deployment)
    if not configured.database_url:
        raise PanelError(
            f"error: the deployment {deployment.name!r} keeps its engine state in the panel's "
            "PostgreSQL database, and this panel process uses SQLite; start it with the same "
            "--database (FEDI_RUN_PANEL_DATABASE) as the panel's other processes"
        )
    return schema_url(configured.database_url, engine_schema(deployment))


def engine_schema(deployment: Deployment) -> str:
    """The PostgreSQL schema of the deployment's engine state."""
    return ENGINE_SCHEMA_PREFIX + deployment.key


def schema_url(database_url: str, schema: str) -> str:
    """``database_url`` with libpq's ``options`` setting ``search_path`` to ``schema`` (options
    it had are kept, before)."""
    parts = urlsplit(database_url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = " ".join(value for key, value in query if key == "options")
    others = [(key, value) for key, value in query if key != "options"]
    options = f"{given} -csearch_path={schema}".strip()
    return parts._replace(query=urlencode([*others, ("options", options)])).geturl()


def drop_engine_state(deployment: Deployment) -> None:
    """Remove the deployment's engine state from the panel's database (its schema), if it has
    one there; its SQLite file goes with its directory."""
    if deployment.engine_state != POSTGRESQL or not site.current().database_url:
        return
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA IF EXISTS "{engine_schema(deployment)}" CASCADE')
