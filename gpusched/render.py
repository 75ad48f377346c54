"""Plain-text tables for the CLI's read commands (``--json`` prints the data itself)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence

TYPE_CHECKING = False  # typing is imported for the type checker only: the CLI starts faster
if TYPE_CHECKING:
    from typing import Any

__all__ = ["table", "fmt_value", "fmt_duration", "fmt_age", "best_table", "key_values",
           "fmt_time", "union_keys", "finite_number", "print_json", "events_lines"]


def print_json(data: Any) -> None:
    """What every ``--json`` prints: the daemon's answer, indented."""
    print(json.dumps(data, indent=2))


def union_keys(rows: Sequence[Mapping[str, Any]], field: str) -> list[str]:
    """The keys of ``row[field]`` over all rows, in first-seen order (a table's columns)."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row.get(field) or {}))
    return list(names)


def finite_number(value: Any) -> float | None:
    """``value`` as a float if it is a finite int or float (not a bool), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def fmt_value(value: Any) -> str:
    """A compact cell: floats to 4 significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def fmt_age(timestamp: float | None) -> str:
    """How long ago: ``5m05s ago``."""
    return "-" if timestamp is None else f"{fmt_duration(time.time() - timestamp)} ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces."""
    cells = [[fmt_value(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in cells]
    return "\n".join(lines)


def best_table(trials: Sequence[dict[str, Any]], metric: str = "objective") -> str:
    """`gpusched best`."""
    names = union_keys(trials, "params")
    rows = [[i + 1, t["id"], t["objective"], *(t["params"].get(n) for n in names)]
            for i, t in enumerate(trials)]
    return table(["RANK", "TRIAL", metric.upper(), *names], rows)


def fmt_time(timestamp: float | None) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS``."""
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    """``key: value`` lines, keys aligned; ``*_at`` times shown as dates, ``*_s`` as durations."""
    width = max((len(k) for k, _ in pairs), default=0)

    def cell(key: str, value: Any) -> str:
        if key.endswith("_at") and isinstance(value, int | float):
            return fmt_time(value)
        if key.endswith("_s") and isinstance(value, int | float):
            return fmt_duration(value)
        return fmt_value(value)

    return "\n".join(f"{k.ljust(width)}  {cell(k, v)}" for k, v in pairs)


def events_lines(events: Sequence[dict[str, Any]]) -> str:
    """`gpusched show`'s event log: time, trial, kind, and the reason when there is one."""
    lines = []
    for e in events:
        who = "" if e.get("trial") is None else f"{e['experiment_id']}/{e['trial']}"
        data = e.get("data") or {}
        said = data.get("reason") or data.get("state") or ""
        lines.append(f"  {fmt_time(e['t'])}  {who:<8} {e['kind']}  {said}".rstrip())
    return "\n".join(["events:", *lines]) if lines else "events: -"
