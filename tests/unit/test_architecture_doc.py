"""docs/architecture.md shows the layers the import contract enforces, and nothing else."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_layers_are_the_enforced_layers() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    [layers] = [c for c in contracts if c["type"] == "layers"]
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- layers:begin -->\n```\n(.*?)```\n<!-- layers:end -->", doc, re.S)
    assert block, "docs/architecture.md lost its layers block"
    assert block.group(1).splitlines() == layers["layers"]
