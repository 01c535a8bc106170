"""The compiled scripts, run by a real local shell: comparisons, check mode, payload framing,
failures confined to their own task, and reports attributed to the right task."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import pytest

from fedi_run.engine.execute import scripts


@dataclass(frozen=True)
class SegmentReport:
    """What one segment printed: each part's state (``"0"``, ``"1"``, ``"F"``) and message, and
    the output of its commands (markers removed)."""

    states: dict[int, tuple[str, str]]
    output: str


def read_report(stdout: str, marker: str, segments: int) -> list[SegmentReport]:
    """A whole script's stdout read at once with :class:`scripts.ReportReader`."""
    collected = [bytearray() for _ in range(segments)]
    reader = scripts.ReportReader(marker, [part.extend for part in collected])
    reader.feed(stdout.encode())
    reader.close()
    return [
        SegmentReport(reader.states[i], collected[i].decode("utf-8", "replace"))
        for i in range(segments)
    ]


def run(segments, check=False):
    script = scripts.compile_script(segments, check)
    assert b"s3cr3t-value" not in script.text.encode()  # contents travel on stdin only
    done = subprocess.run(["sh", "-c", script.text], input=script.payload, capture_output=True)
    return done, read_report(done.stdout.decode(), script.marker, len(segments))


def test_file_is_written_then_left_alone(tmp_path):
    target = str(tmp_path / "f")
    part = scripts.file_part("0.0", target, b"hello\n", 0o640, None, "file")
    _, [report] = run([[part]])
    assert report.states == {0: ("1", "")}
    assert open(target).read() == "hello\n" and oct(os.stat(target).st_mode & 0o777) == "0o640"
    _, [report] = run([[scripts.file_part("0.0", target, b"hello\n", 0o640, None, "file")]])
    assert report.states == {0: ("0", "")}
    os.chmod(target, 0o600)
    _, [report] = run([[scripts.file_part("0.0", target, b"hello\n", 0o640, None, "file")]])
    assert report.states == {0: ("1", "")} and oct(os.stat(target).st_mode & 0o777) == "0o640"


def test_check_mode_reports_without_changing(tmp_path):
    target = tmp_path / "f"
    _, [report] = run(
        [
            [
                scripts.file_part("0.0", str(target), b"x", 0o644, None, "file"),
                scripts.directory_part("0.1", str(tmp_path / "d"), 0o755, None),
                scripts.command_part("0.2", f"touch {tmp_path}/ran", None, None),
            ]
        ],
        check=True,
    )
    assert report.states == {0: ("1", ""), 1: ("1", ""), 2: ("1", "")}
    assert list(tmp_path.iterdir()) == []


def test_a_failing_task_does_not_disturb_the_others_or_the_payload(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    segments = [
        [
            scripts.file_part(
                "0.0", str(tmp_path / "missing-dir" / "x"), b"lost payload", 0o644, None, "x"
            ),
            scripts.file_part(
                "0.1", str(tmp_path / "never"), b"never written", 0o644, None, "never"
            ),
        ],
        [scripts.command_part("1.0", "echo out; echo err >&2; exit 3", None, None)],
        [],
        [
            scripts.file_part("3.0", str(first), b"first", 0o644, None, "a"),
            scripts.secret_part("3.1", str(second), b"s3cr3t-value", 0o400, keep=True, summary="b"),
        ],
    ]
    done, reports = run(segments)
    assert reports[0].states[0][0] == "F" and "cannot write" in reports[0].states[0][1]
    assert 1 not in reports[0].states and not (tmp_path / "never").exists()
    assert reports[1].states == {0: ("F", "exited with status 3")}
    assert reports[1].output.split() == ["out", "err"]
    assert reports[2].states == {} and reports[2].output == ""
    assert reports[3].states == {0: ("1", ""), 1: ("1", "")}
    assert first.read_bytes() == b"first" and second.read_bytes() == b"s3cr3t-value"
    assert oct(second.stat().st_mode & 0o777) == "0o400"
    assert b"s3cr3t-value" not in done.stdout + done.stderr


def test_a_kept_secret_is_not_replaced_unless_asked(tmp_path):
    secret = tmp_path / "s"
    secret.write_text("old")
    _, [report] = run(
        [[scripts.secret_part("0.0", str(secret), b"new", 0o400, keep=True, summary="s")]]
    )
    assert secret.read_text() == "old" and report.states == {0: ("1", "")}  # the mode was fixed
    _, [report] = run(
        [[scripts.secret_part("0.0", str(secret), b"new", 0o400, keep=False, summary="s")]]
    )
    assert secret.read_text() == "new" and report.states == {0: ("1", "")}


def test_restore_puts_back_what_was_there(tmp_path, monkeypatch):
    monkeypatch.setattr(scripts, "ORIGINALS", str(tmp_path / "originals"))
    target = tmp_path / "motd"
    target.write_text("the machine's own\n")
    run([[scripts.file_part("0.0", str(target), b"ours\n", 0o644, None, "motd")]])
    assert target.read_text() == "ours\n"
    run([[scripts.restore_part("0.0", str(target))]])
    assert target.read_text() == "the machine's own\n"
    created = tmp_path / "new"
    run([[scripts.file_part("0.0", str(created), b"ours\n", 0o644, None, "new")]])
    run([[scripts.restore_part("0.0", str(created))]])
    assert not created.exists()


def test_a_write_failure_says_why_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "missing-dir" / "x"
    script = scripts.compile_script(
        [[scripts.file_part("0.0", str(target), b"data", 0o644, None, "x")]], False, "web"
    )
    done = subprocess.run(["sh", "-c", script.text], input=script.payload, capture_output=True)
    [report] = read_report(done.stdout.decode(), script.marker, 1)
    assert report.states[0] == ("F", f"cannot write {target} on web: Directory nonexistent")  # dash
    assert not list(tmp_path.iterdir())


def test_a_temporary_file_left_by_a_broken_off_run_is_removed_by_the_next_write(tmp_path):
    """A host that died between writing ``<file>.fedi-run.<pid>`` and renaming it leaves that
    file; the next write of the file (or secret) removes it, and nothing else."""
    target, secret = tmp_path / "f", tmp_path / "s" / "key"
    secret.parent.mkdir()
    for path in (target, secret):
        (path.parent / f"{path.name}.fedi-run.4242").write_text("half")
    (tmp_path / "f.fedi-run.notes").write_text("not ours")  # not a pid: kept
    _, [report] = run(
        [
            [
                scripts.file_part("0.0", str(target), b"new\n", 0o644, None, "file"),
                scripts.secret_part("0.1", str(secret), b"s3cr3t-value", 0o400, True, "secret"),
            ]
        ]
    )
    assert report.states == {0: ("1", ""), 1: ("1", "")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "f.fedi-run.notes", "s"]
    assert [p.name for p in secret.parent.iterdir()] == ["key"]


NOBODY = 65534  # nobody's uid (these tests run as root: chown needs it)


def owned_file(target, mode: int, owner: str = "nobody"):
    return [[scripts.file_part("0.0", str(target), b"#!/bin/sh\n", mode, owner, "file")]]


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o6750, 0o1777], ids=oct)
def test_a_setuid_file_with_an_owner_keeps_its_bits_and_converges(tmp_path, mode):
    """chown clears the setuid and setgid bits: the owner is set first, then the mode, so the
    file has both and the next run changes nothing — written anew or fixed in place."""
    target = tmp_path / "tool"
    for expected in ("1", "0"):
        _, [report] = run(owned_file(target, mode))
        assert report.states == {0: (expected, "")}
        assert target.stat().st_mode & 0o7777 == mode and target.stat().st_uid == NOBODY
    os.chown(target, 0, 0)  # someone changed the owner on the host: fixed in place
    for expected in ("1", "0"):
        _, [report] = run(owned_file(target, mode))
        assert report.states == {0: (expected, "")}
        assert target.stat().st_mode & 0o7777 == mode and target.stat().st_uid == NOBODY


def test_a_directory_with_an_owner_and_a_setgid_mode_converges(tmp_path):
    target = tmp_path / "shared"
    for expected in ("1", "0"):
        _, [report] = run([[scripts.directory_part("0.0", str(target), 0o2775, "nobody")]])
        assert report.states == {0: (expected, "")}
        assert target.stat().st_mode & 0o7777 == 0o2775 and target.stat().st_uid == NOBODY


def test_a_directory_under_a_setgid_parent_converges_to_its_mode(tmp_path):
    """A directory made in a setgid directory inherits the bit, and ``chmod 755`` keeps a
    directory's setgid bit (GNU): the mode is set explicitly, so the second run is ok."""
    parent = tmp_path / "parent"
    parent.mkdir()
    parent.chmod(0o2775)
    target = parent / "child"
    for expected in ("1", "0"):
        _, [report] = run([[scripts.directory_part("0.0", str(target), 0o755, None)]])
        assert report.states == {0: (expected, "")}
        assert target.stat().st_mode & 0o7777 == 0o755


@pytest.mark.parametrize("exists", [False, True], ids=["new", "existing"])
def test_a_failed_chown_of_a_directory_fails_its_task(tmp_path, exists):
    """An owner the host does not know: the task fails naming the path, the host and why —
    never "changed" with the owner left as it was."""
    target = tmp_path / "d"
    if exists:
        target.mkdir()
    script = scripts.compile_script(
        [
            [
                scripts.directory_part("0.0", str(target), 0o750, "no-such-user-here"),
                scripts.file_part("0.1", str(target / "after"), b"x", 0o644, None, "after"),
            ]
        ],
        False,
        "web",
    )
    done = subprocess.run(["sh", "-c", script.text], input=script.payload, capture_output=True)
    [report] = read_report(done.stdout.decode(), script.marker, 1)
    state, message = report.states[0]
    assert state == "F", report
    assert message.startswith(f"cannot set the owner of {target} on web: "), message
    assert "no-such-user-here" in message
    assert 1 not in report.states  # what follows in the task does not run
    assert not (target / "after").exists()


def test_a_failed_chown_of_a_file_fails_its_task(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"#!/bin/sh\n")
    target.chmod(0o600)
    _, [report] = run(owned_file(target, 0o755, "no-such-user-here"))
    state, message = report.states[0]
    assert state == "F" and f"of {target} on the host: " in message, report
    assert target.stat().st_uid == 0


def test_the_report_reader_takes_any_chunking():
    """Markers split anywhere between chunks, output without newlines, text that looks like
    the start of a marker: the same report as from the whole text."""
    import random

    marker = "@@fedi-00112233aabbccdd"
    text = (
        f"\n{marker} 0 B\nout\n@@fedi-0011\n{marker} 0.0 1\n\n{marker} 1 B\n"
        + "x" * 70000
        + f"\n{marker} 1.0 F exited with status 3\n\n{marker} 2 B\nlast\n\n@@fe"
    )
    whole = read_report(text, marker, 3)
    data = text.encode()
    rng = random.Random(7)
    for _ in range(200):
        collected = [bytearray() for _ in range(3)]
        reader = scripts.ReportReader(marker, [c.extend for c in collected])
        position = 0
        while position < len(data):
            size = rng.choice([1, 2, 5, 17, 4096, 65536])
            reader.feed(data[position : position + size])
            position += size
        reader.close()
        assert reader.states == [r.states for r in whole]
        assert [c.decode() for c in collected] == [r.output for r in whole]
    assert whole[0].output == "out\n@@fedi-0011" and whole[1].states == {
        0: ("F", "exited with status 3")
    }
    assert len(whole[1].output) == 70000 and whole[2].output == "last\n\n@@fe"


def test_task_output_keeps_a_tail_logs_everything_and_masks_split_secrets(tmp_path):
    from fedi_run.engine.report.masking import Masker
    from fedi_run.engine.report.output_log import OutputLog

    masker = Masker()
    secret = "s3cr3t-value-0123456789"
    masker.add(secret)
    (tmp_path / "state").mkdir()
    log = OutputLog.create(tmp_path / "state", 4, masker)
    assert oct(os.stat(tmp_path / "state" / "logs").st_mode & 0o777) == "0o700"
    output = log.task("tasks.noisy@web")
    data = "".join(f"line {i} {secret} é\n" for i in range(10000)).encode()
    for start in range(0, len(data), 7):  # the secret (and é) split across chunks
        output.write(data[start : start + 7])
    text = output.text()
    path = tmp_path / "state" / "logs" / "4" / "tasks.noisy@web.log"
    logged = path.read_text()
    assert logged == data.decode().replace(secret, "********")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    note, _, tail = text.partition("\n")
    assert note.startswith("[… ") and note.endswith(f"KiB more in {path}]")
    assert tail.startswith("line ") and tail.endswith("line 9999 ******** é\n")
    assert len(tail) <= 64 * 1024 and secret[:8] not in text


def test_task_output_without_a_log_and_small_output():
    from fedi_run.engine.report.masking import Masker
    from fedi_run.engine.report.output_log import TaskOutput

    small = TaskOutput(None, Masker())
    small.write(b"hello\n")
    assert small.text() == "hello\n"
    big = TaskOutput(None, Masker(), limit=100)
    big.write(b"x\n" * 1000)
    assert big.text().startswith("[… 1.9 KiB more not kept]\n") and big.text().endswith("x\nx\n")
