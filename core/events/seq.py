"""Durable event sequence numbers: ``seq`` never restarts, across daemon runs and crashes.

The bus reserves numbers in blocks: before it hands out the first number of a block it
writes the block's end to a small file (write to a temporary file, then rename: the file
is always whole). A daemon that starts again begins after what the file says, so a seq
is never reused even after a SIGKILL; a crash skips at most the rest of a block (a gap,
never a repeat). A clean stop writes the exact last seq, so a restart after
``daemon stop`` continues without a gap. A power loss (the rename not yet on disk) could
hand out numbers again; we accept that, as for the store's last transactions.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import StoreError

__all__ = ["BLOCK", "SeqFile"]

BLOCK = 10_000


class SeqFile:
    def __init__(self, path: str | Path, block: int = BLOCK) -> None:
        if block < 1:
            raise ValueError("block must be at least 1")
        self.path = Path(path)
        self.block = block

    def load(self) -> int:
        """The highest seq a previous run may have used (0 for a new home)."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        try:
            value = int(text)
        except ValueError:
            # Edited by hand (writes are atomic): guessing could reuse numbers; say so.
            raise StoreError(
                f"{self.path} does not hold an event sequence number ({text[:40]!r}); "
                "delete it to restart numbering (subscribers' cursors become stale)",
                path=str(self.path),
            ) from None
        return max(value, 0)

    def write(self, value: int) -> None:
        """Record ``value`` as the highest seq that may be in use (atomic rename)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{value}\n")
        os.replace(tmp, self.path)
