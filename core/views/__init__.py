"""The read side every face shares: a snapshot of agents, swarms, tasks, routing and
spend, plus ``apply(event)`` to keep it current.

The daemon keeps one ``Views`` current from its bus and serves it as ``view.*``; the
CLI's listings render it, the console folds the live stream onto a snapshot, the HTTP
API will serve it. The shapes in ``rows`` are the one JSON shape of each object.
"""

from __future__ import annotations

from core.views.rows import (
    AgentRow,
    Decision,
    DoRunRow,
    DoTaskRow,
    RouterState,
    SpendState,
    SpendTotals,
    SwarmRow,
    TaskRow,
    Tokens,
    ViewSnapshot,
)
from core.views.state import ACTIVE_TASK_STATUSES, RECENT_TASKS, Views

__all__ = [
    "ACTIVE_TASK_STATUSES",
    "RECENT_TASKS",
    "AgentRow",
    "Decision",
    "DoRunRow",
    "DoTaskRow",
    "RouterState",
    "SpendState",
    "SpendTotals",
    "SwarmRow",
    "TaskRow",
    "Tokens",
    "ViewSnapshot",
    "Views",
]
