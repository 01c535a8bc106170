"""The live state of a run in its worker: the sink that feeds it (and masks), the snapshot's
cursor. (One run per deployment is the database's rule now: test_panel_views.py.)"""

from __future__ import annotations

from fedi_run.engine.report.events import (
    OutputChunk,
    RunFinished,
    RunStarted,
    Status,
    TaskFinished,
    TaskStarted,
)
from fedi_run.panel.live import LiveRun
from fedi_run.panel.sink import PanelSink

SECRET = "the initial password"


def feed(live: LiveRun) -> None:
    sink = PanelSink(live, [SECRET])
    sink.handle(
        RunStarted(7, "site", "run", ("a.one", "nixops4.apply"), ("web", "local"), False, 0.0)
    )
    sink.handle(TaskStarted(7, "a.one", "web", 1.0))
    sink.handle(
        TaskFinished(
            7,
            "a.one",
            "web",
            Status.CHANGED,
            0.5,
            message=f"said {SECRET}",
            changes=(f"wrote {SECRET}",),
        )
    )
    sink.handle(TaskStarted(7, "nixops4.apply", "local", 2.0))
    sink.handle(OutputChunk(7, "nixops4.apply", "local", "stdout", f"applying, {SECRET}\n"))
    sink.handle(TaskFinished(7, "nixops4.apply", "local", Status.CHANGED, 0.1))
    sink.handle(RunFinished(7, 0, 1.5, False, {"web": {"changed": 1}, "local": {"changed": 1}}))
    sink.close()


def test_the_sink_feeds_the_live_run_and_masks_what_it_is_given():
    live = LiveRun(1, 1, "run")
    feed(live)
    data = live.snapshot()
    assert data["engine_run_id"] == 7 and data["finished"] and data["exit_status"] == 0
    assert [(t["id"], t["status"]) for t in data["tasks"]] == [
        ("a.one", "changed"),
        ("nixops4.apply", "changed"),
    ]
    assert data["recap"] == {"web": {"changed": 1}, "local": {"changed": 1}}
    everything = repr(data) + live.log() + live.apply_output()
    assert SECRET not in everything and everything.count("********") >= 4
    assert live.apply_output() == "applying, ********\n"


def test_the_sink_masks_the_password_in_every_form_a_task_may_print():
    import base64
    import json
    import urllib.parse

    password = 'a "quoted" pass\\word/+&'
    sink = PanelSink(LiveRun(1, 1, "run"), [password])
    for form in (
        password,
        json.dumps(password)[1:-1],
        urllib.parse.quote(password, safe=""),
        base64.b64encode(password.encode()).decode(),
    ):
        masked = sink.mask(f"x {form} y")
        assert form not in masked and "********" in masked, form


def test_the_snapshot_gives_the_chunks_after_the_cursor():
    live = LiveRun(1, 1, "run")
    feed(live)
    whole = live.snapshot()
    assert [c["number"] for c in whole["chunks"]] == list(range(1, whole["next"] + 1))
    later = live.snapshot(after=whole["next"] - 2)
    assert [c["number"] for c in later["chunks"]] == [whole["next"] - 1, whole["next"]]
    assert live.snapshot(after=whole["next"])["chunks"] == []


def test_a_task_state_is_pending_until_it_starts():
    live = LiveRun(1, 1, "run")
    live.started(3, ("a", "b"), ("h1", "h2"))
    live.task_started("a", "h1")
    assert [t["status"] for t in live.snapshot()["tasks"]] == ["running", "pending"]
