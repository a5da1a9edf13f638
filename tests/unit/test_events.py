"""Events, the bus (drops, filters, ending) and the JSONL recorder."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from core.errors import StoreError
from core.events import (
    EVENT_TYPES,
    AgentActivity,
    AgentCreated,
    AgentHealthChanged,
    AgentOutput,
    AgentSpawned,
    AgentStatusChanged,
    Anomaly,
    AuditAppended,
    BudgetChanged,
    BudgetThreshold,
    ConfigChanged,
    DaemonStarted,
    DaemonStopping,
    DoFinished,
    DoPlanned,
    DoStarted,
    DoStep,
    DoTaskPlan,
    Event,
    EventBus,
    EventRecorder,
    EventsDropped,
    ExecFinished,
    ExecStarted,
    ProviderPaused,
    ProviderResumed,
    QueuePressure,
    SubscriptionClosed,
    SwarmAutoscaled,
    SwarmChanged,
    TaskChanged,
    TaskFinished,
    TaskRouted,
    event_to_json,
    parse_event,
    read_recording,
    tail_recording,
)
from core.events.backlog import Backlog, last_run
from core.events.recording import ReadStats
from core.events.seq import SeqFile
from core.models import AgentStatus, Budget, ExecStatus, StatusSource, Swarm

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

# One sample per event type; the round-trip test demands full coverage.
SAMPLES: list[Event] = [
    SwarmAutoscaled(swarm="s", from_agents=1, to_agents=3, reason="6 ready tasks"),
    Anomaly(
        runtime="pi",
        window_s=60,
        failure_rate=0.6,
        baseline_rate=0.05,
        threshold=0.2,
        samples=20,
        failures=12,
        baseline_samples=300,
        clock=1000.0,
        message="pi: 60% of tasks failed in the last 60s (baseline 5%)",
    ),
    TaskRouted(task_id="task-1", agent_id="shell-1", swarm="s", strategy="balanced"),
    TaskFinished(task_id="task-1", status="succeeded", agent_id="shell-1", exec_id="exec-1"),
    SwarmChanged(
        swarm=Swarm(
            name="s",
            runtime="shell",
            model=None,
            skills=[],
            strategy="balanced",
            min_agents=0,
            max_agents=5,
            target_per_agent=1,
            desired=1,
            capacity=10,
            status="active",
            created_at=datetime.now(UTC),
        )
    ),
    AgentCreated(agent_id="shell-1", runtime="shell", workspace="/tmp/w", swarm="s"),
    TaskChanged(
        task_id="task-1",
        swarm="s",
        status="running",
        previous="ready",
        agent_id="shell-1",
        attempts=1,
    ),
    QueuePressure(scope="swarm 's'", fraction=0.91, capacity=100),
    AgentActivity(
        agent_id="pi-3f9a1c",
        exec_id="exec-1",
        kind="tool_call",
        data={"name": "bash", "arguments": {"command": "echo hello"}},
    ),
    AgentHealthChanged(
        agent_id="shell-abc123",
        breaker="open",
        failures=5,
        ejected=True,
        detail="5 consecutive failures; open for 30s",
        source="exec outcome",
    ),
    AgentSpawned(
        agent_id="shell-abc123", runtime="shell", name="w1", workspace="/tmp/w", pid=42, at=T0
    ),
    AgentStatusChanged(
        agent_id="shell-abc123",
        status=AgentStatus.BUSY,
        source=StatusSource.RUNTIME_EVENT,
        reason="exec started",
        previous=AgentStatus.IDLE,
        seq=7,
    ),
    AgentOutput(agent_id="a", exec_id="exec-1", stream="stderr", data='line\n"quoted"\t\u00e9'),
    ExecStarted(agent_id="a", exec_id="exec-1", input="echo hi", actor="cli"),
    ExecFinished(
        agent_id="a",
        exec_id="exec-1",
        status=ExecStatus.TIMED_OUT,
        exit_code=None,
        duration_s=1.5,
        reason="timeout after 1.5s",
    ),
    AuditAppended(seq_no=3, action="agent.kill", subject="a", actor="cli", result="ok"),
    BudgetChanged(
        budget=Budget(
            scope="swarm:web",
            unit="usd",
            limit=Decimal("10"),
            spent=Decimal("0.25"),
            period="daily",
            period_start=datetime(2026, 11, 27, tzinfo=UTC),
            reset_at=datetime(2026, 11, 28, tzinfo=UTC),
        )
    ),
    BudgetThreshold(
        scope="project",
        unit="tokens",
        level="hold",
        threshold=0.9,
        fraction=0.93,
        message="budget project: 930,000 tokens of 1,000,000 tokens spent (93%)",
    ),
    ProviderPaused(
        provider="anthropic",
        until=datetime(2026, 11, 27, 12, 5, tzinfo=UTC),
        retry_after_s=300.0,
        message="HTTP 429: usage limit reached",
    ),
    ProviderResumed(provider="anthropic"),
    DoStarted(
        run="do-1",
        intent="add a",
        repo="/r",
        base="main",
        strategy="careful",
        runtime="shell",
        agents=2,
        gate="make test",
    ),
    DoPlanned(
        run="do-1",
        source="file",
        tasks=[DoTaskPlan(name="a", level=0, input="echo a > a", runtime="shell", files=["a"])],
    ),
    DoStep(run="do-1", step="gate", line="a: gate passed", task="a", state="ready"),
    DoFinished(run="do-1", outcome="merged", exit_code=0, elapsed_s=1.5, report={"run": "do-1"}),
    DaemonStarted(pid=1234, version="0.1.0"),
    DaemonStopping(reason="SIGTERM"),
    ConfigChanged(digest="sha256:abc", sources=["/etc/godel.toml", "env"]),
    EventsDropped(count=5, subscriber="tui"),
]


def output(i: int) -> AgentOutput:
    return AgentOutput(agent_id="a", exec_id="e", stream="stdout", data=str(i))


# ----------------------------------------------------------------------------- models


def test_samples_cover_every_event_type() -> None:
    assert {e.type for e in SAMPLES} == EVENT_TYPES


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_round_trip_through_json(event: Event) -> None:
    text = event_to_json(event)
    assert "\n" not in text
    back = parse_event(text)
    assert type(back) is type(event)
    assert back == event
    assert parse_event(json.loads(text)) == event
    assert parse_event(text.encode()) == event


def test_parse_event_rejects_unknown_type_and_bad_fields() -> None:
    with pytest.raises(ValueError):
        parse_event('{"type": "no.such.event"}')
    with pytest.raises(ValueError):
        parse_event({"type": "daemon.started", "pid": "not-a-pid", "version": "1"})
    with pytest.raises(ValueError):
        parse_event("{not json")


def test_event_time_is_utc() -> None:
    assert DaemonStopping().at.tzinfo is not None
    plus2 = timezone(timedelta(hours=2))
    ev = DaemonStopping(at=datetime(2025, 1, 1, 12, 0, tzinfo=plus2))
    assert ev.at.utcoffset() == timedelta(0)
    assert ev.at.hour == 10
    with pytest.raises(ValueError):
        DaemonStopping(at=datetime(2025, 1, 1, 12, 0))


# -------------------------------------------------------------------------------- bus


async def test_seq_is_monotonic_and_a_published_event_keeps_its_seq() -> None:
    bus = EventBus()
    sub = bus.subscribe("t")
    originals = [output(i) for i in range(5)]
    for ev in originals:
        bus.publish(ev)
    got = [await sub.get() for _ in range(5)]
    assert [e.seq for e in got] == [1, 2, 3, 4, 5]
    assert [e.data for e in got if isinstance(e, AgentOutput)] == ["0", "1", "2", "3", "4"]
    assert bus.seq == 5
    # Publishing an event again (or one read from a recording) copies it: the first
    # subscriber's event keeps the seq it was delivered with.
    bus.publish(originals[0])
    again = await sub.get()
    assert again.seq == 6 and got[0].seq == 1 and again is not got[0]


async def test_seq_is_per_bus_and_counts_events_nobody_receives() -> None:
    bus, other = EventBus(), EventBus()
    bus.publish(DaemonStopping())  # no subscribers yet
    sub = bus.subscribe("t")
    bus.publish(DaemonStopping())
    other.publish(DaemonStopping())
    assert (await sub.get()).seq == 2
    assert other.seq == 1


async def test_slow_subscriber_gets_drop_marker_and_never_stalls_others() -> None:
    bus = EventBus()
    slow = bus.subscribe("slow")  # default maxsize 1000, never read while publishing
    fast = bus.subscribe("fast")
    received: list[Event] = []

    async def read_all() -> None:
        async for ev in fast:
            received.append(ev)

    reader = asyncio.create_task(read_all())
    n = 10_000
    for i in range(n):
        bus.publish(output(i))
        await asyncio.sleep(0)  # let the reader run; the slow one still never reads
    bus.close()
    async with asyncio.timeout(5):
        await reader

    assert len(received) == n
    assert [e.seq for e in received] == list(range(1, n + 1))
    assert not any(isinstance(e, EventsDropped) for e in received)
    assert fast.dropped_total == 0

    slow_got: list[Event] = [ev async for ev in slow]
    assert len(slow_got) == 1000 + 1
    assert [e.seq for e in slow_got[:1000]] == list(range(1, 1001))
    marker = slow_got[1000]
    assert isinstance(marker, EventsDropped)
    assert marker.count == n - 1000
    assert marker.subscriber == "slow"
    assert slow.dropped_total == n - 1000


async def test_after_drop_marker_newer_events_continue_and_counter_resets() -> None:
    bus = EventBus()
    sub = bus.subscribe("s", maxsize=3)
    for i in range(10):
        bus.publish(output(i))  # seq 1..3 queued, 4..10 dropped
    assert [sub.get_nowait().seq for _ in range(3)] == [1, 2, 3]
    marker = sub.get_nowait()
    assert isinstance(marker, EventsDropped) and marker.count == 7
    with pytest.raises(asyncio.QueueEmpty):
        sub.get_nowait()
    bus.publish(output(10))
    assert (await sub.get()).seq == 11  # no second marker: the counter was reset


async def test_drop_marker_sits_exactly_at_the_gap() -> None:
    bus = EventBus()
    sub = bus.subscribe("s", maxsize=2)
    for i in range(4):
        bus.publish(output(i))  # 1, 2 queued; 3, 4 dropped
    assert (await sub.get()).seq == 1
    bus.publish(output(4))  # seq 5 fits now, after the gap
    got = [await sub.get() for _ in range(3)]
    assert got[0].seq == 2
    assert isinstance(got[1], EventsDropped) and got[1].count == 2
    assert got[2].seq == 5


async def test_drops_are_reported_before_the_end() -> None:
    bus = EventBus()
    sub = bus.subscribe("s", maxsize=2)
    for i in range(5):
        bus.publish(output(i))
    assert (await sub.get()).seq == 1  # frees a slot, so the end sentinel is queued
    bus.close()
    rest = [ev async for ev in sub]
    assert rest[0].seq == 2
    assert isinstance(rest[1], EventsDropped) and rest[1].count == 3
    assert len(rest) == 2


async def test_type_filter_applies_before_enqueue() -> None:
    bus = EventBus()
    sub = bus.subscribe("execs", maxsize=2, types={"exec.started", "exec.finished"})
    for i in range(50):
        bus.publish(output(i))  # filtered out: must not fill the queue or count as drops
    bus.publish(ExecStarted(agent_id="a", exec_id="e", input="x", actor="cli"))
    bus.publish(DaemonStopping())
    bus.publish(ExecFinished(agent_id="a", exec_id="e", status=ExecStatus.SUCCEEDED, exit_code=0))
    bus.close()
    got = [ev async for ev in sub]
    assert [e.type for e in got] == ["exec.started", "exec.finished"]
    assert [e.seq for e in got] == [51, 53]
    assert sub.dropped_total == 0


def test_unknown_filter_type_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"exec\.strated"):
        EventBus().subscribe("x", types={"exec.strated"})


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventBus().subscribe("x", maxsize=0)


async def test_bus_close_delivers_queued_then_ends_iteration() -> None:
    bus = EventBus()
    sub = bus.subscribe("s")
    for i in range(3):
        bus.publish(output(i))
    bus.close()
    bus.publish(output(99))  # after close: a harmless no-op
    assert [e.seq for e in [ev async for ev in sub]] == [1, 2, 3]
    with pytest.raises(SubscriptionClosed):
        await sub.get()
    assert bus.subscriber_count == 0
    late = bus.subscribe("late")
    assert [ev async for ev in late] == []


async def test_bus_close_wakes_a_waiting_iterator() -> None:
    bus = EventBus()
    sub = bus.subscribe("s")

    async def consume() -> list[Event]:
        return [ev async for ev in sub]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)  # the consumer is now blocked on an empty queue
    bus.publish(DaemonStopping(reason="bye"))
    bus.close()
    async with asyncio.timeout(5):
        got = await task
    assert [e.type for e in got] == ["daemon.stopping"]


async def test_subscription_close_stops_at_once_and_unsubscribes() -> None:
    bus = EventBus()
    sub = bus.subscribe("s")
    other = bus.subscribe("other")

    async def consume() -> int:
        return len([ev async for ev in sub])

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    sub.close()
    async with asyncio.timeout(5):
        assert await task == 0
    assert bus.subscriber_count == 1
    bus.publish(DaemonStopping())
    assert sub.qsize() == 0
    assert (await other.get()).seq == 1

    queued = bus.subscribe("queued")
    bus.publish(DaemonStopping())
    queued.close()  # unlike end(), close() discards what is queued
    assert [ev async for ev in queued] == []


async def test_async_with_closes_subscription() -> None:
    bus = EventBus()
    async with bus.subscribe("s") as sub:
        bus.publish(DaemonStopping())
        assert (await sub.get()).seq == 1
    assert sub.ended
    assert bus.subscriber_count == 0
    with pytest.raises(SubscriptionClosed):
        await sub.get()


# --------------------------------------------------------------------------- recorder


async def test_recorder_writes_lines_that_read_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "events.jsonl"
    bus = EventBus()
    mirror = bus.subscribe("mirror", maxsize=10_000)
    recorder = EventRecorder(bus, path, batch_size=64)
    recorder.start()
    n = 1000
    for i in range(n):
        bus.publish(SAMPLES[i % len(SAMPLES)])
        if i % 100 == 0:
            await asyncio.sleep(0)  # let some batches go out while publishing
    await recorder.stop()

    expected: list[Event] = []
    while mirror.qsize():
        expected.append(mirror.get_nowait())
    assert len(expected) == n
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == n
    assert list(read_recording(path)) == expected
    assert recorder.written == n
    assert not recorder.running


async def test_recorder_stop_drains_the_queue(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    bus = EventBus()
    recorder = EventRecorder(bus, path)
    recorder.start()
    for i in range(500):
        bus.publish(output(i))  # no await: the recorder has not run at all yet
    await recorder.stop()
    got = list(read_recording(path))
    assert [e.seq for e in got] == list(range(1, 501))
    bus.publish(output(500))  # after stop: no longer subscribed, nothing more written
    assert bus.subscriber_count == 0
    assert len(list(read_recording(path))) == 500


async def test_recorder_appends_and_records_drop_markers(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    bus = EventBus()
    async with EventRecorder(bus, path, maxsize=5):
        for i in range(8):
            bus.publish(output(i))  # 3 dropped: the recording shows the gap
    async with EventRecorder(bus, path):
        bus.publish(DaemonStopping(reason="second session"))
    got = list(read_recording(path))
    assert [e.type for e in got] == ["agent.output"] * 5 + ["events.dropped", "daemon.stopping"]
    marker = got[5]
    assert isinstance(marker, EventsDropped) and marker.count == 3
    assert marker.subscriber == "recorder"


async def test_recorder_ends_when_bus_closes(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    bus = EventBus()
    recorder = EventRecorder(bus, path)
    recorder.start()
    bus.publish(DaemonStopping())
    bus.close()
    await recorder.stop()
    assert len(list(read_recording(path))) == 1


async def test_recorder_rotates_by_size_and_keeps_n_private_files(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    line = len(event_to_json(output(99))) + 1  # the longest line here
    max_bytes = 10 * line
    bus = EventBus()
    # batch_size=1: a rotation can happen after any event, the finest grain.
    async with EventRecorder(bus, path, batch_size=1, max_bytes=max_bytes, keep=2):
        for i in range(95):
            bus.publish(output(i))
    olds = [tmp_path / "events.jsonl.1", tmp_path / "events.jsonl.2"]
    assert not (tmp_path / "events.jsonl.3").exists()  # the oldest were deleted
    for f in [path, *olds]:
        assert f.stat().st_mode & 0o777 == 0o600
        assert f.stat().st_size <= max_bytes + line
    kept = [e.seq for f in [*reversed(olds), path] for e in read_recording(f)]
    assert kept == list(range(kept[0], 96))  # contiguous, up to the newest
    assert kept[0] > 1
    # The reader of the current file (the daemon's backlog preload) still works.
    assert [e.seq for e in tail_recording(path, 3)] == [93, 94, 95]
    async with EventRecorder(bus, path, max_bytes=max_bytes, keep=2):
        bus.publish(DaemonStopping(reason="next run"))
    assert list(read_recording(path))[-1].type == "daemon.stopping"


def test_read_recording_skips_and_counts_a_torn_last_line(tmp_path: Path) -> None:
    """A SIGKILLed writer leaves half a line at the end: the rest reads, and it says so."""
    path = tmp_path / "torn.jsonl"
    good = event_to_json(SAMPLES[0])
    path.write_text(f"{good}\n{good}\n{good[: len(good) // 2]}", encoding="utf-8")
    stats = ReadStats()
    assert list(read_recording(path, stats)) == [SAMPLES[0], SAMPLES[0]]
    assert stats.torn_tail and stats.events == 2 and stats.skipped == 1
    assert "torn last line" in stats.describe()


def test_read_recording_skips_and_counts_unknown_types_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = event_to_json(SAMPLES[0])
    path.write_text(
        f'{good}\n{{"type": "from.the.future", "seq": 1}}\n{{truncated\n\n{good}\n'
        '{"type": "from.the.future", "seq": 2}\n',
        encoding="utf-8",
    )
    stats = ReadStats()
    assert list(read_recording(path, stats)) == [SAMPLES[0], SAMPLES[0]]
    assert stats.unknown == 2 and stats.unknown_types == {"from.the.future": 2}
    assert stats.malformed == [3, 4] and not stats.torn_tail
    assert stats.describe() == (
        "skipped 2 event(s) of unknown type (from.the.future); 2 malformed line(s) (first: line 3)"
    )


def test_a_known_type_with_new_fields_still_reads(tmp_path: Path) -> None:
    """Forward compatibility: a newer Godel may add fields to an event."""
    path = tmp_path / "newer.jsonl"
    data = json.loads(event_to_json(SAMPLES[0]))
    data["added_later"] = {"x": 1}
    path.write_text(json.dumps(data) + "\n", encoding="utf-8")
    assert list(read_recording(path)) == [SAMPLES[0]]


def test_tail_recording_reads_the_end_of_a_big_file(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    bus_events = [output(i).model_copy(update={"seq": i + 1}) for i in range(5000)]
    path.write_text("".join(event_to_json(e) + "\n" for e in bus_events) + '{"ty', "utf-8")
    stats = ReadStats()
    tail = tail_recording(path, 10, stats)
    assert [e.seq for e in tail] == list(range(4991, 5001))
    assert stats.torn_tail
    assert tail_recording(tmp_path / "missing.jsonl", 10) == []


def test_seq_numbers_continue_across_runs_and_never_repeat_after_a_crash(
    tmp_path: Path,
) -> None:
    seq = SeqFile(tmp_path / "events.seq", block=100)
    bus = EventBus(seq_file=seq)
    for _ in range(5):
        bus.publish(DaemonStopping())
    bus.close()  # a clean stop records the exact last seq: the next run has no gap
    assert seq.load() == 5
    bus = EventBus(seq_file=seq)
    for _ in range(150):
        bus.publish(DaemonStopping())
    assert bus.seq == 155
    # A crash (no close): the file still covers every seq handed out.
    assert seq.load() >= 155
    crashed = EventBus(seq_file=seq)
    crashed.publish(DaemonStopping())
    assert crashed.seq > 155


def test_a_hand_edited_seq_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "events.seq").write_text("garbage\n")
    with pytest.raises(StoreError, match="does not hold an event sequence number"):
        EventBus(seq_file=SeqFile(tmp_path / "events.seq"))


def test_backlog_resumes_after_a_cursor_and_counts_what_it_no_longer_keeps() -> None:
    bus = EventBus()
    backlog = Backlog(bus, size=10)
    for i in range(25):
        bus.publish(output(i))
    missed, kept = backlog.since(20)
    assert missed == 0 and [e.seq for e in kept] == [21, 22, 23, 24, 25]
    missed, kept = backlog.since(3)
    assert missed == 12 and [e.seq for e in kept] == list(range(16, 26))
    assert backlog.since(25) == (0, [])
    backlog.close()
    bus.publish(output(99))
    assert len(backlog) == 10


def test_a_recording_from_before_durable_seqs_is_never_replayed_as_new() -> None:
    """Old runs restarted at seq 1: only the last run's increasing tail is kept, and the
    bus numbers on after it."""
    old_run = [output(i).model_copy(update={"seq": i + 1}) for i in range(300)]
    last = [output(i).model_copy(update={"seq": i + 1}) for i in range(40)]
    kept = last_run([*old_run, *last])
    assert [e.seq for e in kept] == list(range(1, 41))
    bus = EventBus()
    bus.advance_to(kept[-1].seq)
    backlog = Backlog(bus, preload=kept)
    bus.publish(output(0))
    assert bus.seq == 41
    missed, after = backlog.since(1)
    assert missed == 0 and [e.seq for e in after] == list(range(2, 42))


def test_the_backlog_is_bounded_in_bytes_too() -> None:
    bus = EventBus()
    backlog = Backlog(bus, size=10_000, max_bytes=200_000)
    for _ in range(50):
        bus.publish(AgentOutput(agent_id="a", exec_id="e", stream="stdout", data="x" * 65536))
    assert backlog.bytes <= 200_000 and len(backlog) == 3
    missed, kept = backlog.since(0)
    assert missed == 47 and [e.seq for e in kept] == [48, 49, 50]


def test_a_failed_seq_reservation_never_stops_publishing(tmp_path: Path) -> None:
    seq = SeqFile(tmp_path / "gone" / "events.seq", block=10)  # its directory is missing
    bus = EventBus(seq_file=seq)
    sub = bus.subscribe("t")
    for _ in range(3):
        bus.publish(DaemonStopping())  # each tries to reserve again; none raises
    assert bus.seq == 3 and sub.qsize() == 3
    (tmp_path / "gone").mkdir()
    bus.publish(DaemonStopping())
    assert seq.load() >= 4  # reserved once it could be


async def test_the_recorder_ends_a_torn_last_line_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = event_to_json(SAMPLES[0])
    path.write_text(f"{good}\n{good[:30]}", encoding="utf-8")  # a writer killed mid-line
    bus = EventBus()
    async with EventRecorder(bus, path):
        bus.publish(DaemonStopping(reason="next run"))
    stats = ReadStats()
    events = list(read_recording(path, stats))
    assert [e.type for e in events] == [SAMPLES[0].type, "daemon.stopping"]
    assert stats.malformed == [2] and not stats.torn_tail


async def test_a_subscriber_holds_a_bounded_amount_of_output() -> None:
    bus = EventBus()
    sub = bus.subscribe("slow", maxsize=1000, max_bytes=200_000)
    chunk = "x" * 65536
    for _ in range(10):
        bus.publish(AgentOutput(agent_id="a", exec_id="e", stream="stdout", data=chunk))
    bus.publish(DaemonStopping())  # small events still fit
    assert sub.qsize() == 4  # three chunks (196,608 bytes) and the small event
    got = [sub.get_nowait() for _ in range(4)]
    assert [e.type for e in got] == ["agent.output"] * 3 + ["events.dropped"]
    assert isinstance(got[-1], EventsDropped) and got[-1].count == 7
    assert sub.get_nowait().type == "daemon.stopping"
    # Read, it has room again; one chunk larger than the bound still gets through.
    bus.publish(AgentOutput(agent_id="a", exec_id="e", stream="stdout", data="y" * 300_000))
    assert sub.get_nowait().type == "agent.output"


async def test_the_recorder_writes_output_in_batches_of_bounded_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.events import recording

    writes: list[int] = []
    write = EventRecorder._write

    def counted(self: EventRecorder, data: bytes) -> None:
        writes.append(len(data))
        write(self, data)

    monkeypatch.setattr(EventRecorder, "_write", counted)
    path = tmp_path / "events.jsonl"
    bus = EventBus()
    async with EventRecorder(bus, path):
        for _ in range(64):  # published at once: all queued before the first write
            bus.publish(AgentOutput(agent_id="a", exec_id="e", stream="stdout", data="x" * 65536))
    assert len(list(read_recording(path))) == 64
    assert len(writes) > 1
    line = len(event_to_json(output(0))) + 65536 + 100  # one event's line, at most
    assert max(writes) <= recording.BATCH_BYTES + line
