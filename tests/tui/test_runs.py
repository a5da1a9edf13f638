"""The runs view's pure parts (row text, the cue, what the model counts) and a replay of
a recording holding ``do.*`` events, shown in the runs view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.text import Text

from core.events import DoFinished, DoPlanned, DoStarted, DoStep, Event
from core.events.types import DoTaskPlan
from core.paths import GodelPaths
from core.views import ViewSnapshot
from core.views.rows import DoRunRow, DoTaskRow
from godel_tui.app import GodelApp
from godel_tui.commands import Runs, parse
from godel_tui.feed import FeedSink
from godel_tui.model import ConsoleModel
from godel_tui.render import run_cells, runs_cue, runs_newest_first, task_cells
from godel_tui.replay import ReplayFeed
from godel_tui.screens.help import help_sections, plain_text
from godel_tui.screens.runs import RunsScreen, RunTable
from godel_tui.widgets.log_view import LogView
from tests.tui.conftest import until_shown
from tests.tui.test_replay import snapshot_line, write

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def run_row(**kw: object) -> DoRunRow:
    fields: dict[str, object] = {
        "run": "do-1",
        "intent": "add a file",
        "strategy": "careful",
        "runtime": "shell",
        "started_at": T0,
    }
    return DoRunRow.model_validate(fields | kw)


def task(name: str, state: str, **kw: object) -> DoTaskRow:
    return DoTaskRow.model_validate(
        {"name": name, "level": 0, "runtime": "shell"} | kw | {"state": state}
    )


# --- rows ------------------------------------------------------------------------------


def test_a_running_run_row_says_its_progress_and_age() -> None:
    run = run_row(state="running", tasks=[task("a", "merged"), task("b", "running")])
    assert run_cells(run, at(75)) == [
        ("● running", "bold green"),
        ("do-1", "bold"),
        ("add a file", ""),
        ("careful", ""),
        ("1/2", ""),
        ("1m", "dim"),
        ("-", "dim"),
    ]


def test_a_finished_run_row_says_its_elapsed_time_and_exit_code() -> None:
    merged = run_row(
        state="merged", tasks=[task("a", "merged")], exit_code=0, elapsed_s=0.25, finished_at=at(1)
    )
    assert [c[0] for c in run_cells(merged, at(500))] == [
        "✓ merged",
        "do-1",
        "add a file",
        "careful",
        "1/1",
        "0.2s",
        "0",
    ]
    failed = run_row(
        state="failed", tasks=[task("a", "failed")], exit_code=1, elapsed_s=125, finished_at=at(125)
    )
    cells = run_cells(failed, at(500))
    assert cells[0] == ("✕ failed", "red") and cells[5] == ("2m", "") and cells[6] == ("1", "red")
    planning = run_row()
    assert run_cells(planning, T0)[4] == ("-", "dim")  # no plan yet


def test_a_task_row_says_its_state_agent_age_and_last_line() -> None:
    t = task("b", "gating", level=1, agent_id="shell-1", line="b: committed abc", at=at(3))
    assert task_cells(t, at(10)) == [
        ("1", "dim"),
        ("b", "bold"),
        ("shell", ""),
        ("◐ gating", "yellow"),
        ("shell-1", ""),
        ("7s", "dim"),
        ("b: committed abc", ""),
    ]
    waiting = task_cells(task("c", "waiting"), at(10))
    assert waiting[3] == ("· waiting", "dim") and waiting[4:] == [("-", "dim")] * 3


def test_runs_are_listed_newest_first() -> None:
    old, new = run_row(run="do-old"), run_row(run="do-new", started_at=at(5))
    assert [r.run for r in runs_newest_first([old, new])] == ["do-new", "do-old"]


def test_the_cue_names_active_runs_and_a_recent_failure_with_the_key() -> None:
    active = run_row(
        run="do-2",
        state="running",
        started_at=at(10),
        tasks=[task("a", "merged"), task("b", "waiting")],
    )
    failed = run_row(run="do-1", state="failed", exit_code=1, elapsed_s=1, finished_at=at(2))
    merged = run_row(run="do-0", state="merged", exit_code=0, elapsed_s=1, finished_at=at(1))
    assert runs_cue([merged, failed, active], at(60), HOUR, "D") == (
        "do run do-2: 1/2 merged  ·  do run do-1 failed (exit 1)  (D shows runs)"
    )
    assert runs_cue([merged], at(60), HOUR) == ""  # nothing to do: no cue
    assert runs_cue([failed], at(2) + 2 * HOUR, HOUR) == ""  # an old failure is history
    assert (
        runs_cue([run_row(run="do-3")], T0, HOUR, "f2") == "do run do-3: planning  (f2 shows runs)"
    )


def test_the_model_counts_each_runs_changes_and_steps() -> None:
    model = ConsoleModel()
    model.apply_all(do_events("do-1"))
    assert model.run_versions["do-1"] == len(do_events("do-1"))
    assert model.run_steps["do-1"] == 3
    model.load(ViewSnapshot(seq=99, runs=[model.views.runs["do-1"]]))
    assert model.loads == 1 and model.run_steps == {"do-1": 3}


def test_runs_is_a_command_and_in_the_help() -> None:
    assert parse(":runs") == Runs()
    text = plain_text(help_sections("runs", {}, read_only=False))
    assert "Keys: runs view" in text and "esc" in text and ":runs" in text


# --- a replay --------------------------------------------------------------------------


def do_events(run: str, seq: int = 1) -> list[Event]:
    plan = [
        DoTaskPlan(name="a", level=0, input="echo a", runtime="shell"),
        DoTaskPlan(name="b", level=1, input="echo b", runtime="shell", depends_on=["a"]),
    ]
    events: list[Event] = [
        DoStarted(
            seq=seq,
            at=at(0),
            run=run,
            intent="two files",
            repo="/r",
            base="main",
            strategy="careful",
            runtime="shell",
            agents=1,
            gate="true",
        ),
        DoPlanned(seq=seq + 1, at=at(0.1), run=run, source="file", tasks=plan),
        DoStep(
            seq=seq + 2,
            at=at(0.2),
            run=run,
            step="agent",
            line="a: agent shell-1 started",
            task="a",
            state="running",
            agent_id="shell-1",
        ),
        DoStep(
            seq=seq + 3,
            at=at(0.5),
            run=run,
            step="merge",
            line="a: merged at c0ffee",
            task="a",
            state="merged",
        ),
        DoStep(
            seq=seq + 4,
            at=at(0.9),
            run=run,
            step="merge",
            line="b: merged at c0ffe2",
            task="b",
            state="merged",
        ),
        DoFinished(seq=seq + 5, at=at(1), run=run, outcome="merged", exit_code=0, elapsed_s=1.0),
    ]
    return events


async def test_a_recording_with_do_events_shows_the_run_in_the_runs_view(tmp_path: Path) -> None:
    rec = write(tmp_path / "do.jsonl", snapshot_line(ViewSnapshot(seq=0), 0), *do_events("do-7"))

    def feed(sink: FeedSink) -> ReplayFeed:
        return ReplayFeed(rec, sink, speed=0)  # as fast as it can

    app = GodelApp(GodelPaths.resolve(tmp_path / "home"), feed=feed)
    async with app.run_test(size=(200, 40)) as pilot:
        await pilot.press("D")
        await until_shown(pilot, lambda: isinstance(app.screen, RunsScreen), "the runs view")
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        runs = screen.query_one(RunTable)

        def row() -> list[str]:
            if runs.row_count != 1:
                return []
            return [c.plain if isinstance(c, Text) else str(c) for c in runs.get_row_at(0)]

        await until_shown(pilot, lambda: row()[:1] == ["✓ merged"], "the run merged")
        assert row()[1:5] == ["do-7", "two files", "careful", "2/2"]
        log = screen.query_one(LogView)
        await until_shown(pilot, lambda: len(log.lines) == 3, "its three lines")
        assert [t for t, _ in log.lines][-1] == "b: merged at c0ffe2"
