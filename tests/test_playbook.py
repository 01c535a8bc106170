"""The playbook model: valid input becomes typed, immutable values; every kind of bad input
gives a problem that names the file, the key, what was found and what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest
from helpers import EXAMPLES, MINIMAL

from fedi_run.engine.errors import PlaybookError
from fedi_run.engine.model.loading import load_playbook
from fedi_run.engine.plugin.manager import Plugins
from fedi_run.engine.project import config_sections


@pytest.fixture(scope="module")
def sections():
    return config_sections(Plugins.load(disabled=()))


def load(path, sections, **kwargs):
    return load_playbook(Path(path), sections, **kwargs)


def problems(path, sections, **kwargs) -> list[str]:
    with pytest.raises(PlaybookError) as caught:
        load(path, sections, **kwargs)
    return [str(p) for p in caught.value.problems]


def test_the_fediversity_example_is_valid_and_complete(sections):
    playbook = load(EXAMPLES / "fediversity.toml", sections)
    assert playbook.name == "fediversity"
    assert playbook.domain == "fediversity.net"
    assert set(playbook.hosts) == {"garage", "mastodon", "peertube", "pixelfed"}
    assert set(playbook.enabled) == {"garage", "mastodon", "peertube", "pixelfed"}
    assert playbook.enabled["garage"] == "needed by mastodon, peertube, pixelfed"
    assert playbook.section("acme").email == "ops@fediversity.net"
    assert playbook.initial_user.password_file == str(EXAMPLES / "secrets" / "admin-password")
    assert playbook.hosts["mastodon"].port == 22 and playbook.hosts["mastodon"].user == "root"


def test_the_basic_example_is_valid(sections):
    playbook = load(EXAMPLES / "basic.toml", sections)
    assert set(playbook.hosts) == {"hello", "cowsay"}
    assert playbook.enabled == {}
    assert set(playbook.tasks) == {"hello", "cowsay", "motd"}


def test_values_are_immutable(sections):
    playbook = load(EXAMPLES / "fediversity.toml", sections)
    with pytest.raises(pydantic.ValidationError):
        playbook.hosts["garage"].port = 2222
    with pytest.raises(TypeError):
        playbook.hosts["new"] = playbook.hosts["garage"]
    with pytest.raises(AttributeError):
        playbook.deployment = None


def test_garage_is_enabled_by_any_app(write, sections):
    path = write(
        "p.toml",
        MINIMAL
        + (
            '[hosts.garage]\naddress = "127.0.0.3"\n'
            '[services.pixelfed]\nenable = true\nhost = "web"\n'
        ),
    )
    playbook = load(path, sections)
    assert set(playbook.enabled) == {"pixelfed", "garage"}
    assert playbook.enabled["garage"] == "needed by pixelfed"
    assert playbook.service_host("pixelfed") == "web"
    assert playbook.service_host("garage") == "garage"


def test_no_app_means_no_garage(write, sections):
    playbook = load(write("p.toml", MINIMAL), sections)
    assert playbook.enabled == {}


def test_inventory_merges_hosts_and_acme_over_the_playbook(write, sections, tmp_path):
    playbook_path = write("site/p.toml", MINIMAL + '[acme]\nemail = "ops@example.org"\n')
    inventory = write(
        "lab/inventory.toml",
        """
        [hosts.web]
        address = "127.0.0.9"
        port = 2222
        identity = "keys/deployer"

        [hosts.extra]
        address = "127.0.0.10"

        [acme]
        server = "https://127.0.0.1:14000/dir"
        ca_file = "ca.pem"
    """,
    )
    playbook = load(playbook_path, sections, inventories=[inventory])
    assert playbook.hosts["web"].address == "127.0.0.9"
    assert playbook.hosts["web"].port == 2222
    assert playbook.hosts["web"].identity == str(tmp_path / "lab" / "keys" / "deployer")
    assert set(playbook.hosts) == {"web", "extra"}
    acme = playbook.section("acme")
    assert acme.email == "ops@example.org"  # kept from the playbook
    assert acme.server == "https://127.0.0.1:14000/dir"
    assert acme.ca_file == str(tmp_path / "lab" / "ca.pem")  # relative to the inventory


def test_later_inventories_win(write, sections):
    path = write("p.toml", MINIMAL)
    first = write("a.toml", '[hosts.web]\naddress = "127.0.0.20"\n')
    second = write("b.toml", '[hosts.web]\naddress = "127.0.0.21"\n')
    assert load(path, sections, inventories=[first, second]).hosts["web"].address == "127.0.0.21"


def test_an_inventory_holds_only_hosts_and_acme(write, sections):
    path = write("p.toml", MINIMAL)
    inventory = write("inv.toml", "[services.mastodon]\nenable = true\n")
    assert problems(path, sections, inventories=[inventory]) == [
        f"{inventory}: services: an inventory may hold only [hosts.*], [vars] and [acme] tables"
    ]


def test_a_problem_names_the_inventory_it_came_from(write, sections):
    path = write("p.toml", MINIMAL)
    inventory = write("inv.toml", '[hosts.web]\naddress = "127.0.0.2"\nport = 0\n')
    assert problems(path, sections, inventories=[inventory]) == [
        f"{inventory}: hosts.web.port: found 0, expected a number >= 1"
    ]


def test_fediversity_configuration_is_read_over_the_playbook(write, sections, tmp_path):
    path = write(
        "p.toml",
        MINIMAL + '[hosts.garage]\naddress="127.0.0.3"\n[hosts.mastodon]\naddress="127.0.0.4"\n',
    )
    configuration = write(
        "configuration.json",
        json.dumps(
            {
                "domain": "fedi.example.net",
                "mastodon": {"enable": True},
                "peertube": {"enable": False},
                "pixelfed": {"enable": False},
                "initialUser": {
                    "username": "admin",
                    "displayName": "The Admin",
                    "email": "a@fedi.example.net",
                    "passwordFile": "pw",
                },
            }
        ),
    )
    playbook = load(path, sections, configuration_file=configuration)
    assert playbook.domain == "fedi.example.net"
    assert playbook.name == "test"
    assert set(playbook.enabled) == {"mastodon", "garage"}
    assert playbook.initial_user.display_name == "The Admin"
    assert playbook.initial_user.password_file == str(tmp_path / "pw")


def test_configuration_refuses_an_inline_password(write, sections):
    path = write("p.toml", MINIMAL)
    configuration = write("c.json", json.dumps({"initialUser": {"password": "hunter2"}}))
    found = problems(path, sections, configuration_file=configuration)
    assert len(found) == 1 and "initialUser.password: a password is never read inline" in found[0]
    assert "hunter2" not in found[0]


def test_configuration_unknown_key_has_a_suggestion(write, sections):
    path = write("p.toml", MINIMAL)
    configuration = write("c.json", json.dumps({"mastodn": {"enable": True}}))
    assert (
        "mastodn: unknown key (did you mean 'mastodon'?)"
        in problems(path, sections, configuration_file=configuration)[0]
    )


# One test per kind of bad input, each checking the message.


def test_missing_file(tmp_path, sections):
    missing = tmp_path / "nope.toml"
    assert problems(missing, sections) == [
        f"{missing}: cannot read the file: No such file or directory"
    ]


def test_not_toml(write, sections):
    path = write("p.toml", "[deployment\nname =")
    [message] = problems(path, sections)
    assert message.startswith(f"{path}: not valid TOML:") and "line 1" in message


def test_not_utf8(tmp_path, sections):
    path = tmp_path / "p.toml"
    path.write_bytes(b'[deployment]\nname = "\xff"\n')
    assert problems(path, sections) == [
        f"{path}: not valid UTF-8 (byte 21); expected a UTF-8 TOML file"
    ]


def test_missing_deployment(write, sections):
    path = write("p.toml", '[hosts.a]\naddress = "127.0.0.2"\n')
    assert problems(path, sections) == [
        f"{path}: deployment: missing; expected a [deployment] table with name and domain"
    ]


def test_missing_key(write, sections):
    path = write("p.toml", '[deployment]\nname = "x"\n')
    assert problems(path, sections) == [f"{path}: deployment.domain: missing; this key is required"]


def test_unknown_key_with_suggestion(write, sections):
    path = write(
        "p.toml", MINIMAL.replace('address = "127.0.0.2"', 'address = "127.0.0.2"\nadress = "x"')
    )
    assert problems(path, sections) == [
        f"{path}: hosts.web.adress: unknown key (did you mean 'address'?); expected one of: "
        "address, port, user, host_key, identity, system, state_version, nixos"
    ]


def test_unknown_table_with_suggestion(write, sections):
    path = write("p.toml", MINIMAL + "[servces.mastodon]\nenable = true\n")
    [message] = problems(path, sections)
    assert message.startswith(f"{path}: servces: unknown table (did you mean 'services'?)")


def test_unknown_service_with_suggestion(write, sections):
    path = write("p.toml", MINIMAL + "[services.mastadon]\nenable = true\n")
    assert problems(path, sections) == [
        f"{path}: services.mastadon: unknown service (did you mean 'mastodon'?); known services: "
        "garage, mastodon, peertube, pixelfed"
    ]


def test_wrong_type(write, sections):
    path = write("p.toml", MINIMAL + 'port = "22"\n')
    assert problems(path, sections) == [f"{path}: hosts.web.port: found '22', expected an integer"]


def test_wrong_boolean(write, sections):
    path = write("p.toml", MINIMAL + '[services.mastodon]\nenable = 1\nhost = "web"\n')
    assert problems(path, sections) == [
        f"{path}: services.mastodon.enable: found 1, expected true or false"
    ]


def test_domain_must_be_a_dns_name(write, sections):
    path = write("p.toml", MINIMAL.replace("example.org", "example.org; rm -rf /"))
    [message] = problems(path, sections)
    assert message == (
        f"{path}: deployment.domain: found 'example.org; rm -rf /', expected a DNS name such as "
        "'fediversity.net' (lowercase, with a dot)"
    )


def test_host_name_must_be_a_plain_name(write, sections):
    path = write("p.toml", MINIMAL + '[hosts."web server"]\naddress = "127.0.0.3"\n')
    [message] = problems(path, sections)
    assert message.startswith(
        f"{path}: hosts.'web server': 'web server' is not a valid name: expected a plain name"
    )


def test_host_key_is_checked(write, sections):
    import base64

    rsa_blob = base64.b64encode(b"\x00\x00\x00\x07ssh-rsa" + bytes(32)).decode()
    path = write("p.toml", MINIMAL + f'host_key = "ssh-ed25519 {rsa_blob}"\n')
    [message] = problems(path, sections)
    assert f"{path}: hosts.web.host_key: found" in message and "not a ssh-ed25519 key" in message


def test_service_on_unknown_host(write, sections):
    path = write("p.toml", MINIMAL + '[services.mastodon]\nenable = true\nhost = "wbe"\n')
    found = problems(path, sections)
    assert found[0] == (
        f"{path}: services.mastodon.host: service 'mastodon' (enabled in p.toml) runs on host "
        "'wbe', which is not defined; expected one of the [hosts] tables: web (did you mean 'web'?)"
    )
    # garage, switched on by mastodon, has no host either: it says why it is enabled.
    assert "service 'garage' (needed by mastodon) runs on host 'garage'" in found[1]


def test_user_task_on_unknown_host(write, sections):
    path = write("p.toml", MINIMAL + '[tasks.x]\nhosts = ["web", "wbe"]\nrun = "true"\n')
    assert problems(path, sections) == [
        f"{path}: tasks.x.hosts.1: found 'wbe', expected a host defined under [hosts] "
        "(did you mean 'web'?)"
    ]


def test_user_task_needs_host_or_hosts(write, sections):
    path = write("p.toml", MINIMAL + '[tasks.x]\nrun = "true"\n')
    assert problems(path, sections) == [
        f"{path}: tasks.x: expected exactly one of `host` or `hosts`"
    ]


def test_array_expected(write, sections):
    path = write("p.toml", MINIMAL + '[tasks.x]\nhost = "web"\nrun = "true"\ntags = "a"\n')
    assert problems(path, sections) == [f"{path}: tasks.x.tags: found 'a', expected an array"]


def test_every_problem_is_reported_at_once(write, sections):
    path = write(
        "p.toml",
        """
        [deployment]
        name = "bad name"
        domain = "nodot"
        [hosts.web]
        address = "127.0.0.2"
        port = 70000
        [run]
        forks = 0
    """,
    )
    found = problems(path, sections)
    assert len(found) == 4
    assert [m.split(": ")[1] for m in found] == [
        "deployment.name",
        "deployment.domain",
        "run.forks",
        "hosts.web.port",
    ]


def test_disabled_plugin_is_named(write, sections, monkeypatch):
    monkeypatch.setenv("FEDI_RUN_DISABLE_PLUGINS", "mastodon")
    from fedi_run.engine.errors import PlaybookError
    from fedi_run.engine.project import load_project

    path = write("p.toml", MINIMAL + "[services.mastodon]\nenable = true\n")
    with pytest.raises(PlaybookError) as caught:
        load_project(path)
    assert "unknown service (the plugin 'mastodon' is blocked by FEDI_RUN_DISABLE_PLUGINS)" in str(
        caught.value
    )
