"""Durations and memory sizes as people write them: ``90s``, ``1h30m``, ``10GiB``, ``512MiB``.

Both parsers accept a bare number too (seconds, MiB), and raise :class:`ValueError` with a message
fit to show a user for anything else, whatever its type.
"""

from __future__ import annotations

import math
import re

TYPE_CHECKING = False  # typing is imported for the type checker only: the CLI starts faster
if TYPE_CHECKING:
    from typing import Any

__all__ = ["parse_duration", "parse_memory_mib", "DURATION_UNITS", "MEMORY_UNITS"]

DURATION_UNITS: dict[str, float] = {
    **dict.fromkeys(("ms", "msec", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}
"""Duration units (lower case; matching ignores case) → seconds."""

_MIB = float(2**20)
MEMORY_UNITS: dict[str, float] = {
    "b": 1 / _MIB,
    # Binary units, with Kubernetes' short spellings (Ki, Mi, Gi, Ti).
    **dict.fromkeys(("kib", "ki"), 1024 / _MIB),
    **dict.fromkeys(("mib", "mi"), 1.0),
    **dict.fromkeys(("gib", "gi"), 1024.0),
    **dict.fromkeys(("tib", "ti"), 1024.0**2),
    # Decimal units, as disk makers and Kubernetes count them.
    "kb": 1e3 / _MIB,
    "mb": 1e6 / _MIB,
    "gb": 1e9 / _MIB,
    "tb": 1e12 / _MIB,
}
"""Memory units (lower case; matching ignores case) → MiB."""

# A bare K/M/G/T means 1000**n to Kubernetes and 1024**n to Docker and nvidia-smi: refuse to guess.
_AMBIGUOUS = frozenset("kmgt")

_DECIMAL = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION_PART = re.compile(rf"\s*{_DECIMAL}\s*([A-Za-z]+)\s*")
_MEMORY = re.compile(rf"\s*{_DECIMAL}\s*([A-Za-z]*)\s*")


def _plain_number(value: Any, what: str) -> float | None:
    """``value`` as a non-negative finite float when it is an int or float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{what} too large") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be a finite number >= 0 (got {number})")
    return number


def _kind(value: Any) -> str:
    """How a message names a value that is not text: YAML's words, or its kind."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def parse_duration(text: str | float) -> float:
    """Seconds in ``text``: ``45`` or ``"45"`` (seconds), ``"90s"``, ``"30m"``, ``"2h"``,
    ``"1.5h"``, ``"1h30m"``, ``"1d"``, ``"500ms"``; unit words (``"2 hours"``) work too."""
    number = _plain_number(text, "duration")
    if number is not None:
        return number
    hint = "write seconds, or e.g. '90s', '30m', '2h', '1h30m'"
    if not isinstance(text, str):
        raise ValueError(f"not a duration: {_kind(text)} ({hint})")
    stripped = text.strip()
    if re.fullmatch(_DECIMAL, stripped):
        return parse_duration(float(stripped))
    total, pos = 0.0, 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        unit = DURATION_UNITS.get(match.group(2).lower()) if match else None
        if match is None or unit is None:
            raise ValueError(f"not a duration: {text[:40]!r} ({hint})")
        total += float(match.group(1)) * unit
        pos = match.end()
    if pos == 0 or not math.isfinite(total):
        raise ValueError(f"not a duration: {text[:40]!r} ({hint})")
    return total


def parse_memory_mib(text: str | float) -> float:
    """MiB in ``text``: ``512`` (MiB), ``"512MiB"``, ``"10GiB"``, ``"1.5GiB"``, ``"10GB"``
    (decimal: 10**10 bytes), ``"10Gi"``; a bare ``"10G"`` is refused as ambiguous."""
    number = _plain_number(text, "memory size")
    if number is not None:
        return number
    hint = "write MiB, or e.g. '512MiB', '10GiB', '10GB'"
    if not isinstance(text, str):
        raise ValueError(f"not a memory size: {_kind(text)} ({hint})")
    match = _MEMORY.fullmatch(text)
    if match is None:
        raise ValueError(f"not a memory size: {text[:40]!r} ({hint})")
    amount, unit = float(match.group(1)), match.group(2)
    if unit.lower() in _AMBIGUOUS:
        raise ValueError(
            f"ambiguous memory unit {unit!r} in {text.strip()!r}: write {unit.upper()}iB "
            f"(powers of 1024) or {unit.upper()}B (powers of 1000)"
        )
    if unit and unit.lower() not in MEMORY_UNITS:
        raise ValueError(f"unknown memory unit {unit!r} in {text.strip()!r} ({hint})")
    result = amount * MEMORY_UNITS[unit.lower()] if unit else amount
    if not math.isfinite(result):
        raise ValueError(f"memory size too large: {text[:40]!r}")
    return result
