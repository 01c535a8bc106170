"""Values that reach a shell: hostile text in every field that is allowed to be free text runs
nothing, on a lab host or on the deployer, and arrives as the data it is.

The fields checked where they enter (names, domains, users, modes, keys, URLs) are the bad-input
fuzz suite's (tests/test_fuzz_input.py). Here: file contents (inline and from ``src``), task
descriptions, target paths of files, directories and ``creates`` (absolute, no NUL or newline,
anything else allowed — so quoted wherever used, error messages included), and the initial
user's display name (in the initial-user file, and through ``| quote`` in a command). A run
and its teardown go through every path of the generated scripts, failures included (a parent
that is a file), and a control task shows the marker check would see an injection.
"""

from __future__ import annotations

import json
import shlex

import pytest
import tomli_w
from click.testing import CliRunner
from security_helpers import cli

from fedi_run.engine.cli.main import cli as fedi_cli

HOSTILE = [
    "$(touch pwned-{n})",
    "`touch pwned-{n}`",
    "'$(touch pwned-{n})'",
    '"$(touch pwned-{n})"',
    "x'; touch pwned-{n}; '",
    'x"; touch pwned-{n}; "',
    "a; touch pwned-{n}",
    "a | touch pwned-{n}",
    "a && touch pwned-{n} #",
    "\\'\\\"$(touch pwned-{n})\\",
    "${{IFS}}$(touch${{IFS}}pwned-{n})",
    "a\ntouch pwned-{n}\n",
    "-rf ; touch pwned-{n}",
    "%s%n $((1)) !! * ? ~ touch pwned-{n}",
]
DISPLAY_NAME = "$(touch pwned-dn1)`touch pwned-dn2`'; touch pwned-dn3; '\"; touch pwned-dn4 #"
"""One line: a display name, like a description, holds no control character (a newline in one
is refused where it enters: tests/test_hostile_input.py)."""
PASSWORD = "password-of-the-injection-test"
ROOT = "/srv/inj"


def _value(i: int, field: str) -> str:
    return HOSTILE[i].format(n=f"{field}-{i}")


def _playbook(tmp_path, lab) -> dict:
    src = tmp_path / "src-content"
    src.write_text("".join(_value(i, "src") for i in range(len(HOSTILE))))
    (tmp_path / "password").write_text(PASSWORD + "\n")
    tasks: dict[str, dict] = {
        "root": {"host": "target", "directory": {"path": ROOT, "mode": "0755"}},
        "blocker": {
            "host": "target",
            "requires": ["tasks.root"],
            "file": {"path": f"{ROOT}/blocker", "content": "a file, not a directory\n"},
        },
        "src": {
            "host": "target",
            "requires": ["tasks.root"],
            "file": {"path": f"{ROOT}/from-src", "src": str(src)},
        },
        "display-name": {
            "host": "target",
            "requires": ["tasks.root"],
            "run": f"printf %s {{{{ initial_user.display_name | quote }}}} > {ROOT}/display-name",
        },
        "control": {
            "host": "target",
            "run": "touch pwned-control",
            "description": "the one task that does touch a marker",
        },
    }
    for i in range(len(HOSTILE)):
        after = {"host": "target", "requires": ["tasks.root"]}
        tasks[f"content-{i}"] = {
            **after,
            "description": _value(i, "description").replace("\n", " "),  # one line
            "file": {"path": f"{ROOT}/content-{i}", "content": _value(i, "content")},
        }
        if "\n" in HOSTILE[i]:  # a path holds no newline: refused where it enters
            continue
        tasks[f"file-{i}"] = {
            **after,
            "file": {"path": f"{ROOT}/f-{_value(i, 'file')}", "content": "x\n", "mode": "0600"},
        }
        tasks[f"dir-{i}"] = {**after, "directory": {"path": f"{ROOT}/d-{_value(i, 'dir')}"}}
        created = f"{ROOT}/c-{_value(i, 'creates')}"
        tasks[f"creates-{i}"] = {
            **after,
            "run": f"touch -- {shlex.quote(created)}",
            "creates": created,
        }
        blocked = {"host": "target", "requires": ["tasks.blocker"]}
        tasks[f"blocked-dir-{i}"] = {
            **blocked,
            "directory": {"path": f"{ROOT}/blocker/d-{_value(i, 'blocked-dir')}"},
        }
        tasks[f"blocked-file-{i}"] = {
            **blocked,
            "file": {"path": f"{ROOT}/blocker/f-{_value(i, 'blocked-file')}", "content": "x\n"},
        }
    target = lab.hosts["target"]
    return {
        "deployment": {"name": "injection", "domain": "injection.example.org"},
        "hosts": {
            "target": {
                "address": target.address,
                "port": target.port,
                "host_key": target.host_key,
                "identity": str(lab.identity),
                "nixos": str(lab.dir / "nixos" / "target" / "configuration.nix"),  # the lab's
            }
        },
        "services": {"garage": {"host": "target"}, "pixelfed": {"enable": True, "host": "target"}},
        "initial_user": {
            "username": "admin",
            "display_name": DISPLAY_NAME,
            "email": "admin@injection.example.org",
            "password_file": str(tmp_path / "password"),
        },
        "run": {"dns": "off"},
        "tasks": tasks,
    }


def _markers_on_host(lab) -> list[str]:
    found = lab.run(
        "target",
        "find / -maxdepth 4 -name 'pwned-*' -not -path '/proc/*' 2>/dev/null; true",
        check=True,
    ).stdout
    return sorted(found.split())


@pytest.mark.lab
@pytest.mark.reliability(
    "security",
    "hostile text in free-text fields (file content and src, "
    "descriptions, file/directory/creates paths, display name)",
    "nothing runs on the host or the deployer; each value arrives as data "
    "(file contents, names); tasks whose parent is a file fail naming it",
)
def test_hostile_values_reach_the_host_as_data_only(lab_factory, tmp_path):
    lab = lab_factory(["target"])
    playbook = tmp_path / "injection.toml"
    playbook.write_text(tomli_w.dumps(_playbook(tmp_path, lab)))
    base = ("--no-apply", "--json", "-v")

    run = cli("run", playbook, *base, cwd=tmp_path)
    finished = run.finished()
    assert run.exit_code == 1, run.stderr  # only the blocked tasks fail, as they must
    failed = {task for task, event in finished.items() if event["status"] == "failed"}
    blocked = {task for task in finished if task.startswith("tasks.blocked-")}
    assert failed == blocked and blocked, (failed, run.stderr[-2000:])
    for task in blocked:
        assert "cannot" in finished[task]["message"], finished[task]
    assert finished["nixops4.render"]["status"] == "skipped"  # it waits for every task
    others = {t: e["status"] for t, e in finished.items() if t not in blocked | {"nixops4.render"}}
    assert set(others.values()) <= {"changed", "ok"}, others

    # Only the control task touched a marker, on the host; none on the deployer.
    assert _markers_on_host(lab) == ["/root/pwned-control"]
    assert list(tmp_path.rglob("pwned-*")) == []

    # Each value arrived as it was: file contents byte for byte, names as given.
    for i in range(len(HOSTILE)):
        assert lab.read_file("target", f"{ROOT}/content-{i}") == _value(i, "content").encode()
    names = set(
        lab.run(
            "target", f"find {ROOT} -mindepth 1 -maxdepth 1 -printf '%f\\0'", check=True
        ).stdout.split("\0")
    ) - {""}
    for i, hostile in enumerate(HOSTILE):
        if "\n" not in hostile:
            assert {f"f-{_value(i, 'file')}", f"d-{_value(i, 'dir')}"} <= names, i
    assert (
        lab.read_file("target", f"{ROOT}/from-src")
        == "".join(_value(i, "src") for i in range(len(HOSTILE))).encode()
    )
    assert lab.read_file("target", f"{ROOT}/display-name") == DISPLAY_NAME.encode()
    initial_user = lab.read_file(
        "target", "/var/lib/fedi-run/injection/secrets/pixelfed/initial-user"
    )
    assert json.loads(initial_user)["displayName"] == DISPLAY_NAME

    again = cli("run", playbook, *base, cwd=tmp_path)  # the comparisons, with these names
    assert {t for t, e in again.finished().items() if e["status"] == "failed"} == blocked
    changed = {t for t, e in again.finished().items() if e["status"] == "changed"}
    assert changed == {"tasks.control", "tasks.display-name"}, changed

    # restores and removals, same names
    down = cli("teardown", playbook, *base, "--yes", cwd=tmp_path)
    assert down.exit_code == 0, down.stdout[-3000:] + down.stderr[-3000:]
    assert _markers_on_host(lab) == ["/root/pwned-control"]
    assert list(tmp_path.rglob("pwned-*")) == []
    left = set(
        lab.run("target", f"find {ROOT} -mindepth 1 -printf '%P\\0'", check=True).stdout.split("\0")
    ) - {""}
    # what commands made stays (a command has no undo); every file and directory went
    assert left == {"display-name"} | {
        f"c-{_value(i, 'creates')}" for i, hostile in enumerate(HOSTILE) if "\n" not in hostile
    }, left


@pytest.mark.reliability(
    "security",
    "a target path with a newline; a relative `creates`",
    "exit 2 naming the key and 'expected an absolute path on the host'",
)
def test_a_path_with_a_newline_is_refused_where_it_enters(tmp_path):
    """The one thing a target path may not hold besides NUL (the fuzz suite covers names)."""
    playbook = tmp_path / "p.toml"
    playbook.write_text(
        tomli_w.dumps(
            {
                "deployment": {"name": "x", "domain": "x.example.org"},
                "hosts": {"h": {"address": "127.0.0.1", "port": 1}},
                "tasks": {
                    "a": {"host": "h", "file": {"path": "/srv/a\ntouch pwned", "content": ""}},
                    "b": {"host": "h", "run": "true", "creates": "relative/path"},
                },
            }
        )
    )
    result = cli("validate", playbook, cwd=tmp_path)
    assert result.exit_code == 2
    assert "tasks.a.file.path" in result.stderr and "tasks.b.creates" in result.stderr
    assert "expected an absolute path on the host" in result.stderr


@pytest.mark.reliability(
    "security",
    "an identity path with shell characters",
    "exit 2 naming hosts.<name>.identity and the characters: NixOps4's ssh "
    "options are one string a shell may split; nothing rendered or run",
)
def test_an_identity_path_with_shell_characters_is_refused(tmp_path):
    playbook = tmp_path / "p.toml"
    for identity in ("keys/$(reboot)", "keys/`reboot`", "keys/a;b", "keys/'q'", "keys/a|b"):
        playbook.write_text(
            tomli_w.dumps(
                {
                    "deployment": {"name": "x", "domain": "x.example.org"},
                    "hosts": {
                        "garage": {"address": "127.0.0.1", "port": 1, "identity": identity},
                        "mastodon": {"address": "127.0.0.1", "port": 1},
                    },
                    "services": {"mastodon": {"enable": True}},
                }
            )
        )
        result = CliRunner().invoke(fedi_cli, ["plan", str(playbook)])
        assert result.exit_code == 2, (identity, result.stdout, result.stderr)
        assert "hosts.garage.identity" in result.stderr and "shell" in result.stderr
        assert not (tmp_path / ".fedi-run").exists()
