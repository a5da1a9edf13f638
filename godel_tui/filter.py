"""The agent filter grammar typed after ``/``: small, k9s-like, pure.

``status:busy runtime:pi swarm:api !idle`` -- space-separated terms, all must hold:

- ``key:value`` compares one field (``status``, ``runtime``, ``swarm``, ``model``,
  ``name``, ``id``, ``task``, ``source``, ``health``); ``value`` may list alternatives
  with commas (``status:busy,idle``) and matches a prefix of the field
  (``runtime:pi`` matches ``pi``, ``swarm:api`` matches ``api`` and ``api-2``);
- a bare word matches any of those fields as a substring;
- ``!`` before a term negates it (``!idle``, ``!swarm:api``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

KEYS = ("status", "runtime", "swarm", "model", "name", "id", "task", "source", "health")


class FilterError(ValueError):
    """A term the grammar does not know; the message is one line for the user."""


@dataclass(frozen=True)
class Term:
    key: str | None  # None: any field
    values: tuple[str, ...]
    negate: bool

    def holds(self, fields: Mapping[str, str]) -> bool:
        if self.key is None:
            hit = any(v in f for f in fields.values() for v in self.values)
        else:
            field = fields.get(self.key, "")
            hit = any(field.startswith(v) for v in self.values)
        return hit != self.negate


@dataclass(frozen=True)
class AgentFilter:
    text: str
    terms: tuple[Term, ...]

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(t.holds(fields) for t in self.terms)

    @property
    def empty(self) -> bool:
        return not self.terms


def parse_filter(text: str) -> AgentFilter:
    """Parse ``text``; ``FilterError`` names the first term it cannot use."""
    terms = []
    for raw in text.split():
        word = raw.lower()
        negate = word.startswith("!")
        if negate:
            word = word[1:]
        if not word:
            raise FilterError("'!' needs a term after it, e.g. !idle")
        key: str | None = None
        if ":" in word:
            key, _, word = word.partition(":")
            if key not in KEYS:
                raise FilterError(f"unknown filter key {key!r}; keys: {', '.join(KEYS)}")
            if not word:
                raise FilterError(f"{key}: needs a value, e.g. {key}:{_EXAMPLE.get(key, 'x')}")
        values = tuple(v for v in word.split(",") if v)
        terms.append(Term(key, values, negate))
    return AgentFilter(text.strip(), tuple(terms))


_EXAMPLE = {"status": "busy", "runtime": "pi", "swarm": "api", "health": "open"}

Matcher = Callable[[Mapping[str, str]], bool]
