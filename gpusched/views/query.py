"""Columns, filters and sorting over the rows of the read commands, as Ray Tune's `tune ls`.

A row is a view from the daemon (a trial or an experiment, docs/json.md). A column is named
by a key of the view (``state``, ``objective``), a dotted path into it (``params.lr``,
``last_report.val_loss``, ``trials.running``), an alias (``gpus``, ``iter``), or a bare
hyperparameter or metric name (``lr``, ``val_loss``), looked up in that order. The same names
work in ``--columns``, ``--sort`` and ``--filter``, and in exports.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpusched.errors import UsageError

__all__ = ["lookup", "Filter", "parse_filter", "apply_filters", "sort_rows", "check_columns",
           "ALIASES", "MISSING", "COMPUTED"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: What :func:`lookup` returns for a column a row does not have.
MISSING: Any = _Missing()

#: Short names for common columns.
ALIASES: Mapping[str, str] = {
    "trial": "id", "iter": "last_report.training_iteration", "tries": "attempts",
    "time": "duration_s", "waiting": "waiting.message", "wait": "waiting.code",
}
_BARE_IN = ("params", "last_report")  # where a bare name is looked for after the view's keys


def _path(row: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if not isinstance(row, Mapping) or part not in row:
            return MISSING
        row = row[part]
    return row


def lookup(row: Mapping[str, Any], column: str) -> Any:
    """The value of ``column`` in ``row``; :data:`MISSING` where it has none."""
    column = ALIASES.get(column, column)
    if column == "gpus":
        return row.get("gpus", row.get("devices", MISSING))
    if column in row:
        return row[column]
    value = _path(row, column.split("."))
    if value is not MISSING or "." in column:
        return value
    for where in _BARE_IN:
        value = _path(row, [where, column])
        if value is not MISSING:
            return value
    return MISSING


#: Columns the tables compute rather than look up (see ``tables.py``).
COMPUTED = frozenset({"why"})


def check_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], what: str) -> None:
    """Refuse a column that no row has (a typo), naming the ones there are."""
    if not rows:
        return
    for column in columns:
        if column not in COMPUTED and all(lookup(r, column) is MISSING for r in rows):
            known = sorted({k for r in rows for k in r if k not in _BARE_IN}
                           | {f"{w}.{k}" for r in rows for w in _BARE_IN
                              for k in (r.get(w) or {})})
            raise UsageError(f"{what}: no column '{column}'; there are: {', '.join(known)}")


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge,
    "<": operator.lt, ">": operator.gt,
}
_FILTER = re.compile(
    r"^\s*(?P<col>[^\s=!<>]+)\s*(?P<op>==|!=|<=|>=|<|>)\s*(?P<value>[^\s=!<>].*?)?\s*$")


@dataclass(frozen=True)
class Filter:
    """``COLUMN OP VALUE``, e.g. ``val_accuracy > 0.9`` or ``state == running``."""

    column: str
    op: str
    value: Any
    text: str

    def matches(self, row: Mapping[str, Any]) -> bool:
        """True when the row's value compares true. A missing or null value, or one of
        another kind than ``value`` (a word against a number), never matches."""
        have = lookup(row, self.column)
        if have is MISSING or have is None:
            return False
        want = self.value
        if isinstance(want, float):
            if isinstance(have, bool) or not isinstance(have, int | float):
                return False
            if math.isnan(have):
                return False
            return _OPS[self.op](float(have), want)
        return _OPS[self.op](_as_text(have), want)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def parse_filter(text: str) -> Filter:
    """A ``--filter`` argument, or a UsageError saying how to write one."""
    match = _FILTER.match(text)
    if match is None or not match["value"]:
        raise UsageError(f"--filter {text!r}: write COLUMN OP VALUE with OP one of"
                         " == != < <= > >=, e.g. --filter 'val_accuracy > 0.9'")
    raw = match["value"]
    value: Any
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        value = raw[1:-1]  # quoted: a word even if it looks like a number
    else:
        try:
            value = float(raw)
        except ValueError:
            value = raw
    return Filter(match["col"], match["op"], value, text)


def apply_filters(rows: Sequence[dict[str, Any]], filters: Sequence[Filter],
                  what: str) -> list[dict[str, Any]]:
    """The rows every filter matches (filters are ANDed, as repeated `tune ls --filter`)."""
    check_columns(rows, [f.column for f in filters], f"{what} --filter")
    return [r for r in rows if all(f.matches(r) for f in filters)]


def _key(value: Any) -> tuple[int, Any]:
    # Missing and null sort last; numbers before words, so a mixed column still sorts.
    if value is MISSING or value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, _as_text(value))


def sort_rows(rows: Sequence[dict[str, Any]], keys: Sequence[str], *, desc: bool = False,
              what: str = "ls") -> list[dict[str, Any]]:
    """Rows sorted by ``keys`` (each may start with ``-`` for descending; ``desc`` flips
    all). Missing values go last either way."""
    out = list(rows)
    check_columns(out, [k.lstrip("-") for k in keys], f"{what} --sort")
    for key in reversed(keys):  # stable sorts, last key first: the first key decides
        name, reverse = key.lstrip("-"), key.startswith("-") != desc
        keyed = [(_key(lookup(r, name)), r) for r in out]
        present = [(k, r) for k, r in keyed if k[0] < 2]
        present.sort(key=operator.itemgetter(0), reverse=reverse)
        out = [r for _, r in present] + [r for k, r in keyed if k[0] == 2]
    return out
