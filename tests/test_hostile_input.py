"""Hostile input, round two: values that slipped past the first round of checks — control
characters in free text, IPv6 scope ids, deep dotted keys, a host named like the deployer, out
of range run ids, unreadable or malformed deployer files, empty selection filters, unwritable
report paths. Each is bad input: exit status 2, a message naming the file (or flag) and the key,
no traceback, and no host contacted (every host here is 127.0.0.1 port 1, where nothing
listens; the run must not even start)."""

from __future__ import annotations

import copy
import re

import pytest
import tomli_w
from click.testing import CliRunner

from fedi_run.engine.cli.main import cli
from fedi_run.engine.model import validators

BASE = {
    "deployment": {"name": "test", "domain": "example.org"},
    "hosts": {"web": {"address": "127.0.0.1", "port": 1}},
    "tasks": {
        "motd": {"host": "web", "run": "echo hello\n\ttrue\n", "description": "say hello"},
        "conf": {"host": "web", "file": {"path": "/etc/motd", "content": "line 1\n\tline 2\n"}},
    },
}


def run_cli(*args) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def playbook(tmp_path, document, name="playbook.toml"):
    path = tmp_path / name
    path.write_text(tomli_w.dumps(document))
    return path


def run_refused(path, *extra) -> str:
    """Run ``path`` (no apply): it must be refused as bad input; returns stderr."""
    code, stdout, stderr = run_cli(
        "run", path, "--json", "--no-apply", "--connect-timeout", "1", "--retries", "0", *extra
    )
    assert code == 2, (code, stdout[-2000:], stderr[-2000:])
    assert "Traceback" not in stdout + stderr, stderr
    assert '"run_started"' not in stdout, stdout  # nothing ran, so no host was contacted
    return stderr


def with_value(key: tuple[str, ...], value, document=BASE):
    document = copy.deepcopy(document)
    target = document
    for part in key[:-1]:
        target = target.setdefault(part, {})
    target[key[-1]] = value
    return document


# --- control characters in free text -------------------------------------------------------

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
USER = {
    "username": "admin",
    "display_name": "Admin",
    "email": "admin@example.org",
    "password_file": "password",
}
FREE_TEXT = [
    # (key, prefix of a valid value, whether a newline and a tab are allowed there)
    (("tasks", "motd", "run"), "echo hi", True),
    (("tasks", "motd", "undo"), "echo bye", True),
    (("tasks", "motd", "unless"), "test -e /x", True),
    (("tasks", "conf", "file", "content"), "motd", True),
    (("tasks", "motd", "description"), "say hello", False),
    (("tasks", "motd", "requires"), None, False),
    (("initial_user", "display_name"), "Admin", False),
    (("initial_user", "password_file"), "password", False),
    (("hosts", "web", "host_key"), HOST_KEY + " me@laptop", False),
    (("hosts", "web", "identity"), "id_ed25519", False),
    (("tasks", "back", "fetch", "local"), "out/hostname", False),
    (("tasks", "conf2", "file", "src"), "motd.txt", False),
]
CONTROL = ["\x00", "\x01", "\x1b[2J", "\x7f", "\x85", "\u2028", "\r"]


def _document_with(key, text):
    document = copy.deepcopy(BASE)
    document["initial_user"] = dict(USER)
    document["tasks"]["back"] = {"host": "web", "fetch": {"remote": "/etc/hostname", "local": "o"}}
    document["tasks"]["conf2"] = {"host": "web", "file": {"path": "/etc/x", "src": "motd.txt"}}
    if key[-1] == "unless":
        document["tasks"]["motd"]["unless"] = "true"
    return with_value(key, [text] if key[-1] == "requires" else text, document)


def free_text_cases():
    for key, valid, multiline in FREE_TEXT:
        for control in CONTROL + ([] if multiline else ["\n", "\t"]):
            yield key, (valid or "tasks.conf") + control + "x"


@pytest.mark.reliability(
    "bad input",
    "NUL and other control characters (ESC, DEL, CR, NEL, U+2028; newline and tab where a value "
    "is one line) in every free-text field: run, undo, unless, file content, descriptions, "
    "requires, display_name, host key comments, deployer paths",
    "exit 2 naming the file and the key, no traceback, no host contacted",
)
def test_control_characters_in_free_text_are_refused_naming_the_key(tmp_path, fuzz_cases):
    (tmp_path / "password").write_text("a long enough password\n")
    (tmp_path / "motd.txt").write_text("hello\n")
    for key, text in free_text_cases():
        path = playbook(tmp_path, _document_with(key, text))
        stderr = run_refused(path)
        fuzz_cases.append("control")
        assert f"{path}: {'.'.join(key)}" in stderr, (key, text, stderr)
        assert "control character" in stderr, (key, text, stderr)


def test_newlines_and_tabs_stay_allowed_where_a_value_has_lines(tmp_path):
    from fedi_run.engine.project import load_project

    path = playbook(tmp_path, with_value(("tasks", "motd", "unless"), "test -e /a\n\ttest -e /b"))
    tasks = load_project(path, apply=False).graph.tasks
    assert tasks["tasks.motd"].actions[0].run == "echo hello\n\ttrue\n"
    assert tasks["tasks.conf"].actions[0].content == "line 1\n\tline 2\n"


PLUGIN = """
from pydantic import Field
from fedi_run.engine.api import ConfigSection, ServiceConfig, hookimpl

class MottoConfig(ServiceConfig):
    motto: str = Field("hello", description="Free text a plugin takes.")
    words: tuple[str, ...] = ()

@hookimpl
def fedi_run_config_sections():
    return [ConfigSection("motto", MottoConfig)]
"""


def test_a_plugin_section_free_text_refuses_control_characters(tmp_path, monkeypatch):
    (tmp_path / "motto_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    for key, value in [("motto", "a\x00b"), ("motto", "two\nlines"), ("words", ["ok", "\x1b[31m"])]:
        document = with_value(("services", "motto"), {"host": "web", key: value})
        path = playbook(tmp_path, document)
        stderr = run_refused(path, "--plugin", "motto_plugin")
        assert f"{path}: services.motto.{key}" in stderr and "control character" in stderr


# --- IPv6 scope ids ------------------------------------------------------------------------

GOOD_SCOPES = ["eth0", "wlp3s0", "br-lan.10", "enp0s31f6", "a", "x" * 15, "3", "veth_a1"]
BAD_SCOPES = [
    "",
    "x -oProxyCommand=touch /tmp/pwned",
    "eth0;reboot",
    "$(reboot)",
    "`reboot`",
    "eth0\nfe80::2 ssh-ed25519 AAAA",
    "-oProxyCommand=reboot",
    "x" * 16,
    "eth0 ",
    "eth\t0",
    "eth'0",
    'eth"0',
    "eth0\\",
    "ethä",
    "eth0%1",
    "eth0/1",
    "eth0:1",
    "eth0\x00",
]


@pytest.mark.parametrize("scope", GOOD_SCOPES)
def test_a_plain_interface_scope_id_is_accepted(scope):
    assert validators.check_address(f"fe80::1%{scope}") == f"fe80::1%{scope}"


@pytest.mark.reliability(
    "bad input",
    "an IPv6 scope id carrying ssh options, shell metacharacters, quotes, a newline, a leading "
    "'-', or longer than an interface name (fe80::1%x -oProxyCommand=…)",
    "exit 2 naming the file and hosts.<host>.address, no traceback, no host contacted",
)
def test_a_hostile_scope_id_is_refused(tmp_path, fuzz_cases):
    for scope in BAD_SCOPES:
        with pytest.raises(ValueError, match="interface name"):
            validators.check_address(f"fe80::1%{scope}")
        path = playbook(tmp_path, with_value(("hosts", "web", "address"), f"fe80::1%{scope}"))
        stderr = run_refused(path)
        fuzz_cases.append("scope id")
        assert f"{path}: hosts.web.address" in stderr and "interface name" in stderr, stderr


SSH_WORD = re.compile(r"-o|-i|Port=[0-9]+|HostKeyAlias=[0-9A-Za-z:.%_-]+|/[A-Za-z0-9/._+@,:=~%-]+")


@pytest.mark.reliability(
    "security",
    "the values that reach NixOps4's ssh options and known_hosts line (address with a scope id, "
    "port, identity path, host key and its comment), rendered",
    "sshOpts splits into exactly the expected words, each of a safe alphabet; the pinned key "
    "is one line",
)
def test_the_rendered_ssh_options_are_safe_words(tmp_path):
    """Every value the model accepts renders into NixOps4's sshOpts (split on spaces into ssh's
    arguments) and known_hosts line as the words it should be, nothing more."""
    from fedi_run.engine.errors import PlaybookError
    from fedi_run.engine.nixops.render import render_deployment
    from fedi_run.engine.project import load_project

    key = tmp_path / "keys" / "id_ed25519+deploy@lab,1:=~%"
    key.parent.mkdir()
    key.write_text("not read here\n")
    for index, scope in enumerate(GOOD_SCOPES):
        document = copy.deepcopy(BASE)
        document["hosts"] = {
            "garage": {
                "address": f"fe80::{index + 1}%{scope}",
                "port": 2222,
                "identity": str(key),
                "host_key": HOST_KEY + " deploy key — ünïcode ok",
            }
        }
        document["services"] = {"garage": {"enable": True}}
        document["tasks"] = {}
        project = load_project(playbook(tmp_path, document), apply=False)
        files = render_deployment(project.playbook, project.plugins)
        [line] = [line for line in files["data.nix"].splitlines() if "sshOpts" in line]
        options = re.fullmatch(r'\s*sshOpts = "(.*)";', line)[1]
        words = options.split()
        assert words == [
            "-o",
            "Port=2222",
            "-o",
            f"HostKeyAlias=fe80::{index + 1}%{scope}",
            "-i",
            str(key),
        ]
        assert all(SSH_WORD.fullmatch(word) for word in words), words
        [known] = [line for line in files["data.nix"].splitlines() if "hostPublicKey" in line]
        assert re.fullmatch(r'\s*hostPublicKey = "ssh-ed25519 [A-Za-z0-9+/=]+ [^"\\$]*";', known)
    for identity in ("/k/a b", "/k/a;b", "/k/$(reboot)", "/k/`reboot`", "/k/a'b"):
        document["hosts"]["garage"]["identity"] = identity
        with pytest.raises(PlaybookError, match="hosts.garage.identity"):
            load_project(playbook(tmp_path, document), apply=False)


# --- deep nesting --------------------------------------------------------------------------


@pytest.mark.reliability(
    "bad input",
    "dotted keys and tables nested 100 to 2000 levels deep (a.a.a… = 1), in a playbook, an "
    "inventory and a configuration.json",
    "exit 2, 'nested too deeply' naming the file and where, no traceback",
)
@pytest.mark.parametrize("depth", [100, 600, 2000])
def test_deep_dotted_keys_are_nested_too_deeply(tmp_path, depth, fuzz_cases):
    deep = ".".join(["a"] * depth)
    head = (
        '[deployment]\nname = "test"\ndomain = "example.org"\n[hosts.web]\naddress = "127.0.0.1"\n'
    )
    cases = {
        "in a table": head + f"{deep} = 1\n",
        "top level": f"{deep} = 1\n" + head,
        "a table header": head + f"[hosts.web.{deep}]\nx = 1\n",
    }
    for where, text in cases.items():
        path = tmp_path / "playbook.toml"
        path.write_text(text)
        stderr = run_refused(path)
        fuzz_cases.append("depth")
        assert f"{path}:" in stderr and "nested too deeply" in stderr, (where, stderr)
    path = tmp_path / "playbook.toml"
    path.write_text(head + "[tasks.x]\nhost = 'web'\nrun = 'true'\n")
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f"[hosts.web.{deep}]\nx = 1\n")
    path.write_text(head + f"[hosts.web.{deep}]\ny = 1\n")
    stderr = run_refused(path, "-i", inventory)
    assert "nested too deeply" in stderr and str(path) in stderr, stderr
    configuration = tmp_path / "configuration.json"
    configuration.write_text('{"domain": ' + "[" * depth + "]" * depth + "}")
    path.write_text(head)
    stderr = run_refused(path, "--configuration", configuration)
    assert f"{configuration}:" in stderr and "nested too deeply" in stderr, stderr


# --- a host named like the deployer ----------------------------------------------------------


@pytest.mark.reliability(
    "bad input",
    "a host named 'local', the deployer's name in plans, recaps and --limit",
    "exit 2 naming hosts.local as reserved, no traceback, nothing run on the deployer",
)
def test_a_host_named_local_is_refused(tmp_path):
    marker = tmp_path / "ran-on-the-deployer"
    document = copy.deepcopy(BASE)
    document["hosts"]["local"] = {"address": "127.0.0.1", "port": 1}
    document["tasks"] = {"x": {"host": "local", "run": f"touch {marker}"}}
    path = playbook(tmp_path, document)
    stderr = run_refused(path)
    assert f"{path}: hosts.local:" in stderr and "reserved" in stderr, stderr
    code, _, stderr = run_cli("plan", path)
    assert code == 2 and "hosts.local" in stderr
    assert not marker.exists()


# --- show-run with an id out of range -----------------------------------------------------------


@pytest.mark.reliability(
    "bad input",
    "show-run with a run id SQLite cannot hold (2**63 and more, huge, negative); history "
    "--limit larger than SQLite counts",
    "exit 2, 'no run N', no traceback; the history lists every run",
)
def test_show_run_with_an_id_out_of_range_is_no_such_run(tmp_path):
    from fedi_run.engine.report.state import StateStore

    path = playbook(tmp_path, BASE)
    state = tmp_path / "state.db"
    StateStore.open(state).close()
    for run_id in (2**63, 2**63 - 1, 10**30, -(2**63) - 1, -1, 0):
        code, stdout, stderr = run_cli("show-run", path, "--state", state, "--", str(run_id))
        assert code == 2, (run_id, stdout, stderr)
        assert f"no run {run_id} in {state}" in stderr and "Traceback" not in stderr, stderr
    code, stdout, stderr = run_cli("history", path, "--state", state, "--limit", str(10**30))
    assert code == 0 and "no runs of deployment 'test'" in stdout, (stdout, stderr)


# --- deployer files that exist but cannot serve -------------------------------------------------

APPS = {
    "deployment": {"name": "test", "domain": "example.org"},
    "hosts": {
        name: {"address": "127.0.0.1", "port": 1, "host_key": HOST_KEY, "nixos": "base.nix"}
        for name in ("garage", "mastodon")
    },
    "services": {"mastodon": {"enable": True}},
    "initial_user": dict(USER),
}


def _apps(tmp_path, **changes):
    (tmp_path / "base.nix").write_text("{ ... }: { }\n")
    (tmp_path / "password").write_text("a long enough password\n")
    document = copy.deepcopy(APPS)
    for dotted, value in changes.items():
        document = with_value(tuple(dotted.split("__")), value, document)
    return playbook(tmp_path, document)


def _keys(tmp_path):
    import subprocess

    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", keys / "encrypted"], check=True
    )
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keys / "plain"], check=True
    )
    (keys / "garbage").write_text("this is not a key\n")
    (keys / "empty").write_text("")
    (keys / "binary").write_bytes(bytes(range(256)))
    (keys / "truncated").write_text((keys / "plain").read_text()[:120])
    return keys


@pytest.mark.reliability(
    "bad input",
    "a host's identity file that is no private key (garbage, empty, binary, truncated, the "
    "public key, passphrase-protected)",
    "exit 2 naming the file and hosts.<host>.identity before any host is contacted, no traceback",
)
def test_an_identity_that_is_no_usable_key_is_a_preflight_problem(tmp_path):
    keys = _keys(tmp_path)
    for name in ("garbage", "empty", "binary", "truncated", "plain.pub", "encrypted"):
        path = _apps(tmp_path, hosts__garage__identity=str(keys / name))
        stderr = run_refused(path)
        assert f"{path}: hosts.garage.identity: " in stderr and str(keys / name) in stderr, stderr
        expected = "passphrase" if name == "encrypted" else "not a private key"
        assert expected in stderr, (name, stderr)
    path = _apps(tmp_path, hosts__garage__identity=str(keys / "plain"))
    code, stdout, stderr = run_cli("run", path, "--json", "--no-apply", "--retries", "0")
    assert code == 1 and "hosts.garage.identity" not in stderr  # a usable key: on to the hosts


@pytest.mark.reliability(
    "bad input",
    "an initial user's password file that is not UTF-8",
    "exit 2 naming the file and initial_user.password_file before any host is contacted, the "
    "password never shown",
)
def test_a_password_file_that_is_not_utf8_is_a_preflight_problem(tmp_path):
    path = _apps(tmp_path)
    (tmp_path / "password").write_bytes(b"s3cret-\xff\xfe-password\n")
    stderr = run_refused(path)
    assert f"{path}: initial_user.password_file: " in stderr and "UTF-8" in stderr, stderr
    assert "s3cret" not in stderr


@pytest.mark.reliability(
    "bad input",
    "a fetch task's local path that is a directory, or below a file",
    "exit 2 naming the file and tasks.<name>.fetch.local before any host is contacted",
)
def test_a_fetch_into_a_directory_is_a_preflight_problem(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "a-file").write_text("x")
    for local in ("out", "a-file/hostname"):
        document = with_value(
            ("tasks", "back"), {"host": "web", "fetch": {"remote": "/etc/hostname", "local": local}}
        )
        path = playbook(tmp_path, document)
        stderr = run_refused(path)
        assert f"{path}: tasks.back.fetch.local: " in stderr and str(tmp_path / local) in stderr


# --- selection: --resume with filters, empty filters ---------------------------------------------

TWO_HOSTS = {
    "deployment": {"name": "test", "domain": "example.org"},
    "hosts": {name: {"address": "127.0.0.1", "port": 1} for name in ("web", "db")},
    "tasks": {
        "a": {"hosts": ["web", "db"], "run": "true", "tags": ["a"]},
        "b": {"hosts": ["web", "db"], "run": "true", "requires": ["tasks.a"], "tags": ["b"]},
    },
}


def _started(stdout: str) -> list[str]:
    import json

    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [e["id"] for e in events if e["event"] == "task_started"]


def _run(path, *args):
    return run_cli(
        "run", path, "--json", "--no-apply", "--retries", "0", "--connect-timeout", "1", *args
    )


@pytest.mark.reliability(
    "bad input",
    "--resume with --limit, --only, --tags, --skip-tags or --from",
    "the filters narrow what --resume runs (nothing on an excluded host or outside the filter "
    "starts); what they leave out stays for the next --resume",
)
def test_filters_given_with_resume_narrow_it(tmp_path):
    path = playbook(tmp_path, TWO_HOSTS)
    state = tmp_path / "state.db"
    code, stdout, _ = _run(path, "--state", state)
    assert code == 1 and set(_started(stdout)) == {"tasks.a@web", "tasks.a@db"}  # unreachable
    cases = {
        ("--limit", "web"): {"tasks.a@web"},
        ("--only", "tasks.a@db"): {"tasks.a@db"},
        ("--tags", "a", "--limit", "db"): {"tasks.a@db"},
        ("--skip-tags", "b", "--limit", "web"): {"tasks.a@web"},
    }
    for flags, expected in cases.items():
        code, stdout, stderr = _run(path, "--state", state, "--resume", *flags)
        assert set(_started(stdout)) == expected, (flags, _started(stdout), stderr)
        assert code == 1
    # a narrowed resume leaves the rest to do: the next plain --resume runs it all again
    code, stdout, _ = _run(path, "--state", state, "--resume")
    assert {"tasks.a@web", "tasks.a@db"} <= set(_started(stdout)), _started(stdout)


def test_a_resume_its_filters_leave_nothing_of_is_refused(tmp_path):
    from fedi_run.engine.errors import FediRunError
    from fedi_run.engine.planning.selection import Selector
    from fedi_run.engine.project import load_project
    from fedi_run.engine.report.state_location import StateLocation
    from fedi_run.engine.run import RunRequest, _selection

    class LastRun:
        location = StateLocation(path=tmp_path / ".fedi-run" / "state.db")

        def resume_tasks(self, deployment, kind, check=None, deployer=None):
            return ("tasks.a@web", "tasks.b@web")

    project = load_project(playbook(tmp_path, TWO_HOSTS), apply=False)
    request = RunRequest(resume=True, selector=Selector(limit=("web",)))
    selection, left_over = _selection(project, request, LastRun())
    assert selection.order == ("tasks.a@web", "tasks.b@web") and left_over == ()
    request = RunRequest(
        resume=True, selector=Selector(only=("tasks.b@web",), with_dependencies=False)
    )
    selection, left_over = _selection(project, request, LastRun())
    assert selection.order == ("tasks.b@web",) and left_over == ("tasks.a@web",)
    request = RunRequest(resume=True, selector=Selector(limit=("db",)))
    with pytest.raises(FediRunError, match=r"--resume --limit db: of the 2 task\(s\) .* none"):
        _selection(project, request, LastRun())


EMPTY_FILTERS = [
    ("--only", ""),
    ("--only", " "),
    ("--limit", ""),
    ("--tags", ","),
    ("--tags", "a,,b"),
    ("--tags", ""),
    ("--skip-tags", ""),
    ("--skip-tags", " , "),
    ("--from", ""),
]


@pytest.mark.reliability(
    "bad input",
    "an empty selection filter: --only '', --limit '', --tags ',', --skip-tags '', --from ''",
    "exit 2 naming the flag, nothing selected, nothing run",
)
def test_an_empty_filter_is_an_error_naming_the_flag(tmp_path):
    path = playbook(tmp_path, TWO_HOSTS)
    for flag, value in EMPTY_FILTERS:
        for command in ("plan", "run"):
            extra = ("--no-apply", "--json") if command == "run" else ()
            code, stdout, stderr = run_cli(command, path, flag, value, *extra)
            assert code == 2, (flag, value, command, stdout, stderr)
            assert f"error: {flag}" in stderr and "empty" in stderr, (flag, value, stderr)
            assert "Traceback" not in stderr and '"run_started"' not in stdout


# --- report paths --------------------------------------------------------------------------------


@pytest.mark.reliability(
    "bad input",
    "an unwritable --junit path (a directory, below a file, in /proc), and a --known-hosts file "
    "new host keys cannot be recorded in",
    "exit 2 naming the flag and the path before any host is contacted, no traceback",
)
def test_an_unwritable_report_path_is_refused_before_any_host(tmp_path):
    path = playbook(tmp_path, BASE)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    for junit in ("a-dir", "a-file/report.xml", "/proc/version/report.xml", "/proc/report.xml"):
        target = tmp_path / junit
        stderr = run_refused(path, "--junit", target)
        assert "--junit" in stderr and str(target) in stderr, stderr  # click's, or ours
    for known in ("a-dir", "a-file/known_hosts"):
        target = tmp_path / known
        stderr = run_refused(path, "--accept-new-host-keys", "--known-hosts", target)
        assert "--known-hosts" in stderr and str(target) in stderr, stderr
    # writable: created on the way (and the run goes on to the hosts)
    code, _, stderr = run_cli(
        "run", path, "--json", "--no-apply", "--retries", "0", "--junit", tmp_path / "new/r.xml"
    )
    assert code == 1 and (tmp_path / "new" / "r.xml").exists(), stderr


@pytest.mark.reliability(
    "bad input",
    "the directory the NixOps4 deployment is rendered into cannot be written (the state kept "
    "elsewhere with --state)",
    "exit 2 naming the directory before any host is contacted, no traceback",
)
def test_an_unwritable_render_directory_is_refused_before_any_host(tmp_path):
    (tmp_path / "p").mkdir()
    path = playbook(tmp_path / "p", BASE)
    (tmp_path / "p" / ".fedi-run").write_text("a file where the directory goes")
    stderr = run_refused(path, "--state", tmp_path / "elsewhere" / "state.db")
    assert "cannot render the NixOps4 deployment into" in stderr, stderr
    assert str(tmp_path / "p" / ".fedi-run" / "test") in stderr, stderr


@pytest.mark.reliability(
    "faults",
    "the --junit report cannot be written when the run ends (disk full)",
    "an error naming the report, with the run's own exit status (1 here), not 2; a run that "
    "raised its own error keeps it",
)
def test_a_report_that_cannot_be_written_keeps_the_run_exit_status(tmp_path):
    from fedi_run.engine.errors import FediRunError, PlaybookError
    from fedi_run.engine.project import load_project
    from fedi_run.engine.run import RunRequest, run_project

    class BrokenReport:
        def handle(self, event):
            pass

        def close(self):
            raise OSError(28, "No space left on device", str(tmp_path / "report.xml"))

    project = load_project(playbook(tmp_path, BASE), apply=False)
    request = RunRequest(state_path=tmp_path / "state.db", retries=0)
    with pytest.raises(FediRunError, match="cannot write the report .*No space left") as caught:
        run_project(project, request, [BrokenReport()])
    assert caught.value.exit_status == 1  # the run's own: its hosts were unreachable
    document = with_value(("initial_user",), dict(USER, password_file="nowhere"))
    document["services"] = {"mastodon": {"enable": True, "host": "web"}}
    document["hosts"]["garage"] = {"address": "127.0.0.1", "port": 1}
    project = load_project(playbook(tmp_path, document), apply=False)
    with pytest.raises(PlaybookError, match="initial_user.password_file"):  # not hidden either
        run_project(project, request, [BrokenReport()])


# --- numbers that are not numbers ----------------------------------------------------------------


@pytest.mark.reliability(
    "bad input",
    "nan and inf as seconds: --timeout, --connect-timeout (run and verify), a task's timeout",
    "exit 2 naming the flag or the key, no traceback, no host contacted",
)
def test_non_finite_seconds_are_refused(tmp_path):
    path = playbook(tmp_path, BASE)
    for flag in ("--timeout", "--connect-timeout"):
        for value in ("nan", "inf", "1e400", "-nan"):
            code, stdout, stderr = run_cli("run", path, "--json", "--no-apply", flag, value)
            assert code == 2 and flag in stderr and "finite" in stderr, (flag, value, stderr)
            assert '"run_started"' not in stdout
    code, _, stderr = run_cli("verify", path, "--connect-timeout", "nan")
    assert code == 2 and "--connect-timeout" in stderr and "finite" in stderr, stderr
    for value in (float("nan"), float("inf")):
        stderr = run_refused(playbook(tmp_path, with_value(("tasks", "motd", "timeout"), value)))
        assert "tasks.motd.timeout" in stderr and "finite" in stderr, stderr
