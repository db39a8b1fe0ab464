"""Reading and formatting the values of a report: numbers, flags and missing values."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

MISSING = "—"


def dig(mapping: Mapping, path: Sequence[str]):
    value = mapping
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def num(value) -> float | None:
    """``value`` as a float when it is a number or a numeric string, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text or text.lower() in ("true", "false", "nan", "inf", "-inf"):
            return None
        try:
            return float(text)
        except ValueError:
            return None
    return None


def nan(value) -> float:
    number = num(value)
    return number if number is not None else math.nan


def truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def fmt(value) -> str:
    """A short, locale-free rendering of a report value."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if value.strip().lower() in ("true", "false"):
            return "yes" if value.strip().lower() == "true" else "no"
        if value.strip() == "":
            return MISSING
        number = num(value)
        if number is None:
            return value
        if number.is_integer() and "." not in value and "e" not in value.lower():
            return f"{int(number):,}"
        value = number
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _fmt_float(value)
    if isinstance(value, list | tuple):
        return ", ".join(fmt(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _fmt_float(value: float) -> str:
    if not math.isfinite(value):
        return MISSING
    magnitude = abs(value)
    if value == 0.0:
        return "0"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if value.is_integer():
        return f"{value:g}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"


def fmt_percent(value) -> str:
    number = num(value)
    if number is None:
        return ""
    return f"{number * 100:g}%"
