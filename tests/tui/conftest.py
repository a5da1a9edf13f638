"""The console against a real daemon: agents are spawned with the real CLI, the app runs
under Pilot, and tests wait for what the console received (its model), never a fixed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from textual.pilot import Pilot

from core.paths import GodelPaths
from godel_tui.app import GodelApp
from tests.conftest import Godel


async def until_shown(
    pilot: Pilot[None], condition: Callable[[], bool], what: str, within: float = 15.0
) -> None:
    """Let the app run until ``condition`` holds (what the console received, rendered)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"the console never showed {what} within {within:g}s")
        await pilot.pause(0.02)


def app_for(godel: Godel, **kwargs: object) -> GodelApp:
    return GodelApp(GodelPaths.resolve(godel.home), **kwargs)  # type: ignore[arg-type]
