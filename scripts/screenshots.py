#!/usr/bin/env python3
"""Regenerate the console's screenshots (``screenshots/*.svg``, shown in the README).

Each is a scene of ``tests/tui/scenes.py``: the recorded fixture replayed paused at a
fixed point, then driven as a user would; the snapshot tests pin the same scenes. The
output is the same on every run (the scenes say why), so a changed file is a changed
console. Run from the repository root (``make screenshots``):

    python scripts/screenshots.py [--out screenshots] [SCENE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scenes live with the tests

from tests.tui.scenes import SCENES, SIZE, scene_app, utc  # noqa: E402


async def shoot(name: str) -> str:
    app = scene_app(name)
    async with app.run_test(size=SIZE) as pilot:
        await SCENES[name](pilot)
        return app.export_screenshot(title=f"godel console: {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    parser.add_argument("scenes", nargs="*", metavar="SCENE", help=", ".join(SCENES))
    args = parser.parse_args()
    if unknown := [n for n in args.scenes if n not in SCENES]:
        parser.error(f"no scene {', '.join(unknown)} (scenes: {', '.join(SCENES)})")
    names = args.scenes or list(SCENES)
    args.out.mkdir(parents=True, exist_ok=True)
    with utc():
        for name in names:
            path = args.out / f"{name}.svg"
            path.write_text(asyncio.run(shoot(name)))
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
