"""A test plugin keeping secrets in a directory of the playbook's choice (``directory``: a
``tmp_path`` when the hosts are the fake pool's, this machine): a 'keeper' service with two
generated secrets, a key pair its ``Call`` generates (the public half derived from the
private one, as Mastodon's VAPID pair), a copy it derives (not guarded), and a task that
prints the token."""

import hashlib
import secrets

from fedi_run.engine.api import (
    Call,
    Command,
    ConfigSection,
    Context,
    Directory,
    Secret,
    ServiceConfig,
    Task,
    hookimpl,
    initial_user_task,
    place_secret_files,
    read_secret_files,
)

PLUGIN_NAME = "keeper"
TOKEN_BREAKS = "every keeper client must log in again"


class KeeperConfig(ServiceConfig):
    directory: str = "/var/lib/fedi-run/keeper"
    initial_user: bool = False
    """Also place the initial user's file (JSON, with the password) where the engine's
    service kit puts it (on a lab host: not on this machine)."""


@hookimpl
def fedi_run_config_sections():
    return [ConfigSection("keeper", KeeperConfig)]


def public_of(private: str) -> str:
    return hashlib.sha256(private.encode()).hexdigest()


def ensure_pair(context: Context, private: str, public: str) -> list[str]:
    """The pair exists: the private key made once (or when rotated), the public one derived."""
    assert context.connection is not None
    found = (
        {}
        if context.rotates(private)
        else read_secret_files(context, context.connection, [private])
    )
    value = found.get(private, "").strip() or secrets.token_hex(24)
    return place_secret_files(
        context, context.connection, {private: value, public: public_of(value)}
    )


@hookimpl
def fedi_run_tasks(playbook):
    if not playbook.is_enabled("keeper"):
        return []
    host = playbook.service_host("keeper")
    directory = playbook.services["keeper"].directory
    private, public, copy = (
        f"{directory}/pair-private",
        f"{directory}/pair-public",
        f"{directory}/copy",
    )
    tasks = [
        Task(
            "keeper.secrets",
            host,
            actions=(
                Directory(directory, mode=0o700),
                Secret(f"{directory}/token", "hex32", breaks=TOKEN_BREAKS),
                Secret(f"{directory}/key", "alnum32"),
                Call(
                    ensure_pair,
                    (("private", private), ("public", public)),
                    secrets=(private, public),
                    generates=(private,),
                    breaks="the pair's signatures no longer verify",
                ),
            ),
            undo=(Directory(directory, present=False),),
        ),
        Task(
            "keeper.copy",
            host,
            requires=("keeper.secrets",),
            actions=(
                Call(copy_token, (("source", f"{directory}/token"), ("to", copy)), secrets=(copy,)),
            ),
            undo=(),
        ),
        Task(
            "keeper.show",
            host,
            requires=("keeper.copy",),
            actions=(Command(f"echo token=$(cat {directory}/token)"),),
            undo=(),
        ),
    ]
    if playbook.services["keeper"].initial_user:
        tasks += initial_user_task(playbook, "keeper")
    return tasks


def copy_token(context: Context, source: str, to: str) -> list[str]:
    """A copy of the token (derived: it comes back from the token by itself)."""
    assert context.connection is not None
    found = read_secret_files(context, context.connection, [source])
    if source not in found:
        return [f"would copy {source}"] if context.check else []
    return place_secret_files(context, context.connection, {to: found[source]})
