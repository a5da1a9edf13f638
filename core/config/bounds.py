"""Ranges for numeric settings, so an error names the whole allowed range.

A value out of range is refused rather than clamped: ``interval_s = 0.000001`` would
busy-loop a core, ``max_turns = -1`` would fail every exec with no message.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

__all__ = ["OUT_OF_RANGE", "between", "check_range", "describe_range"]

OUT_OF_RANGE = "out_of_range"
_N = TypeVar("_N", int, float)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def describe_range(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> str:
    low = f"more than {_num(lo)}" if lo_open else f"at least {_num(lo)}"
    high = f"less than {_num(hi)}" if hi_open else f"at most {_num(hi)}"
    if not lo_open and not hi_open:
        return f"from {_num(lo)} to {_num(hi)}"
    return f"{low} and {high}"


def check_range(
    value: float, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
) -> str | None:
    """The problem with ``value``, or None when it lies in the range."""
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if below or above:
        text = describe_range(lo, hi, lo_open=lo_open, hi_open=hi_open)
        return f"must be {text}, got {_num(value)}"
    return None


def between(
    lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
) -> AfterValidator:
    """Annotated metadata keeping a number in range (inclusive unless ``*_open``)."""

    def check(value: _N) -> _N:
        problem = check_range(value, lo, hi, lo_open=lo_open, hi_open=hi_open)
        if problem is not None:
            raise PydanticCustomError(OUT_OF_RANGE, problem)
        return value

    return AfterValidator(check)
