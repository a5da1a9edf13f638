"""The spend pane's budget lines: limit, spend, %, reset time and time left."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from core.models import Budget
from core.views.rows import SpendState
from godel_tui.panes.summary import spend_text

START = datetime(2026, 11, 27, tzinfo=UTC)


def test_budgets_show_spend_percent_reset_and_time_left() -> None:
    state = SpendState(
        budgets=[
            Budget(
                scope="project",
                unit="usd",
                limit=Decimal(1),
                spent=Decimal("0.40"),
                period="daily",
                period_start=START,
                reset_at=datetime(2026, 11, 28, tzinfo=UTC),
            ),
            Budget(
                scope="swarm:web",
                unit="tokens",
                limit=Decimal(1000),
                spent=Decimal(1000),
                period_start=START,
            ),
        ]
    )
    lines = spend_text(state, Decimal("0.01")).splitlines()
    assert lines[1] == "burn  $0.0100/min"
    assert lines[2] == "limit project $0.40/$1.00 40% (resets 11-28 00:00) ~1.0h left"
    assert lines[3].startswith("limit swarm:web ") and lines[3].endswith("100% EXHAUSTED")
    assert "limit: none set" in spend_text(SpendState(), None)
