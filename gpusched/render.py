"""Plain-text tables for the CLI's read commands (``--json`` prints the data itself)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence

TYPE_CHECKING = False  # typing is imported for the type checker only: the CLI starts faster
if TYPE_CHECKING:
    from typing import Any

__all__ = ["table", "inline", "fmt_value", "fmt_duration", "fmt_age", "best_table", "key_values",
           "fmt_time", "union_keys", "finite_number", "print_json", "events_lines", "spec_lines",
           "printable",
           "text_width", "cut_to_width"]

# What a trial writes (a failure reason, a reported string, a parameter's value) reaches other
# people's terminals: control characters (C0, DEL, C1) would break a table's lines or drive
# the terminal (escape sequences), and a lone surrogate cannot be printed at all.
# (A pattern, not compiled here: `re` compiles it at the first unprintable text, not at every
# command's start.)
_UNPRINTABLE = "\r\n|[\x00-\x1f\x7f-\x9f\ud800-\udfff]"
_SHOWN_AS = {"\n": "\u23ce", "\r\n": "\u23ce", "\t": "\\t", "\r": "\\r"}


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: a line break shown as ``⏎``, a tab as ``\\t``, a
    carriage return as ``\\r``, any other control character (C0, DEL, C1) or lone surrogate
    as its escape (``\\x1b``, ``\\ud800``)."""
    if text.isprintable():
        return text  # the usual case, and the fast one
    return re.sub(_UNPRINTABLE, _show, text)


def _show(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHOWN_AS:
        return _SHOWN_AS[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def text_width(text: str) -> int:
    """How many terminal columns ``text`` takes: wide (CJK) characters take two, combining
    marks none."""
    if text.isascii():
        return len(text)
    from unicodedata import combining, east_asian_width  # ~0.2 ms, paid by non-ASCII only

    return sum(0 if combining(c) else 2 if east_asian_width(c) in "WF" else 1 for c in text)


def cut_to_width(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` terminal columns."""
    if text.isascii():
        return text[:width]
    used = 0
    for i, char in enumerate(text):
        used += text_width(char)
        if used > width:
            return text[:i]
    return text


def _pad(text: str, width: int) -> str:
    return text + " " * (width - text_width(text))


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
    """``value`` as a float if it is a finite int or float (not a bool), else None (an int
    beyond a float's range too)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


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
    """Left-aligned columns separated by two spaces, as wide as their widest cell on a
    terminal; every cell and header made :func:`printable`."""
    heads = [printable(h) for h in headers]
    cells = [[printable(fmt_value(c)) for c in row] for row in rows]
    widths = [max([text_width(h)] + [text_width(r[i]) for r in cells])
              for i, h in enumerate(heads)]
    lines = ["  ".join(_pad(h, w) for h, w in zip(heads, widths, strict=True)).rstrip()]
    lines += ["  ".join(_pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip()
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
    """``key: value`` lines of a view's own fields, keys aligned; ``*_at`` times shown as dates,
    ``*_s`` as durations, mappings and lists :func:`inline`; every value made :func:`printable`."""
    keys = [printable(k) for k, _ in pairs]
    width = max((text_width(k) for k in keys), default=0)

    def cell(key: str, value: Any) -> str:
        if key.endswith("_at") and isinstance(value, int | float):
            return fmt_time(value)
        if key.endswith("_s") and isinstance(value, int | float):
            return fmt_duration(value)
        if isinstance(value, Mapping | list | tuple):  # params, devices, a last report
            return inline(value)
        return printable(fmt_value(value))

    return "\n".join(f"{_pad(k, width)}  {cell(key, v)}"
                     for k, (key, v) in zip(keys, pairs, strict=True))


def events_lines(events: Sequence[dict[str, Any]]) -> str:
    """`gpusched show`'s event log: time, trial, kind, and the reason when there is one; for
    an end a restart recorded, what its recovery did (:func:`_recovery_note`)."""
    lines = []
    for e in events:
        who = "" if e.get("trial") is None else f"{e['experiment_id']}/{e['trial']}"
        data = e.get("data") or {}
        said = data.get("reason") or data.get("state") or ""
        if note := _recovery_note(data):
            said = f"{said} {note}" if said else note
        lines.append(printable(f"  {fmt_time(e['t'])}  {who:<8} {e['kind']}  {said}".rstrip()))
    return "\n".join(["events:", *lines]) if lines else "events: -"


def _recovery_note(data: Mapping[str, Any]) -> str:
    """What a restart did for a trial it found cut off by a crash, as its event's data has it
    (``trial_interrupted``, or the ``trial_ended`` of an attempt it concluded):
    ``(stopped pids 21670, 21671; 151 reports recovered)``, leaving out what it did not do;
    ``""`` for any other event (none has these fields) and for a restart that did neither."""
    parts = []
    pids = [p for p in data.get("stopped_pids") or () if isinstance(p, int)]
    if pids:
        parts.append(f"stopped pid{'s' if len(pids) > 1 else ''} {', '.join(map(str, pids))}")
    recovered = data.get("reports_recovered")
    if isinstance(recovered, int) and not isinstance(recovered, bool) and recovered > 0:
        parts.append(f"{recovered} report{'s' if recovered > 1 else ''} recovered")
    return f"({'; '.join(parts)})" if parts else ""


def spec_lines(spec: Mapping[str, Any]) -> str:
    """`gpusched show EXP`'s spec: the settings as the daemon holds them (docs/json.md: canonical
    spelling, durations in seconds, memory in MiB), one ``key  value`` line each, unset ones
    (``null``, and an empty list or mapping: ``stop: {}`` sets no bound) left out: the command
    as a shell would read it, lists and mappings inline (JSON-like, strings quoted), one line
    per parameter. Control characters are shown as everywhere else (:func:`printable`)."""
    pairs = [(k, v) for k, v in spec.items()
             if v is not None and v not in ({}, []) and k != "params"]
    keys = [printable(k) for k, _ in pairs]
    width = max((text_width(k) for k in keys), default=0)
    lines = ["spec:", *(f"  {_pad(k, width)}  {_setting(key, v)}"
                        for k, (key, v) in zip(keys, pairs, strict=True))]
    if spec.get("params"):
        lines += ["  params:", *(f"    - {inline(p)}" for p in spec["params"])]
    return "\n".join(lines)


def _setting(key: str, value: Any) -> str:
    if key == "command" and isinstance(value, list):
        import shlex  # only `gpusched show EXP` pays for it

        return printable(shlex.join(str(v) for v in value))
    return printable(value) if isinstance(value, str) else inline(value)


def inline(value: Any) -> str:
    """``value`` on one line, as JSON writes it but with strings made :func:`printable` (a
    backslash or quote of their own escaped) rather than JSON-escaped."""
    if isinstance(value, str):
        return '"' + printable(value.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{inline(str(k))}: {inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(inline(v) for v in value) + "]"
    return json.dumps(value)  # a number, true, false, null
