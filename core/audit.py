"""The tamper-evident audit chain: canonical JSON, entry hashes, verification.

Each entry's hash is SHA-256 over the canonical JSON of all its fields plus the
previous entry's hash, so editing, deleting, inserting or reordering rows in the
database breaks the chain at the first changed entry. A separate head record (the
last seq and hash, written in the same transaction as every append) catches a
truncated tail. This module owns the maths (``seal`` makes the next entry from a draft);
a store backend only persists what ``seal`` returns, so every backend chains alike.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any

from pydantic import BaseModel

from core.models import AuditEntry

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditDraft:
    """An audit entry before the store gives it a seq and hashes."""

    actor: str
    action: str
    subject: str
    result: str = "ok"
    payload: dict[str, Any] = field(default_factory=dict)


# One encoder, made once: json.dumps with these arguments would build a new one per call.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same bytes for the same data, always."""
    return _CANONICAL.encode(value).encode("utf-8")


def _plain(value: Any) -> bool:
    """Is ``value`` already what JSON gives back (so a round trip would not change it)?"""
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def format_ts(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds")


def compute_entry_hash(
    *,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    subject: str,
    payload: dict[str, Any],
    result: str,
    prev_hash: str,
) -> str:
    body = {
        "seq": seq,
        "ts": format_ts(ts),
        "actor": actor,
        "action": action,
        "subject": subject,
        "payload": payload,
        "result": result,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def seal(draft: AuditDraft, *, seq: int, prev_hash: str, ts: datetime) -> AuditEntry:
    """The entry that follows ``prev_hash`` at ``seq``: payload made JSON-plain, hashed."""
    return seal_json(draft, seq=seq, prev_hash=prev_hash, ts=ts)[0]


def seal_json(
    draft: AuditDraft, *, seq: int, prev_hash: str, ts: datetime
) -> tuple[AuditEntry, str]:
    """``seal``, and the payload's canonical JSON (what a backend stores).

    On the write path of every transaction, so the payload is encoded once and spliced
    into the hashed body; ``tests/unit/test_audit.py`` checks the hash equals
    ``compute_entry_hash``'s, which ``verify_chain`` uses.
    """
    payload_json = _CANONICAL.encode(draft.payload)
    text = encode_basestring  # ensure_ascii=False's string encoder, as in _CANONICAL
    body = (
        f'{{"action":{text(draft.action)},"actor":{text(draft.actor)},'
        f'"payload":{payload_json},"prev_hash":{text(prev_hash)},'
        f'"result":{text(draft.result)},"seq":{int(seq)},'
        f'"subject":{text(draft.subject)},"ts":{text(format_ts(ts))}}}'
    )
    # A payload of plain JSON values is kept as it is (no round trip); anything else
    # (tuples, Decimals, paths...) becomes what the stored JSON reads back as.
    payload = draft.payload if _plain(draft.payload) else json.loads(payload_json)
    entry = AuditEntry.model_construct(
        seq=seq,
        ts=ts,
        actor=draft.actor,
        action=draft.action,
        subject=draft.subject,
        payload=payload,
        result=draft.result,
        prev_hash=prev_hash,
        entry_hash=hashlib.sha256(body.encode("utf-8")).hexdigest(),
    )
    return entry, payload_json


class AuditHead(BaseModel):
    seq: int
    entry_hash: str


class VerifyReport(BaseModel):
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""

    def summary(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} entries verified"
        return f"audit chain broken at entry {self.first_bad_seq}: {self.problem}"


def verify_chain(
    entries: Iterable[AuditEntry], head: AuditHead | None, anchor: AuditHead | None = None
) -> VerifyReport:
    """Walk the chain from the first entry; report the first entry that does not fit.

    ``anchor``, the head recorded beside the database (``godel.db.anchor``), catches
    what the chain and head cannot: a whole store gone back in time (a lost WAL, an older
    copy put back), whose shorter chain is consistent in itself."""
    prev_hash = GENESIS_HASH
    at_anchor: str | None = None  # the hash of our entry at the anchor's seq
    expected_seq = 1
    checked = 0
    last: AuditEntry | None = None
    for e in entries:
        if e.seq != expected_seq:
            if e.seq > expected_seq:
                gone = (
                    f"entry {expected_seq} is missing"
                    if e.seq == expected_seq + 1
                    else f"entries {expected_seq}..{e.seq - 1} are missing"
                )
                problem = f"{gone} (sequence jumps from {expected_seq - 1} to {e.seq})"
            else:
                problem = f"sequence number {e.seq} out of order (expected {expected_seq})"
            return VerifyReport(
                ok=False, checked=checked, first_bad_seq=expected_seq, problem=problem
            )
        if e.prev_hash != prev_hash:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=e.seq,
                problem="its prev_hash does not match the previous entry "
                "(an entry before it was removed, inserted or reordered)",
            )
        actual = compute_entry_hash(
            seq=e.seq,
            ts=e.ts,
            actor=e.actor,
            action=e.action,
            subject=e.subject,
            payload=dict(e.payload),
            result=e.result,
            prev_hash=e.prev_hash,
        )
        if actual != e.entry_hash:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=e.seq,
                problem="its contents do not match its hash (the entry was edited)",
            )
        prev_hash = e.entry_hash
        if anchor is not None and e.seq == anchor.seq:
            at_anchor = e.entry_hash
        expected_seq += 1
        checked += 1
        last = e
    if head is not None:
        last_seq = last.seq if last else 0
        last_hash = last.entry_hash if last else GENESIS_HASH
        if head.seq != last_seq or head.entry_hash != last_hash:
            if head.seq > last_seq:
                return VerifyReport(
                    ok=False,
                    checked=checked,
                    first_bad_seq=last_seq + 1,
                    problem=f"the log ends at entry {last_seq} but the head records "
                    f"{head.seq} entries (the tail was deleted)",
                )
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=head.seq if head.seq <= last_seq else last_seq,
                problem="the head record does not match the last entry",
            )
    elif checked:
        return VerifyReport(
            ok=False,
            checked=checked,
            first_bad_seq=1,
            problem="the head record is missing",
        )
    if anchor is not None and anchor.seq > 0:
        last_seq = last.seq if last else 0
        if anchor.seq > last_seq:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=last_seq + 1,
                problem=f"the store was rolled back or its tail cut: the log ends at entry "
                f"{last_seq} but its anchor records entry {anchor.seq} (the WAL was lost "
                "or an older copy of the database was put back)",
            )
        if at_anchor != anchor.entry_hash:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=anchor.seq,
                problem="the store was rolled back: this entry is not the one its anchor "
                "records (another copy of the database was put back)",
            )
    return VerifyReport(ok=True, checked=checked)
