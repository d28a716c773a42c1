"""Checking and gridding the numeric fields of size-space architectures.

Every check raises ``PredNASError`` with one line naming the space, the field (with its
index), the value and what was expected, e.g. ``anynet widths[2] = 1030: expected a
multiple of 8 in 24..1024``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from prednas.errors import PredNASError


def fail(space: str, field: str, value: Any, expected: str) -> None:
    """Raise the one-line error for a bad field."""
    raise PredNASError(f"{space} {field} = {value!r}: expected {expected}")


def int_in(value: Any, lo: int, hi: int, step: int = 1) -> bool:
    """Whether ``value`` is an integer (of any numeric type) in ``lo..hi`` and a multiple of ``step``."""
    # the range first: an int too large for a float (10**400) must not reach float()
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
            and lo <= value <= hi and float(value).is_integer() and int(value) % step == 0)


def int_expected(lo: int, hi: int, step: int = 1) -> str:
    """What ``int_in`` accepts, in words."""
    return f"an integer in {lo}..{hi}" if step == 1 else f"a multiple of {step} in {lo}..{hi}"


def check_int(space: str, field: str, value: Any, lo: int, hi: int, step: int = 1) -> int:
    """``value`` as an int in ``lo..hi`` and a multiple of ``step``."""
    if not int_in(value, lo, hi, step):
        fail(space, field, value, int_expected(lo, hi, step))
    return int(value)


def float_array(space: str, what: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array; text, ragged lists or objects raise the one-line error."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise PredNASError(f"{space} {what} must be an array of numbers, got {type(value).__name__}") from None


def check_choice(space: str, field: str, value: Any, choices: Sequence[float]) -> float:
    """``value`` as a float that is one of ``choices``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or value not in choices:  # exact comparison: no float() of a huge int
        fail(space, field, value, f"one of {', '.join(f'{c:g}' for c in choices)}")
    return float(value)


def get_list(space: str, data: Mapping[str, Any], key: str, length: int | tuple[int, int]) -> list[Any]:
    """``data[key]`` as a list of ``length`` items (or a length in an inclusive range)."""
    lo, hi = (length, length) if isinstance(length, int) else length
    expected = f"a list of {lo}" if lo == hi else f"a list of {lo}..{hi}"
    if not isinstance(data, Mapping):
        raise PredNASError(f"{space} architecture must be a JSON object, got {type(data).__name__}")
    if key not in data:
        raise PredNASError(f"{space} architecture is missing field {key!r}; expected {expected} numbers")
    value = data[key]
    if not isinstance(value, (list, tuple)) or not lo <= len(value) <= hi:
        fail(space, key, value, f"{expected} numbers")
    return list(value)


def check_keys(space: str, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Refuse unknown fields (a typo would otherwise be silently ignored)."""
    if not isinstance(data, Mapping):
        raise PredNASError(f"{space} architecture must be a JSON object, got {type(data).__name__}")
    extra = sorted(set(data) - set(allowed), key=str)  # keys of parsed YAML need not all be strings
    if extra:
        raise PredNASError(f"{space} architecture has unknown field {extra[0]!r}; "
                           f"expected fields: {', '.join(allowed)}")


def as_number(value: Any, integral: bool = True) -> Any:
    """An integral number as ``int`` (any number as ``float`` if not ``integral``); others unchanged.

    Unchanged values (text, 2.5 where an int is due) are left for the checks to name.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return value
    if isinstance(value, (int, np.integer)) and (integral or abs(int(value)) > sys.float_info.max):
        return int(value)  # exact; one too large for a float is left for the checks to name
    if not integral:
        return float(value)
    return int(value) if float(value).is_integer() else value


def snap(x: float, lo: int, hi: int, step: int = 1) -> int:
    """Nearest multiple of ``step`` in ``lo..hi`` to ``x`` (``lo`` and ``hi`` multiples of ``step``)."""
    x = float(x) if math.isfinite(x) else float(lo)
    return int(min(max(round(x / step) * step, lo), hi))


def unit(value: float, lo: float, hi: float) -> float:
    """``value`` mapped linearly so that ``lo -> 0`` and ``hi -> 1``."""
    return (value - lo) / (hi - lo) if hi > lo else 0.0


def from_unit(x: float, lo: float, hi: float) -> float:
    """Inverse of ``unit``."""
    return lo + float(x) * (hi - lo)


def ratio_unit(ratio: float, ratios: Sequence[float]) -> float:
    """Position of a ratio among ``ratios`` (sorted), spaced evenly in log scale, in 0..1."""
    return unit(math.log2(ratio), math.log2(ratios[0]), math.log2(ratios[-1]))


def snap_ratio(x: float, ratios: Sequence[float]) -> float:
    """The ratio whose ``ratio_unit`` is nearest to ``x``."""
    x = float(x) if math.isfinite(x) else 0.0
    return min(ratios, key=lambda r: abs(ratio_unit(r, ratios) - x))
