"""``godel replay``: a recording played back through ``ReplayFeed``.

Pacing, pause, step and seek are driven on small synthetic recordings with a fake clock
(the feed's ``sleep`` advances it at once); a real session is recorded by the console
against a real daemon and replayed in the console, ending in the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import GodelError
from core.events import AgentCreated, AgentStatusChanged, Event, event_to_json, read_recording
from core.models import AgentStatus, StatusSource
from core.paths import GodelPaths
from core.views import Views, ViewSnapshot
from godel_tui.app import GodelApp
from godel_tui.feed import SNAPSHOT_TYPE, FeedSink, FeedState
from godel_tui.palette import entries
from godel_tui.panes.agent_log import AgentLogPane
from godel_tui.replay import RecordingIndex, ReplayFeed
from godel_tui.screens.help import help_sections, plain_text
from godel_tui.widgets.agent_table import AgentTable
from godel_tui.widgets.log_view import LogView
from tests.conftest import Godel, until
from tests.tui.conftest import app_for, until_shown
from tests.tui.test_console_live import spawn

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def created(seq: int, agent: str, t: float) -> AgentCreated:
    return AgentCreated(
        seq=seq, at=T0 + timedelta(seconds=t), agent_id=agent, runtime="shell", workspace="/w"
    )


def status(seq: int, agent: str, st: AgentStatus, t: float) -> AgentStatusChanged:
    return AgentStatusChanged(
        seq=seq,
        at=T0 + timedelta(seconds=t),
        agent_id=agent,
        status=st,
        source=StatusSource.USER,
    )


def snapshot_line(snap: ViewSnapshot, t: float) -> str:
    at = (T0 + timedelta(seconds=t)).isoformat()
    line = {
        "type": SNAPSHOT_TYPE,
        "seq": snap.seq,
        "at": at,
        "snapshot": snap.model_dump(mode="json"),
    }
    return json.dumps(line)


def write(path: Path, *lines: str | Event, tail: str = "") -> Path:
    text = "".join((x if isinstance(x, str) else event_to_json(x)) + "\n" for x in lines)
    path.write_text(text + tail)
    return path


def state_of(events: list[Event], base: ViewSnapshot | None = None) -> dict[str, AgentStatus]:
    views = Views(base)
    for e in events:
        views.apply(e)
    return {a.id: a.status for a in views.agents.values()}


class Sink:
    """What the app would be handed, folded the way the app folds it."""

    def __init__(self, clock: Callable[[], float] = lambda: 0.0) -> None:
        self.views = Views()
        self.snapshots: list[ViewSnapshot] = []
        self.events: list[Event] = []
        self.fed_at: list[float] = []  # the fake clock when each event was handed over
        self.states: list[FeedState] = []
        self._clock = clock

    def feed_snapshot(self, snapshot: ViewSnapshot, note: str) -> None:
        self.snapshots.append(snapshot)
        self.views = Views(snapshot)

    def feed_event(self, event: Event) -> None:
        self.events.append(event)
        self.fed_at.append(self._clock())
        self.views.apply(event)

    def feed_state(self, state: FeedState) -> None:
        self.states.append(state)

    def statuses(self) -> dict[str, AgentStatus]:
        return {a.id: a.status for a in self.views.agents.values()}

    @property
    def note(self) -> str:
        return self.states[-1].note if self.states else ""


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def clock(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def playing(feed: ReplayFeed) -> AsyncIterator[ReplayFeed]:
    task = asyncio.create_task(feed.run())
    try:
        await until(lambda: feed.index is not None, within=10)
        yield feed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# one synthetic session: a is created at 0 s, idle at 1 s; b created at 3 s; a stops at 4 s
EVENTS: list[Event] = [
    created(1, "a", 0),
    status(2, "a", AgentStatus.IDLE, 1),
    created(3, "b", 3),
    status(4, "a", AgentStatus.STOPPED, 4),
]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return write(tmp_path / "rec.jsonl", snapshot_line(ViewSnapshot(seq=0), 0), *EVENTS)


async def test_events_are_paced_by_their_times_divided_by_the_speed(recording: Path) -> None:
    fake = FakeTime()
    sink = Sink(fake.clock)
    feed = ReplayFeed(recording, sink, speed=2, sleep=fake.sleep, clock=fake.clock)
    async with playing(feed):
        await until(lambda: len(sink.events) == 4)
        assert sink.fed_at == pytest.approx([0.0, 0.5, 1.5, 2.0])
        await until(lambda: "the end" in sink.note)
        assert "(x2)" in sink.note
        assert sink.statuses() == state_of(EVENTS)


async def test_paused_it_plays_nothing_until_stepped_or_resumed(recording: Path) -> None:
    fake = FakeTime()
    sink = Sink(fake.clock)
    feed = ReplayFeed(recording, sink, paused=True, sleep=fake.sleep, clock=fake.clock)
    async with playing(feed):
        await until(lambda: "0/4 events" in sink.note and "paused" in sink.note)
        assert sink.events == []
        feed.control("step")
        await until(lambda: "1/4 events" in sink.note)
        assert [e.seq for e in sink.events] == [1]
        assert "paused" in sink.note and "12:00:00" in _utc_note(feed)
        feed.control("step")
        await until(lambda: "2/4 events" in sink.note)
        assert [e.seq for e in sink.events] == [1, 2]
        feed.control("pause")  # resume
        await until(lambda: "the end" in sink.note)
        assert [e.seq for e in sink.events] == [1, 2, 3, 4]
        assert feed.control("pause") is None  # pause at the end: fine
        assert feed.control("pause") is not None  # resume at the end: says where it is


def _utc_note(feed: ReplayFeed) -> str:
    """The replay clock as UTC text (the status line shows it in local time)."""
    return feed.now().strftime("%H:%M:%S")


async def test_seeking_back_reloads_a_snapshot_and_replays_up_to_the_point(
    recording: Path,
) -> None:
    sink = Sink()
    feed = ReplayFeed(recording, sink, speed=0)
    async with playing(feed):
        await until(lambda: "the end" in sink.note)
        assert sink.statuses() == state_of(EVENTS)
        feed.paused = True
        feed.seek_time(T0 + timedelta(seconds=1.5))
        await until(lambda: feed.pos == 2 and feed._seek is None)
        assert sink.statuses() == {"a": AgentStatus.IDLE}
        assert feed.now() == T0 + timedelta(seconds=1.5)
        feed.control("start")
        await until(lambda: feed.pos == 0 and feed._seek is None)
        assert sink.statuses() == {}
        feed.control("forward")  # 10 s on: past the end, so the end
        await until(lambda: feed.pos == 4 and feed._seek is None)
        assert sink.statuses() == state_of(EVENTS)
        feed.control("back")  # 10 s back from 4 s: the start
        await until(lambda: feed.pos == 0 and feed._seek is None)
        feed.control("end")
        await until(lambda: feed.pos == 4 and feed._seek is None)
        feed.control("step_back")
        await until(lambda: feed.pos == 3 and feed._seek is None)
        assert sink.statuses() == state_of(EVENTS[:3])


def test_checkpoints_give_the_same_state_as_playing_from_the_start(tmp_path: Path) -> None:
    events: list[Event] = [created(1, "a", 0), created(2, "b", 0)]
    cycle = [AgentStatus.IDLE, AgentStatus.BUSY]
    for i in range(40):
        events.append(status(3 + i, "ab"[i % 2], cycle[i % 2], 1 + i))
    path = write(tmp_path / "long.jsonl", snapshot_line(ViewSnapshot(seq=0), 0), *events)
    idx = RecordingIndex.build(path, every=7)
    assert len(idx) == len(events)
    assert len([c for c in idx.checkpoints if not c.recorded]) == len(events) // 7
    for pos in range(len(events) + 1):
        snap = idx.state_at(pos)
        assert state_of([], snap) == state_of(events[:pos]), pos
        assert snap.seq == (events[pos - 1].seq if pos else 0)


async def test_a_resync_in_the_recording_is_played_where_it_came(tmp_path: Path) -> None:
    # The live console resynced after event 2: its snapshot says b exists (the event
    # that created b was lost to it), and the events go on from there.
    views = Views()
    views.apply(EVENTS[0])
    views.apply(EVENTS[2])
    resync = views.snapshot()
    path = write(
        tmp_path / "resync.jsonl",
        snapshot_line(ViewSnapshot(seq=0), 0),
        EVENTS[0],
        EVENTS[1],
        snapshot_line(resync, 3.5),
        EVENTS[3],
    )
    idx = RecordingIndex.build(path)
    assert state_of([], idx.state_at(2)) == state_of([], resync)
    sink = Sink()
    feed = ReplayFeed(path, sink, speed=0)
    async with playing(feed):
        await until(lambda: "the end" in sink.note)
        assert len(sink.snapshots) == 2  # the first, and the resync
        assert sink.statuses() == {"a": AgentStatus.STOPPED, "b": AgentStatus.STARTING}


async def test_a_torn_last_line_and_a_malformed_one_are_skipped_and_said(
    tmp_path: Path,
) -> None:
    torn = event_to_json(status(5, "b", AgentStatus.IDLE, 5))[:30]
    path = write(
        tmp_path / "torn.jsonl",
        snapshot_line(ViewSnapshot(seq=0), 0),
        EVENTS[0],
        "{not json",
        *EVENTS[1:],
        tail=torn,
    )
    idx = RecordingIndex.build(path)
    assert len(idx) == 4
    assert idx.stats.torn_tail and idx.stats.malformed == [3]
    sink = Sink()
    feed = ReplayFeed(path, sink, speed=0)
    async with playing(feed):
        await until(lambda: "the end" in sink.note)
        assert sink.statuses() == state_of(EVENTS)
        assert any("torn last line" in s.note and s.connected for s in sink.states)
        assert "2 line(s) skipped" in sink.note


async def test_a_daemon_events_file_replays_from_empty_views(tmp_path: Path) -> None:
    path = write(tmp_path / "events.jsonl", *EVENTS)
    sink = Sink()
    feed = ReplayFeed(path, sink, speed=0)
    async with playing(feed):
        await until(lambda: "the end" in sink.note)
        assert sink.statuses() == state_of(EVENTS)
        assert "began from empty views" in sink.note
        assert any("no console.snapshot" in s.note for s in sink.states)
    assert list(read_recording(path)) == EVENTS  # the same format, read either way


async def test_a_replay_changes_nothing(recording: Path) -> None:
    feed = ReplayFeed(recording, Sink())
    with pytest.raises(GodelError, match="no daemon"):
        await feed.call("agent.kill", {"id": "a"})


# --- the console, live then replayed ---------------------------------------------------


async def test_a_recorded_session_replays_to_the_same_state(godel: Godel, tmp_path: Path) -> None:
    [first] = spawn(godel, 1)
    rec = tmp_path / "session.jsonl"
    app = app_for(godel, record=rec)
    async with app.run_test(size=(180, 40)) as pilot:
        model = app.model
        await until_shown(pilot, lambda: first in model.order(), "the agent")
        [second] = spawn(godel, 1)  # while recording: its events are in the file
        godel.run("agent", "exec", first, "echo recorded-output", check=True)
        godel.run("agent", "kill", second, check=True)

        def done() -> bool:
            a, b = model.agent(first), model.agent(second)
            return (
                a is not None
                and a.spend.execs == 1
                and a.status is AgentStatus.IDLE
                and b is not None
                and b.status is AgentStatus.STOPPED
            )

        await until_shown(pilot, done, "the exec done and the second agent stopped")
        live = {a.id: a.status for a in model.views.agents.values()}
        live_execs = model.agent(first).spend.execs  # type: ignore[union-attr]
    assert rec.stat().st_mode & 0o777 == 0o600
    assert json.loads(rec.read_text().splitlines()[0])["type"] == SNAPSHOT_TYPE

    paths = GodelPaths.resolve(godel.home)
    feeds: list[ReplayFeed] = []

    def replay(sink: FeedSink) -> ReplayFeed:
        feeds.append(ReplayFeed(rec, sink, speed=0, paused=True))
        return feeds[0]

    replayed = GodelApp(paths, feed=replay)
    assert replayed.read_only
    async with replayed.run_test(size=(180, 40)) as pilot:
        feed = feeds[0]
        await until_shown(pilot, lambda: first in replayed.model.order(), "the first agent")
        replayed.query_one(AgentTable).select(first)
        await until_shown(
            pilot, lambda: replayed.query_one(AgentLogPane).agent_id == first, "its log"
        )
        await pilot.press("p")  # play
        await until_shown(pilot, lambda: feed.at_end, "the end of the recording")
        model = replayed.model
        await until_shown(
            pilot,
            lambda: {a.id: a.status for a in model.views.agents.values()} == live,
            "the statuses the live console ended with",
        )
        assert model.agent(first).spend.execs == live_execs  # type: ignore[union-attr]
        log = replayed.query_one(LogView)
        await until_shown(
            pilot, lambda: any("recorded-output" in t for t, _ in log.lines), "the output"
        )
        status_text = str(replayed.query_one("#status").render())
        assert f"replay {rec.name} at " in status_text and "the end" in status_text
        await pilot.press("ctrl+k")  # read-only: refused, and said
        await until_shown(
            pilot, lambda: any("read-only" in n.message for n in replayed._notifications), "why"
        )
        assert model.agent(first).status is AgentStatus.IDLE  # type: ignore[union-attr]
        await pilot.press("p")  # pause (at the end), so that going back stays there
        await pilot.press("less_than_sign")  # back to the start: the first snapshot
        await until_shown(
            pilot, lambda: feed.pos == 0 and second not in model.views.agents, "the start"
        )
        assert "paused" in str(replayed.query_one("#status").render())


async def test_replay_keys_do_nothing_in_a_live_console(godel: Godel) -> None:
    app = app_for(godel)
    async with app.run_test(size=(180, 40)) as pilot:
        # Connected first: a console closed while it starts the daemon would leave that
        # daemon to start after the test's teardown stopped none.
        await until_shown(pilot, lambda: app._state.connected, "the live feed")
        assert app.check_action("feed_control", ("pause",)) is False
        await pilot.press("p")
        assert app.playback is None


def test_replay_refuses_a_bad_file_in_one_line(godel: Godel, tmp_path: Path) -> None:
    (tmp_path / "junk.txt").write_text("hello\n")
    for name, says in [("missing.jsonl", "no such file"), ("junk.txt", "not a recording")]:
        r = godel.run("replay", str(tmp_path / name))
        assert r.returncode == 2, r.stderr
        assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_replay_keys_are_in_help_and_palette_only_in_a_replay() -> None:
    def titles(replay: bool) -> list[str]:
        found = entries(marked=0, selected=None, read_only=True, keymap={}, replay=replay)
        return [e.title for e in found]

    assert not any("Pause" in t for t in titles(False))
    assert any("Pause" in t for t in titles(True))
    live = plain_text(help_sections("swarm", {}, read_only=False))
    replay = plain_text(help_sections("swarm", {}, read_only=True, replay=True))
    assert "Seek 10 seconds back" not in live
    assert "Seek 10 seconds back" in replay and "Keys: replay" in replay
