"""Snapshot tests of the console (pytest-textual-snapshot): each scene of ``scenes.py``
(the recorded fixture replayed paused at a fixed point, then driven with keys) against
the SVG pinned in ``__snapshots__/test_snapshots/``.

A failure writes ``snapshot_report.html`` (the pinned picture beside the new one). A
change that is meant: ``pytest tests/tui/test_snapshots.py --snapshot-update``, look at
the new SVGs, and run ``make screenshots`` so the README shows the same console.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.tui.scenes import SCENES, SIZE, scene_app, utc

Compare = Callable[..., bool]


@pytest.fixture(autouse=True)
def _utc() -> Iterator[None]:
    with utc():
        yield


def shows(snap_compare: Compare, scene: str) -> bool:
    return snap_compare(scene_app(scene), terminal_size=SIZE, run_before=SCENES[scene])


def test_main_screen_all_four_panes(snap_compare: Compare) -> None:
    """Agents, the builder's log, router and spend at the end of the recording."""
    assert shows(snap_compare, "main")


def test_swarm_pane_filtered(snap_compare: Compare) -> None:
    """/ swarm:api,batch: only those swarms' agents; the border says the filter."""
    assert shows(snap_compare, "filter")


def test_marks(snap_compare: Compare) -> None:
    """Two agents marked with space (a * before each)."""
    assert shows(snap_compare, "marks")


def test_attention_jump(snap_compare: Compare) -> None:
    """! selects the agent killed by hand: failed, process_exit, ended rows shown."""
    assert shows(snap_compare, "attention")


def test_palette_open(snap_compare: Compare) -> None:
    """ctrl+p, "kill": the action and the :kill template, disabled (read-only)."""
    assert shows(snap_compare, "palette")


def test_help_screen(snap_compare: Compare) -> None:
    """? in the agents pane: its keys, the replay's, the console's."""
    assert shows(snap_compare, "help")


def test_command_line(snap_compare: Compare) -> None:
    """: with "scale api 6" typed, its usage under it."""
    assert shows(snap_compare, "command-line")


def test_agent_log_of_the_selected_agent(snap_compare: Compare) -> None:
    """The builder's exec: start and end lines, stdout, stderr; "compiled" searched."""
    assert shows(snap_compare, "agent-log")


def test_replay_status_line(snap_compare: Compare) -> None:
    """Half-way, paused, x2: the status line says where the replay is."""
    assert shows(snap_compare, "replay")


def test_runs_cue_on_the_attention_line(snap_compare: Compare) -> None:
    """The do-run recording at its end: a run going on, one failed, the key to see them."""
    assert shows(snap_compare, "runs-cue")


def test_runs_view(snap_compare: Compare) -> None:
    """D: the runs newest first; the running one's tasks (one running, one waiting) and
    lines."""
    assert shows(snap_compare, "runs")
