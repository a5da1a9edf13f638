"""Runs ``:`` commands in the console: parse (``godel_tui.commands``), refuse what a
read-only console may not do, act on the console itself (filter, sort, help, quit) or
make the daemon calls the command plans, and say how each went as a notification.

Every problem is a notification of one line: a typo, a refusal, an error from the
daemon, a lost connection. Calls run in workers, never on the UI loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from textual.notifications import SeverityLevel

from core.cli.caller import with_caller_keys
from core.errors import GodelError
from godel_tui.commands import (
    Call,
    Command,
    CommandError,
    Exec,
    Filter,
    Help,
    Kill,
    Quit,
    Restart,
    Runs,
    Sort,
    SwarmInfo,
    describe,
    parse,
    plan,
    spec_of,
)
from godel_tui.filter import FilterError
from godel_tui.screens.command_line import CommandLine, History
from godel_tui.widgets.agent_table import AgentTable

if TYPE_CHECKING:
    from godel_tui.app import GodelApp

SHOWN_MAX = 3  # outcomes notified one by one; more are summed up


def summarize(name: str, outcomes: Sequence[tuple[bool, str]]) -> list[tuple[str, bool]]:
    """Notifications (text, is_error) for the outcomes (ok, text) of one command's calls:
    each when few, else a count and the first error of each kind."""
    if len(outcomes) <= SHOWN_MAX:
        return [(text, not ok) for ok, text in outcomes]
    ok = [t for good, t in outcomes if good]
    errors = list(dict.fromkeys(t for good, t in outcomes if not good))
    out = [(f":{name}: {len(ok)} of {len(outcomes)} done", bool(errors))]
    out.extend((e, True) for e in errors[:SHOWN_MAX])
    return out


class CommandRunner:
    def __init__(self, app: GodelApp, keymap: Mapping[str, str]) -> None:
        self.app = app
        self.keymap = dict(keymap)  # the user's, as bound (help and the palette show it)
        self.history = History()
        self._names: dict[str, list[str]] = {}

    def names(self) -> dict[str, list[str]]:
        """What Tab completes: runtimes and strategies (asked once), swarms (live)."""
        return {**self._names, "swarm": sorted(self.app.model.views.swarms)}

    def open(self, value: str = "") -> None:
        if not self._names:
            self.app.run_worker(self._fetch_names(), group="commands")
        self.app.push_screen(CommandLine(self.history, self.names, value), self._done)

    def _done(self, line: str | None) -> None:
        if line is not None and line.strip():
            self.run(line)

    async def _fetch_names(self) -> None:
        try:
            runtimes = await self.app.feed.call("runtime.list")
            strategies = await self.app.feed.call("route.strategies")
        except (GodelError, OSError):
            return  # completion of these names waits for the next opening
        self._names = {
            "runtime": [str(r.get("name")) for r in runtimes if isinstance(r, dict)],
            "strategy": [str(s) for s in strategies],
        }

    def run(self, line: str) -> None:
        """Run one typed line; whatever goes wrong is a notification."""
        app = self.app
        try:
            command = parse(line)
        except CommandError as e:
            app.notify(str(e), severity="error", timeout=10, markup=False)
            return
        spec = spec_of(command)
        if spec.changes_state and app.read_only:
            app.notify(
                f"read-only console: :{spec.name} changes state, and this console was "
                "started with --read-only",
                severity="warning",
                markup=False,
            )
            return
        if isinstance(command, Filter | Sort | Runs | Help | Quit):
            self._local(command)
            return
        targets = app._targets()
        swarms = {
            s.name: SwarmInfo(s.runtime, s.desired, s.model)
            for s in app.model.views.swarms.values()
        }
        try:
            calls = plan(command, targets, swarms)
        except CommandError as e:
            app.notify(str(e), severity="error", timeout=10, markup=False)
            return
        if isinstance(command, Kill | Restart) and not command.ids:
            app.model.marked.clear()  # as the kill key does: the marks were used
        if isinstance(command, Exec):  # its result comes when it ends; its output, in the log
            app.notify(f"exec on {', '.join(c.params['id'] for c in calls)}", markup=False)
        app.run_worker(self._send(command, calls), group="commands")

    def _local(self, command: Filter | Sort | Runs | Help | Quit) -> None:
        app = self.app
        match command:
            case Filter():
                try:
                    app.model.set_filter(command.text)
                except FilterError as e:  # parse checked it; kept for safety
                    app.notify(str(e), severity="error", markup=False)
                    return
                app.query_one("#swarm-pane").border_subtitle = (
                    f"/ {command.text}" if command.text else ""
                )
            case Sort():
                app.model.set_sort(command.key, command.reverse)
            case Runs():
                app.show_runs()
                return
            case Help():
                app.action_help()
                return
            case Quit():
                app.exit()
                return
        app.query_one(AgentTable).refresh_rows()

    async def _send(self, command: Command, calls: list[Call]) -> None:
        outcomes = await asyncio.gather(*(self._one(c) for c in calls))
        for text, error in summarize(command.name, outcomes):
            severity: SeverityLevel = "error" if error else "information"
            self.app.notify(text, severity=severity, timeout=8, markup=False)

    async def _one(self, call: Call) -> tuple[bool, str]:
        try:
            # The caller's API keys go with a spawn, as the CLI sends them (read off
            # the loop: it reads the config files).
            params = await asyncio.to_thread(with_caller_keys, call.method, call.params)
            result: Any = await self.app.feed.call(call.method, params)
        except GodelError as e:
            return False, e.message
        except (OSError, ConnectionError) as e:
            return False, f"{call.method}: {e}"
        return True, describe(call, result)
