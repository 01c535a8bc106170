"""Plugins: the built-in ones load through the ``fedi_run`` entry points like a third party's;
``--plugin`` and ``FEDI_RUN_DISABLE_PLUGINS`` work; clashes and bad hooks are loud errors."""

from __future__ import annotations

from importlib import metadata

import pytest
from helpers import EXAMPLES, MINIMAL, record_runs

from fedi_run.engine.errors import GraphError, PluginError
from fedi_run.engine.plugin import hookspecs
from fedi_run.engine.plugin.manager import Plugins
from fedi_run.engine.project import load_project

BUILT_IN = {"acme", "garage", "mastodon", "peertube", "pixelfed"}


def test_built_in_plugins_are_entry_points_of_this_distribution():
    entry_points = {ep.name: ep for ep in metadata.entry_points(group="fedi_run")}
    assert BUILT_IN <= set(entry_points)
    for name in BUILT_IN:
        assert entry_points[name].value == f"fedi_run.plugins.{name}"
        assert entry_points[name].dist.metadata["Name"] == "fedi-run"


def test_built_in_plugins_load_with_name_version_and_origin():
    plugins = Plugins.load(disabled=())
    infos = {info.name: info for info in plugins.infos}
    assert BUILT_IN <= set(infos)
    for name in BUILT_IN:
        assert infos[name].origin == "built in"
        assert infos[name].version == metadata.version("fedi-run")
        assert infos[name].module == f"fedi_run.plugins.{name}"


def test_disable_by_environment(monkeypatch):
    monkeypatch.setenv("FEDI_RUN_DISABLE_PLUGINS", "peertube, pixelfed")
    names = set(Plugins.load().names)
    assert "peertube" not in names and "pixelfed" not in names and "mastodon" in names


def test_plugin_module_adds_a_service_with_its_own_options(write):
    path = write(
        "p.toml",
        MINIMAL
        + """
        [hosts.garage]
        address = "127.0.0.3"
        [services.matrix]
        enable = true
        host = "web"
        federation = false
    """.replace("\n        ", "\n"),
    )
    project = load_project(path, plugin_modules=["extra_service"])
    info = {i.name: i for i in project.plugins.infos}["matrix"]
    assert info.origin == "module extra_service (--plugin)" and info.version == "9.9.9"
    assert project.playbook.services["matrix"].federation is False
    assert project.playbook.enabled["garage"] == "needed by matrix"
    task = project.graph.tasks["matrix.config"]
    assert task.plugin == "matrix" and task.actions[0].run == "echo federation=off"
    assert project.graph.dependencies("matrix.config") == ["garage.secrets"]


def test_plugin_options_are_validated(write):
    path = write("p.toml", MINIMAL + '[services.matrix]\nfederation = "yes"\n')
    from fedi_run.engine.errors import PlaybookError

    with pytest.raises(PlaybookError) as caught:
        load_project(path, plugin_modules=["extra_service"])
    assert (
        str(caught.value)
        == f"error: {path}: services.matrix.federation: found 'yes', expected true or false"
    )


def test_two_plugins_with_one_name_is_an_error_naming_both():
    with pytest.raises(PluginError) as caught:
        Plugins.load(["clashing_plugin"], disabled=())
    message = str(caught.value)
    assert "two plugins are named 'mastodon'" in message
    assert "built in" in message and "module clashing_plugin (--plugin)" in message


def test_misspelt_hook_is_an_error():
    with pytest.raises(PluginError) as caught:
        Plugins.load(["misspelt_hook"], disabled=())
    assert (
        "defines fedi_run_taks, which is not a fedi-run hook (did you mean 'fedi_run_tasks'?)"
        in str(caught.value)
    )


def test_unmarked_hook_is_an_error():
    with pytest.raises(PluginError, match="without the @hookimpl marker"):
        Plugins.load(["unmarked_hook"], disabled=())


def test_plugin_that_fails_to_import():
    with pytest.raises(PluginError) as caught:
        Plugins.load(["broken_import"], disabled=())
    assert str(caught.value) == (
        "error: --plugin broken_import: cannot import it: "
        "RuntimeError: this plugin is broken on purpose"
    )


def test_missing_plugin_module():
    with pytest.raises(
        PluginError, match="--plugin no_such_module: cannot import it: ModuleNotFoundError"
    ):
        Plugins.load(["no_such_module"], disabled=())


def test_duplicate_task_from_two_plugins_names_both():
    with pytest.raises(GraphError) as caught:
        load_project(EXAMPLES / "fediversity.toml", plugin_modules=["duplicate_task"])
    assert (
        "duplicate task id 'mastodon.secrets': contributed by plugin 'mastodon' "
        "and by plugin 'duplicate_task'" in str(caught.value)
    )


def test_cycle_from_a_plugin_is_reported():
    with pytest.raises(GraphError, match="dependency cycle: loop"):
        load_project(EXAMPLES / "basic.toml", plugin_modules=["cyclic_plugin"])


def test_every_hookspec_is_documented_as_a_contract():
    hooks = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("fedi_run_")]
    assert len(hooks) >= 2
    for hook in hooks:
        doc = hook.__doc__ or ""
        assert ":return:" in doc and "versionadded" in doc and "implementations are called" in doc


@pytest.fixture(scope="module")
def graph():
    """The task graph of examples/fediversity.toml."""
    return load_project(EXAMPLES / "fediversity.toml").graph


class TestFediversityGraph:
    """The built-in plugins' real task lists, as plan shows them before anything runs."""

    def test_garage_keys_come_before_each_apps_s3(self, graph):
        for app in ("mastodon", "peertube", "pixelfed"):
            assert f"garage.key.{app}" in graph.dependencies(f"{app}.s3")
            assert graph.tasks[f"garage.key.{app}"].host == "garage"
            assert graph.tasks[f"{app}.s3"].host == app

    def test_acme_comes_before_the_services(self, graph):
        for service in ("garage", "mastodon", "peertube", "pixelfed"):
            assert f"acme.reach@{service}" in graph.ancestors([f"{service}.secrets"])
            assert "acme.account" in graph.ancestors([f"{service}.secrets"])

    def test_apply_is_last_and_after_everything(self, graph):
        assert graph.order[-1] == "nixops4.apply"
        assert graph.ancestors(["nixops4.apply"]) == set(graph.tasks) - {"nixops4.apply"}
        assert graph.tasks["nixops4.apply"].actions[0].argv == (
            "nixops4",
            "apply",
            "fediversity",
            "--no-interactive",
            "--show-trace",
        )

    def test_secrets_live_under_one_root_owned_directory_with_mode_0400(self, graph):
        from fedi_run.engine.planning.operations import Secret

        secrets = [
            op for task in graph.tasks.values() for op in task.actions if isinstance(op, Secret)
        ]
        assert len(secrets) >= 12
        assert all(  # the deployment's own directory: /var/lib/fedi-run/<deployment>/secrets
            op.path.startswith("/var/lib/fedi-run/fediversity/secrets/") and op.mode == 0o400
            for op in secrets
        )

    def test_ca_trust_only_with_a_ca_file(self, write, tmp_path):
        from fedi_run.engine.lab.tls import make_ca

        (tmp_path / "ca.pem").write_bytes(make_ca().cert_pem)
        path = write(
            "p.toml",
            (EXAMPLES / "fediversity.toml")
            .read_text()
            .replace("accept_terms = true", 'accept_terms = true\nca_file = "ca.pem"'),
        )
        graph = load_project(path).graph
        assert "acme.trust@mastodon" in graph.dependencies("acme.reach@mastodon")
        assert "acme.trust@mastodon" not in load_project(EXAMPLES / "fediversity.toml").graph

    def test_disabled_app_only_cleans_up_where_this_deployment_had_it(self, write, tmp_path):
        path = write(
            "p.toml",
            (EXAMPLES / "fediversity.toml")
            .read_text()
            .replace("[services.peertube]\nenable = true", "[services.peertube]\nenable = false"),
        )
        # Never placed by this deployment: nothing to clean up, no host touched for it.
        graph = load_project(path).graph
        assert [t for t in graph.tasks if "peertube" in t.split("@")[0]] == []
        # An earlier run placed it (on the host called pixelfed, as it was configured then).
        record_runs(
            tmp_path / ".fedi-run" / "state.db",
            "fediversity",
            [("peertube.secrets", "pixelfed"), ("garage.key.peertube", "garage")],
        )
        graph = load_project(path).graph
        assert sorted(t for t in graph.tasks if "peertube" in t.split("@")[0]) == [
            "garage.drop-key.peertube",
            "peertube.absent",
        ]
        absent = graph.tasks["peertube.absent"]
        assert absent.host == "pixelfed"  # where it was, not the host named after it
        assert absent.actions[0].path == "/var/lib/fedi-run/fediversity/secrets/peertube"
        assert absent.is_destructive() and graph.tasks["garage.drop-key.peertube"].is_destructive()
        # Once cleaned up, the next run has nothing left to do for it.
        record_runs(
            tmp_path / ".fedi-run" / "state.db",
            "fediversity",
            [("peertube.absent", "pixelfed"), ("garage.drop-key.peertube", "garage")],
        )
        graph = load_project(path).graph
        assert [t for t in graph.tasks if "peertube" in t.split("@")[0]] == []

    def test_another_deployments_history_is_not_this_ones(self, write, tmp_path):
        path = write(
            "p.toml",
            (EXAMPLES / "fediversity.toml")
            .read_text()
            .replace("[services.peertube]\nenable = true", "[services.peertube]\nenable = false"),
        )
        state = tmp_path / ".fedi-run" / "state.db"
        record_runs(state, "another", [("peertube.secrets", "peertube")])
        record_runs(state, "fediversity", [("peertube.secrets", "peertube")], check=True)
        assert "peertube.absent" not in load_project(path).graph  # another's, or a --check
        elsewhere = tmp_path / "elsewhere.db"  # --state FILE: read there, never created
        assert "peertube.absent" not in load_project(path, state_path=elsewhere).graph
        assert not elsewhere.exists()

    def test_vapid_keys_are_a_real_p256_pair(self):
        import base64

        from cryptography.hazmat.primitives.asymmetric import ec

        from fedi_run.plugins.mastodon.vapid import generate_pair, public_of

        private, public = generate_pair()
        raw = base64.urlsafe_b64decode(public + "=" * (-len(public) % 4))
        assert len(raw) == 65 and raw[0] == 4
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        assert len(base64.urlsafe_b64decode(private + "=" * (-len(private) % 4))) == 32
        assert public_of(private) == public and generate_pair()[0] != private
