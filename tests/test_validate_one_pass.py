"""One pass of validation (issue 15): ``validate`` — and ``run``, before any host — lists every
problem at once: the structure, the operator's templates (with a did-you-mean over the names
there are), unknown ``requires`` (suggesting ``tasks.<name>``), every cycle, and the deployer
files a run reads or writes. ``validate`` never says valid where ``run`` refuses a file."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from fedi_run.engine.cli.main import cli
from fedi_run.engine.errors import PlaybookError
from fedi_run.engine.planning import template_sandbox
from fedi_run.engine.planning.cycles import find_cycles
from fedi_run.engine.project import load_project

HEAD = """
[deployment]
name = "test"
domain = "example.org"

[hosts.web]
address = "127.0.0.2"
"""

EVERY_KIND = """
[deployment]
name = "test"
domain = "example.org"

[hosts.web]
address = "127.0.0.2"
identity = "no-such-key"
nixos = "machine.nix"

[hosts.garage]
address = "127.0.0.3"
nixos = "machine.nix"

[initial_user]
username = "admin"
display_name = "Admin"
email = "admin@example.org"
password_file = "password-dir"

[services.mastodon]
enable = true
host = "web"

[tasks.bad]
host = "web"
run = 5

[tasks.greet]
host = "web"
run = "echo {{ deployment.nmae }}"

[tasks.two]
host = "web"
run = "true"

[tasks.after]
host = "web"
run = "true"
requires = ["two", "tasks.bad"]

[tasks.a]
host = "web"
run = "true"
requires = ["tasks.b"]

[tasks.b]
host = "web"
run = "true"
requires = ["tasks.a"]
"""


def cli_run(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def every_kind(tmp_path):
    (tmp_path / "machine.nix").write_text("{ }\n")
    (tmp_path / "password-dir").mkdir()  # cannot be read as a file
    path = tmp_path / "p.toml"
    path.write_text(EVERY_KIND)
    return path


def expected_lines(tmp_path, path) -> list[str]:
    return [
        f"  - {path}: tasks.bad.run: found 5, expected a string",
        f"  - {path}: tasks.greet.run: template error at line 1: `deployment.nmae` is not "
        "defined (did you mean `deployment.name`?); deployment has: name, domain",
        f"  - {path}: tasks.after.requires: unknown task 'two' (did you mean 'tasks.two'? the "
        "operator's tasks are named tasks.<name>)",
        f"  - {path}: tasks.a.requires: dependency cycle: tasks.a -> tasks.b -> tasks.a (each "
        "runs before the next)",
        f"  - {path}: hosts.web.identity: found '{tmp_path / 'no-such-key'}', which is not a "
        "readable file; expected the file to exist",
        f"  - {path}: initial_user.password_file: found '{tmp_path / 'password-dir'}', which is "
        "not a readable file; expected the file to exist",
    ]


def test_validate_lists_a_problem_of_every_kind_in_one_pass(tmp_path):
    path = every_kind(tmp_path)
    code, stdout, stderr = cli_run("validate", path)
    assert code == 2, (stdout, stderr)
    assert "Traceback" not in stdout + stderr and "valid." not in stdout
    lines = stderr.splitlines()
    assert lines[0] == "error: 6 problems found:", stderr
    for line in expected_lines(tmp_path, path):
        assert any(got.startswith(line) for got in lines), (line, stderr)
    # the requirement on the task whose own table is broken is not reported a second time
    assert "unknown task 'tasks.bad'" not in stderr


def test_run_refuses_the_same_list_before_any_host(tmp_path):
    path = every_kind(tmp_path)
    _, _, validated = cli_run("validate", path)
    code, stdout, stderr = cli_run("run", path, "--json", "--no-apply", "--retries", "0")
    assert code == 2, (stdout, stderr)
    assert '"run_started"' not in stdout and "Traceback" not in stdout + stderr
    assert stderr == validated
    assert not (tmp_path / ".fedi-run").exists()  # no state, no rendering: nothing started


def test_a_broken_service_table_still_lets_the_operators_tasks_be_checked(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        HEAD
        + '\n[services.mastodon]\nenable = "yes"\nhost = "web"\n'
        + '\n[tasks.uses]\nhost = "web"\nrun = "echo {{ services.mastodon.host }} {{ nmae }}"\n'
        + 'requires = ["mastodon.secrets", "tasks.tow"]\n'
        + '\n[tasks.two]\nhost = "web"\nrun = "true"\nrequires = ["tasks.two"]\n'
    )
    with pytest.raises(PlaybookError) as caught:
        load_project(path)
    problems = [(p.key, p.message) for p in caught.value.problems]
    assert problems[0] == ("services.mastodon.enable", "found 'yes', expected true or false")
    assert problems[1][0] == "tasks.uses.run"
    # the broken service's table is no fault of the template; the typo at the top level is
    assert problems[1][1].startswith("template error at line 1: `nmae` is not defined; names in")
    assert ("tasks.uses.requires", "unknown task 'tasks.tow' (did you mean 'tasks.two'?)") in (
        problems
    )
    assert ("tasks.two.requires", "requires itself") in problems
    assert len(problems) == 4, problems  # mastodon.secrets: the plugins' tasks are not built


def test_a_task_on_a_broken_host_is_left_out_not_blamed(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        HEAD + '\n[hosts.db]\naddress = "127.0.0.3"\nport = 0\n'
        '\n[tasks.x]\nhost = "db"\nrun = "echo {{ host.address }}"\n'
        '\n[tasks.y]\nhost = "web"\nrun = "true"\nrequires = ["tasks.x"]\n'
    )
    with pytest.raises(PlaybookError) as caught:
        load_project(path)
    assert [p.key for p in caught.value.problems] == ["hosts.db.port"]


def test_every_cycle_is_reported(tmp_path):
    path = tmp_path / "p.toml"
    tasks = {"a": "tasks.b", "b": "tasks.a", "c": "tasks.e", "d": "tasks.c", "e": "tasks.d"}
    path.write_text(
        HEAD
        + "".join(
            f'\n[tasks.{name}]\nhost = "web"\nrun = "true"\nrequires = ["{needs}"]\n'
            for name, needs in tasks.items()
        )
    )
    with pytest.raises(PlaybookError) as caught:
        load_project(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}: tasks.a.requires: dependency cycle: tasks.a -> tasks.b -> tasks.a (each runs "
        "before the next)",
        f"{path}: tasks.c.requires: dependency cycle: tasks.c -> tasks.d -> tasks.e -> tasks.c "
        "(each runs before the next)",
    ]


def test_find_cycles_gives_one_cycle_per_knot():
    after = {"a": ["b"], "b": ["c", "a"], "c": ["a"], "x": ["y"], "y": ["x"], "z": ["a"]}
    assert find_cycles(after) == [["a", "b", "a"], ["x", "y", "x"]]
    assert find_cycles({"a": ["b"], "b": ["c"]}) == []
    long = {str(i): [str(i + 1)] for i in range(5000)} | {"5000": ["0"]}
    [cycle] = find_cycles(long)  # no recursion limit
    assert len(cycle) == 5002 and cycle[0] == cycle[-1] == "0"


CONTEXT = {
    "deployment": {"name": "test", "domain": "example.org"},
    "hosts": {"mastodon": {"address": "127.0.0.2"}, "web": {"address": "127.0.0.3"}},
    "services": {},
    "host": {"name": "web", "address": "127.0.0.3"},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "{{ nmae }}",
            "template error at line 1: `nmae` is not defined; names in scope: deployment, "
            "hosts, services, host",
        ),
        (
            "{{ hots.web }}",
            "template error at line 1: `hots` is not defined (did you mean `hosts`?); names in "
            "scope: deployment, hosts, services, host",
        ),
        (
            "echo\n{{ deployment.nmae }}",
            "template error at line 2: `deployment.nmae` is not defined (did you mean "
            "`deployment.name`?); deployment has: name, domain",
        ),
        (
            "{{ hosts.mastodn.address }}",
            "template error at line 1: `hosts.mastodn` is not defined (did you mean "
            "`hosts.mastodon`?); hosts has: mastodon, web",
        ),
        (
            "{{ deployment['nmae'] }}",
            "template error at line 1: `deployment['nmae']` is not defined (did you mean "
            "`deployment['name']`?); deployment has: name, domain",
        ),
        (
            "{% for h in hosts.values() %}{{ h.adress }}{% endfor %}",
            "template error at line 1: `h.adress` is not defined (did you mean `h.address`?); "
            "h has: address",
        ),
        (
            "{{ deployment.name.first }}",
            "template error at line 1: `deployment.name.first` is not defined: deployment.name "
            "is a str, not a table",
        ),
        (
            "{{ rnage(3) }}",
            "template error at line 1: `rnage` is not defined (did you mean `range`?)",
        ),
        (
            "true\n{% if %}",
            "template syntax error at line 2: Expected an expression, got 'end of statement block'",
        ),
        ("{{ 1 // 0 }}", "template error at line 1: integer division or modulo by zero"),
    ],
)
def test_template_errors_say_what_is_not_defined_and_what_is(source, expected):
    text, wrong = template_sandbox.render_text(source, CONTEXT)
    assert text == "" and wrong is not None and wrong.startswith(expected), wrong


def test_a_template_typo_names_the_file_key_line_and_suggestion(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(HEAD + '\n[tasks.x]\nhost = "web"\nrun = "echo {{ host.adress }}"\n')
    code, _, stderr = cli_run("validate", path)
    assert code == 2
    assert stderr.startswith(
        f"error: {path}: tasks.x.run: template error at line 1: `host.adress` is not defined "
        "(did you mean `host.address`?); host has: name, address, port, user, "
    ), stderr
    assert len(stderr.strip().splitlines()) == 1


def key_file(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def test_validate_and_run_agree_on_the_deployer_files(tmp_path):
    (tmp_path / "fetched").mkdir()
    path = tmp_path / "p.toml"
    path.write_text(
        HEAD.replace('"127.0.0.2"', '"127.0.0.2"\nport = 1\nidentity = "id_ed25519"')
        + '\n[tasks.get]\nhost = "web"\nfetch = { remote = "/etc/hostname", local = "fetched" }\n'
    )
    validated = cli_run("validate", path)
    ran = cli_run("run", path, "--json", "--no-apply", "--retries", "0")
    assert validated[0] == ran[0] == 2, (validated, ran)
    assert '"run_started"' not in ran[1]
    identity = (
        f"{path}: hosts.web.identity: found '{tmp_path / 'id_ed25519'}', which is not a "
        "readable file; expected the file to exist"
    )
    fetch = f"{path}: tasks.get.fetch.local: found '{tmp_path / 'fetched'}', which is a directory"
    for stderr in (validated[2], ran[2]):
        assert "error: 2 problems found:" in stderr and identity in stderr and fetch in stderr
    # fixed: both go on (run to the host, where nothing listens on port 1: exit 1)
    key_file(tmp_path)
    (tmp_path / "fetched").rmdir()
    code, stdout, stderr = cli_run("validate", path)
    assert code == 0 and f"{path}: valid." in stdout, stderr
    assert cli_run("run", path, "--json", "--no-apply", "--retries", "0")[0] == 1


def test_validate_refuses_an_unwritable_render_directory_as_run_does(tmp_path):
    (tmp_path / "p").mkdir()
    path = tmp_path / "p" / "p.toml"
    path.write_text(HEAD + '\n[tasks.x]\nhost = "web"\nrun = "true"\n')
    (tmp_path / "p" / ".fedi-run").write_text("a file where the directory goes")
    for command in (("validate",), ("run", "--no-apply", "--state", tmp_path / "s.db")):
        code, _, stderr = cli_run(*command, path)
        assert code == 2, (command, stderr)
        assert f"{path}: deployment.name: cannot render the NixOps4 deployment into" in stderr
        assert str(tmp_path / "p" / ".fedi-run" / "test") in stderr


def test_a_key_file_that_is_no_key_is_refused_by_validate(tmp_path):
    (tmp_path / "id").write_text("not a key\n")
    path = tmp_path / "p.toml"
    path.write_text(
        HEAD.replace('"127.0.0.2"', '"127.0.0.2"\nidentity = "id"')
        + '\n[tasks.x]\nhost = "web"\nrun = "true"\n'
    )
    code, _, stderr = cli_run("validate", path)
    assert code == 2 and f"{path}: hosts.web.identity: the key file" in stderr, stderr


def test_a_bad_run_table_is_listed_with_the_other_problems_in_one_pass(tmp_path):
    """The ``[run]`` table gives the command line its defaults before click parses: a wrong
    value there is still one problem of the list, not a round of its own."""
    path = tmp_path / "p.toml"
    path.write_text(
        HEAD.replace("[deployment]", '[run]\nforks = "x"\n\n[deployment]', 1)
        + '\n[tasks.x]\nhost = "web"\nrun = "echo {{ host.adress }}"\n'
    )
    code, _, stderr = cli_run("validate", path)
    assert code == 2, stderr
    assert "run.forks: found 'x', expected an integer" in stderr, stderr
    assert "`host.adress` is not defined" in stderr, stderr
    assert "Traceback" not in stderr
