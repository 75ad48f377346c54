"""Checking the options of the built-in plugins: one message style for all of them."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from gpusched.plugin_api import PluginOptionsError

__all__ = ["number", "refuse_unknown"]


def refuse_unknown(options: Mapping[str, Any], known: Collection[str]) -> None:
    """PluginOptionsError naming the unknown keys and the known ones."""
    unknown = sorted(map(str, set(options) - set(known)))
    if unknown:
        raise PluginOptionsError(f"unknown option(s) {', '.join(unknown)}"
                                 f" (known: {', '.join(sorted(known))})")


def number(options: Mapping[str, Any], key: str, default: float, *, low: float,
           high: float = math.inf, whole: bool = False) -> float:
    """``options[key]`` (or ``default``): a finite number in [low, high], whole if asked."""
    value = options.get(key, default)
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not low <= value <= high
            or (whole and not float(value).is_integer())):
        kind = "a whole number" if whole else "a number"
        span = f">= {low:g}" if high == math.inf else f"from {low:g} to {high:g}"
        raise PluginOptionsError(f"{key} must be {kind} {span} (got {value!r})")
    return float(value)
