"""Checks for the daemon's settings file: each turns a TOML value into a setting's value or
says, in one phrase, what was wanted (the caller adds the place, ``daemon.grace_period_s``).

The phrases follow the experiment file's (``must be a number >= 0 (got 'ten')``), and so does
the report: every problem at once, each with its place.
"""

from __future__ import annotations

import grp
import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "Check",
    "BadValue",
    "boolean",
    "device_list",
    "existing_group",
    "non_negative",
    "non_negative_int",
    "path_text",
    "positive",
    "text",
]


class BadValue(ValueError):
    """A value a setting cannot take; the message says what it must be."""


Check = Callable[[Any], Any]


def _got(value: Any) -> str:
    # Imported here: clients import the settings' module for the socket's path, and should not
    # pay for the experiment checker's imports to start.
    from gpusched._spec_check import describe

    return f"(got {describe(value)})"


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadValue(f"must be a number {_got(value)}")
    return float(value)


def non_negative(value: Any) -> float:
    """A finite number >= 0 (a duration in seconds, memory in MiB, a count of GPUs)."""
    number = _number(value)
    if number < 0:
        raise BadValue(f"must be a number >= 0 {_got(value)}")
    return number


def positive(value: Any) -> float:
    """A finite number > 0: a poll interval of 0 would spin the event loop."""
    number = _number(value)
    if number <= 0:
        raise BadValue(f"must be a number > 0 {_got(value)}")
    return number


def non_negative_int(value: Any) -> int:
    """A whole number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadValue(f"must be a whole number >= 0 {_got(value)}")
    return value


def boolean(value: Any) -> bool:
    """``true`` or ``false`` (not 1, not "yes")."""
    if not isinstance(value, bool):
        raise BadValue(f"must be true or false {_got(value)}")
    return value


def text(value: Any) -> str:
    """A string."""
    if not isinstance(value, str):
        raise BadValue(f"must be a string {_got(value)}")
    return value


def existing_group(value: Any) -> str:
    """The name of a group of this host, or "" for none."""
    name = text(value)
    if name:
        try:
            grp.getgrnam(name)
        except KeyError:
            raise BadValue(f"no group {name!r} on this host (create it with `groupadd"
                           f" --system {name}`, or leave the key out)") from None
    return name


def path_text(value: Any) -> str:
    """An absolute path, or "" for the default."""
    path = text(value)
    if path and not path.startswith("/"):
        raise BadValue(f"must be an absolute path {_got(value)}")
    return path


def device_list(value: Any) -> tuple[str | int, ...]:
    """GPUs named by UUID (``GPU-…``, ``MIG-…``) or NVML index (0, 1, ...)."""
    if not isinstance(value, list):
        raise BadValue(f"must be a list of GPU UUIDs or NVML indices {_got(value)}")
    bad = [item for item in value if not _device_name(item)]
    if bad:
        raise BadValue("each entry must be a GPU UUID ('GPU-…' or 'MIG-…') or an NVML index"
                       f" (0, 1, ...) {_got(bad[0])}")
    return tuple(value)


def _device_name(item: Any) -> bool:
    if isinstance(item, bool):
        return False
    if isinstance(item, int):
        return item >= 0
    return isinstance(item, str) and item.startswith(("GPU-", "MIG-")) and len(item) > 4
