"""One registry of the console's actions: key bindings, the footer, the help screen and
the command palette are all derived from it (as harlequin does), so an action that is
not registered can be neither bound nor shown.

A user keymap (``[tui] keymap`` in config: action id -> keys) rebinds by id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    id: str  # stable id, what a keymap names: "agent.kill"
    keys: str  # default keys, comma-separated Textual key names
    action: str  # the Textual action it runs (on the app; on the pane if ``local``)
    description: str  # footer and palette text
    help: str  # one sentence for `?`
    pane: str = "app"  # where it applies: app, swarm, log, router, budget, replay, runs
    changes_state: bool = False  # refused with --read-only
    footer: bool = True
    # Bound on the pane's widget instead of the app, with ``action`` run on that widget:
    # focus decides, so one key can mean one thing per pane (``/`` filters the agents
    # and searches the log).
    local: bool = False


ACTIONS: tuple[Action, ...] = (
    Action(
        "app.quit", "q", "quit", "Quit", "Leave the console (agents keep running).", footer=False
    ),
    Action("app.help", "question_mark", "help", "Help", "Show the keys of the focused pane."),
    Action(
        "app.palette", "ctrl+p", "command_palette", "Palette", "Search every action and command."
    ),
    Action(
        "app.command", "colon", "command_line", "Command", "Type a command: spawn, kill, exec..."
    ),
    Action(
        "swarm.filter",
        "slash",
        "filter",
        "Filter",
        "Filter agents: status:busy runtime:pi !idle",
        pane="swarm",
    ),
    Action(
        "swarm.mark",
        "space",
        "mark",
        "Mark",
        "Mark or unmark the agent for a bulk action.",
        pane="swarm",
    ),
    Action(
        "swarm.clear_marks",
        "ctrl+backslash",
        "clear_marks",
        "Clear marks",
        "Unmark every agent.",
        pane="swarm",
        footer=False,
    ),
    Action(
        "swarm.sort",
        "s",
        "sort_next",
        "Sort",
        "Sort by the next column (S: reverse).",
        pane="swarm",
    ),
    Action(
        "swarm.sort_reverse",
        "S",
        "sort_reverse",
        "Reverse",
        "Reverse the sort order.",
        pane="swarm",
        footer=False,
    ),
    Action(
        "swarm.ended",
        "e",
        "toggle_ended",
        "Ended",
        "Show or hide ended agents.",
        pane="swarm",
        footer=False,
    ),
    Action(
        "swarm.attention",
        "exclamation_mark",
        "next_attention",
        "Attention",
        "Jump to the next agent that needs you.",
        pane="swarm",
    ),
    Action(
        "agent.kill",
        "ctrl+k",
        "kill",
        "Kill",
        "Kill the marked agents (or the selected one).",
        pane="swarm",
        changes_state=True,
    ),
    Action(
        "agent.restart",
        "R",
        "restart",
        "Restart",
        "Restart the marked agents (or the selected one): same spec and swarm, a new id.",
        pane="swarm",
        changes_state=True,
        footer=False,
    ),
    Action(
        "agent.exec",
        "x",
        "exec_prompt",
        "Exec",
        "Run a command or prompt on the selected agent.",
        pane="swarm",
        changes_state=True,
    ),
    Action(
        "agent.steer",
        "t",
        "steer_prompt",
        "Steer",
        "Send a message to the selected agent's running exec.",
        pane="swarm",
        changes_state=True,
    ),
    Action(
        "agent.abort",
        "a",
        "abort",
        "Abort",
        "Abort the selected agent's running exec.",
        pane="swarm",
        changes_state=True,
        footer=False,
    ),
    Action(
        "log.follow", "f", "toggle_follow", "Follow", "Follow new output, or pause.", pane="log"
    ),
    Action(
        "log.search",
        "slash",
        "search",
        "Search",
        "Search the log; matches are highlighted (n: next, N: previous).",
        pane="log",
        local=True,
    ),
    Action(
        "log.next",
        "n",
        "search_next",
        "Next",
        "Jump to the next match.",
        pane="log",
        local=True,
        footer=False,
    ),
    Action(
        "log.previous",
        "N",
        "search_previous",
        "Previous",
        "Jump to the previous match.",
        pane="log",
        local=True,
        footer=False,
    ),
    Action(
        "log.prompt",
        "x",
        "prompt",
        "Prompt",
        "Run a prompt (or a command) on this log's agent.",
        pane="log",
        changes_state=True,
        local=True,
    ),
    Action(
        "log.steer",
        "t",
        "steer",
        "Steer",
        "Send a message to this log's agent while it runs.",
        pane="log",
        changes_state=True,
        local=True,
    ),
    Action(
        "log.abort",
        "a",
        "abort",
        "Abort",
        "Abort this log's agent's running exec.",
        pane="log",
        changes_state=True,
        local=True,
    ),
    # `godel replay` only (GodelApp.check_action hides them in a live console).
    Action(
        "replay.pause",
        "p",
        "feed_control('pause')",
        "Pause",
        "Pause or resume the replay.",
        pane="replay",
    ),
    Action(
        "replay.step",
        "full_stop",
        "feed_control('step')",
        "Step",
        "Play the next event, then stay paused.",
        pane="replay",
    ),
    Action(
        "replay.step_back",
        "comma",
        "feed_control('step_back')",
        "Step back",
        "Go back one event (paused).",
        pane="replay",
        footer=False,
    ),
    Action(
        "replay.back",
        "left_square_bracket",
        "feed_control('back')",
        "-10s",
        "Seek 10 seconds back.",
        pane="replay",
    ),
    Action(
        "replay.forward",
        "right_square_bracket",
        "feed_control('forward')",
        "+10s",
        "Seek 10 seconds forward.",
        pane="replay",
    ),
    Action(
        "replay.start",
        "less_than_sign",
        "feed_control('start')",
        "Start",
        "Go to the start of the recording.",
        pane="replay",
        footer=False,
    ),
    Action(
        "replay.end",
        "greater_than_sign",
        "feed_control('end')",
        "End",
        "Go to the end of the recording.",
        pane="replay",
        footer=False,
    ),
    Action(
        "replay.faster",
        "plus",
        "feed_control('faster')",
        "Faster",
        "Play twice as fast.",
        pane="replay",
        footer=False,
    ),
    Action(
        "replay.slower",
        "minus",
        "feed_control('slower')",
        "Slower",
        "Play half as fast.",
        pane="replay",
        footer=False,
    ),
    # The runs view (godel_tui.screens.runs): its keys are bound on its list of runs.
    Action(
        "runs.close",
        "escape",
        "close",
        "Back",
        "Close the runs view (back to the agents).",
        pane="runs",
        local=True,
    ),
    Action(
        "runs.follow",
        "f",
        "toggle_follow",
        "Follow",
        "Follow the selected run's new lines, or pause.",
        pane="runs",
        local=True,
    ),
    Action(
        "view.runs",
        "D",
        "runs",
        "Runs",
        "Show the godel do runs: their tasks and lines, live (again: back).",
        footer=False,
    ),
    Action("view.swarm", "1", "focus_pane('swarm')", "Agents", "Focus the agents.", footer=False),
    Action("view.log", "2", "focus_pane('log')", "Log", "Focus the agent log.", footer=False),
    Action(
        "view.router",
        "3",
        "focus_pane('router')",
        "Router",
        "Focus the router metrics.",
        footer=False,
    ),
    Action(
        "view.budget",
        "4",
        "focus_pane('budget')",
        "Budget",
        "Focus the spend and budget.",
        footer=False,
    ),
)

BY_ID: dict[str, Action] = {a.id: a for a in ACTIONS}


def bindings(
    keymap: Mapping[str, str] | None = None,
) -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    """The app's Textual bindings: every action but the panes' own (``local``), with
    ``keymap`` (id -> keys) applied."""
    keymap = keymap or {}
    return [
        Binding(
            keymap.get(a.id, a.keys),
            a.action,
            a.description,
            show=a.footer,
            id=a.id,
            tooltip=a.help,
        )
        for a in ACTIONS
        if not a.local
    ]


def pane_bindings(pane: str) -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    """The bindings a pane's widget declares: its ``local`` actions. A user keymap
    reaches them by id (``App.set_keymap``)."""
    return [
        Binding(a.keys, a.action, a.description, show=a.footer, id=a.id, tooltip=a.help)
        for a in ACTIONS
        if a.local and a.pane == pane
    ]


def unknown_ids(keymap: Mapping[str, str]) -> list[str]:
    """Keymap entries naming no action (a typo the user is told about)."""
    return sorted(k for k in keymap if k not in BY_ID)
