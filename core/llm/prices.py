"""Model prices: a dated vendored snapshot plus config overrides; cost in ``Decimal``.

An unknown price is ``None`` and a cost computed from it is ``None``: unknown, never zero.
Refresh the snapshot with ``python scripts/refresh_prices.py``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from core.llm.catalog_types import ApiKind, ModelPrices
from core.models import Usage

MILLION = Decimal(1_000_000)


@cache
def _snapshot() -> dict[str, Any]:
    text = resources.files("core.llm").joinpath("prices_snapshot.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def snapshot_label() -> str:
    s = _snapshot()
    return f"snapshot {s['source'].split(' (')[0]} ({s['retrieved']})"


def snapshot_price(api: ApiKind, upstream_id: str) -> ModelPrices | None:
    """The snapshot's price for a model id: exact id first, then the longest prefix match."""
    models: dict[str, dict[str, Any]] = _snapshot()["models"].get(api, {})
    row = models.get(upstream_id)
    if row is None:
        best = ""
        for candidate in models.values():
            for prefix in candidate["match_prefixes"]:
                if upstream_id.startswith(prefix) and len(prefix) > len(best):
                    best, row = prefix, candidate
    if row is None:
        return None
    return ModelPrices(
        input_mtok=Decimal(row["input_mtok"]),
        output_mtok=Decimal(row["output_mtok"]),
        cache_read_mtok=Decimal(row.get("cache_read_mtok", "0")),
        cache_write_mtok=Decimal(row.get("cache_write_mtok", "0")),
        source=snapshot_label(),
    )


def cost(usage: Usage, prices: ModelPrices | None) -> Decimal | None:
    """US dollars for ``usage`` at ``prices``; None when the price is unknown."""
    if prices is None:
        return None
    total = (
        usage.input_tokens * prices.input_mtok
        + usage.output_tokens * prices.output_mtok
        + usage.cache_read_tokens * prices.cache_read_mtok
        + usage.cache_write_tokens * prices.cache_write_mtok
    )
    return total / MILLION
