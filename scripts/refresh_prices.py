#!/usr/bin/env python3
"""Refresh core/llm/prices_snapshot.json from the genai-prices package (MIT, pydantic).

Godel does not depend on genai-prices at run time (it pulls in an extra HTTP client and
can auto-update from the network); it vendors a dated snapshot of the base prices of the
providers Godel speaks to. Run by a maintainer:

    python scripts/refresh_prices.py [--version 0.2.3]

It downloads the wheel with pip into a temp dir, reads its data module, and rewrites the
snapshot. Tiered prices keep their base tier (Godel's requests stay under the tier start).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import types
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "core" / "llm" / "prices_snapshot.json"
PROVIDERS = {"anthropic": "anthropic", "openai": "openai"}
FIELDS = {
    "input_mtok": "input_mtok",
    "output_mtok": "output_mtok",
    "cache_read_mtok": "cache_read_mtok",
    "cache_write_mtok": "cache_write_mtok",
}


def _base(price: Any) -> str | None:
    if price is None:
        return None
    if isinstance(price, Decimal):
        return str(price)
    base = getattr(price, "base", None)
    return str(base) if base is not None else None


def _prefixes(clause: Any) -> list[str]:
    out: list[str] = []
    for attr in ("starts_with", "equals"):
        v = getattr(clause, attr, None)
        if isinstance(v, str):
            out.append(v)
    for sub in getattr(clause, "or_", None) or []:
        out += _prefixes(sub)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", default="0.2.3")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "-d",
                tmp,
                f"genai-prices=={args.version}",
            ],
            check=True,
        )
        wheel = next(Path(tmp).glob("genai_prices-*.whl"))
        zipfile.ZipFile(wheel).extractall(Path(tmp) / "src")
        sys.path.insert(0, str(Path(tmp) / "src"))
        # The package's __init__ imports its auto-updater (and its HTTP client); the
        # data module does not need it.
        sys.modules["httpx2"] = types.ModuleType("httpx2")
        from genai_prices import data  # type: ignore[import-not-found]

    models: dict[str, dict[str, Any]] = {}
    for provider in data.providers:
        if provider.id not in PROVIDERS:
            continue
        out = models.setdefault(PROVIDERS[provider.id], {})
        for m in provider.models:
            prices = m.prices
            if isinstance(prices, list):  # historic prices: take the current (last) one
                prices = prices[-1].prices
            row = {k: _base(getattr(prices, v, None)) for k, v in FIELDS.items()}
            if row["input_mtok"] is None or row["output_mtok"] is None:
                continue
            out[m.id] = {
                **{k: v for k, v in row.items() if v is not None},
                "match_prefixes": sorted(set(_prefixes(m.match))) or [m.id],
            }
    snapshot = {
        "source": f"genai-prices {args.version} (MIT, https://github.com/pydantic/genai-prices)",
        "retrieved": dt.date.today().isoformat(),
        "unit": "USD per million tokens",
        "models": models,
    }
    OUT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    n = sum(len(v) for v in models.values())
    print(f"wrote {OUT} ({n} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
