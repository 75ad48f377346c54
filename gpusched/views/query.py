"""Columns, filters and sorting over the rows of the read commands, as Ray Tune's `tune ls`.

A row is a view from the daemon (a trial or an experiment, docs/json.md). A column is named
by a key of the view (``state``, ``objective``), a dotted path into it (``params.lr``,
``last_report.val_loss``, ``trials.running``), an alias (``gpus``, ``iter``), or a bare
hyperparameter or metric name (``lr``, ``val_loss``), looked up in that order. Names may hold
dots of their own (``model.lr``, Hydra's style): along a path the longest name a mapping holds
is taken first, so ``params.model.lr`` is ``params["model.lr"]`` (and ``params["model"]["lr"]``
only where there is no ``model.lr``). The same names work in ``--columns``, ``--sort`` and
``--filter``, and in exports.

``gpus`` is what the tables show: a trial's NVML indices when the caller knows them (a number
for one GPU, text such as ``1,0`` for several, a shortened UUID for a device the daemon no longer
lists), nothing for a CPU-only trial; ``devices`` holds the UUIDs.
"""

from __future__ import annotations

import math
import operator
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpusched.errors import UsageError

__all__ = ["lookup", "Filter", "parse_filter", "apply_filters", "sort_rows", "check_columns",
           "gpu_label", "gpus_value", "ALIASES", "MISSING", "COMPUTED"]


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
    # The longest name first: a key may hold dots itself (a hyperparameter `model.lr`).
    if not parts:
        return row
    if not isinstance(row, Mapping):
        return MISSING
    for end in range(len(parts), 0, -1):
        key = ".".join(parts[:end])
        if key in row:
            value = _path(row[key], parts[end:])
            if value is not MISSING:
                return value
    return MISSING


def gpu_label(uuid: str, index_of: Mapping[str, int]) -> str:
    """A device as a person reads it: its NVML index, else a shortened UUID."""
    if uuid in index_of:
        return str(index_of[uuid])
    head, _, rest = uuid.partition("-")
    return f"{head}-{rest[:8]}" if rest else uuid


def gpus_value(uuids: Sequence[str], index_of: Mapping[str, int]) -> Any:
    """A trial's devices as its table shows them: one GPU's NVML index as a number, several
    as text (``1,0``), shortened UUIDs where the index is not known; None for no GPU."""
    if len(uuids) == 1 and uuids[0] in index_of:
        return index_of[uuids[0]]
    return ",".join(gpu_label(u, index_of) for u in uuids) or None


def lookup(row: Mapping[str, Any], column: str, index_of: Mapping[str, int] | None = None) -> Any:
    """The value of ``column`` in ``row``; :data:`MISSING` where it has none. ``index_of``
    (UUID -> NVML index): ``gpus`` as the tables show it (:func:`gpus_value`); without it,
    ``gpus`` is the list of UUIDs."""
    column = ALIASES.get(column, column)
    if column == "gpus":
        value = row.get("gpus", row.get("devices", MISSING))
        if index_of is not None and isinstance(value, list):
            return gpus_value([str(u) for u in value], index_of)
        return value
    if column in row:
        return row[column]
    value = _path(row, column.split("."))
    if value is not MISSING:
        return value
    for where in _BARE_IN:  # a bare name, dots and all: `lr`, `model.lr`
        inner = row.get(where)
        if isinstance(inner, Mapping) and column in inner:
            return inner[column]
    return MISSING


#: Columns the tables compute rather than look up (see ``tables.py``).
COMPUTED = frozenset({"why"})

#: The fields of the views' nested objects (docs/json.md), and the fields the daemon adds to
#: every report: a column into one of them (``waiting.code``, so the alias ``wait``;
#: ``best.objective``; ``iter``) is known wherever the rows have the object's key, even when
#: every row has it null (nothing waits, nothing has reported yet).
_NESTED: Mapping[str, frozenset[str]] = {
    "waiting": frozenset({"code", "message", "trials", "ahead"}),
    "best": frozenset({"trial", "objective", "params"}),
    "last_report": frozenset({"training_iteration", "time_total_s", "time_this_iter_s",
                              "timestamp"}),
}


def _known(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    """Whether ``column`` names something the rows have, or may have (see ``_NESTED``)."""
    if column in COMPUTED:
        return True
    head, dot, rest = ALIASES.get(column, column).partition(".")
    if dot and rest in _NESTED.get(head, ()) and any(head in r for r in rows):
        return True
    return any(lookup(r, column) is not MISSING for r in rows)


def check_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], what: str) -> None:
    """Refuse a column that no row has (a typo, or a column of the other view of `ls`), saying
    where it is or suggesting the closest name, and naming the ones there are. A column into
    one of the views' own objects (``wait``) is known even where no row has a value: a row
    without one sorts last and matches no filter."""
    if not rows:
        return
    for column in columns:
        if not _known(rows, column):
            raise UsageError(_unknown_column(rows, column, what))


#: The keys of the two views `ls` lists (docs/json.md): a column of the other view is named as
#: such rather than guessed at (`tries` asked of the experiments list).
_TRIAL_KEYS = frozenset({
    "id", "experiment", "number", "state", "params", "budget", "continues", "point",
    "objective", "objective_so_far", "reason", "devices", "pid", "attempts", "exit_code",
    "exit_signal", "reports", "created_at", "started_at", "ended_at", "duration_s", "dir",
    "waiting", "last_report",
})
_EXPERIMENT_KEYS = frozenset({
    "id", "name", "state", "reason", "metric", "goal", "priority", "owner_uid", "owner", "seed",
    "max_trials", "trials", "best", "submitted_at", "started_at", "ended_at", "waiting",
})
#: Names :func:`lookup` reads before a row's own keys: a row's key so named is not itself a
#: column (a hyperparameter ``iter`` is shadowed by the alias).
_SHADOWED = frozenset({*ALIASES, *COMPUTED, "gpus"})


def _unknown_column(rows: Sequence[Mapping[str, Any]], column: str, what: str) -> str:
    """The message for ``column``, which no row has: where it is when it is a column of the
    other view, else the closest name the rows answer to; then the columns there are."""
    known = sorted({k for r in rows for k in r if k not in _BARE_IN}
                   | {f"{w}.{k}" for r in rows for w in _BARE_IN for k in (r.get(w) or {})})
    said = _other_view(rows, column, what)
    if said is None:
        from gpusched._spec_check import did_you_mean  # paid only when a name is wrong

        said = did_you_mean(column, _columns(rows, known, column))
    return f"{what}: no column '{column}'{said}; there are: {', '.join(known)}"


def _columns(rows: Sequence[Mapping[str, Any]], known: Sequence[str], column: str) -> list[str]:
    """The names the rows answer to, ``column`` (refused) aside: ``known`` (their keys and
    paths), the bare names in them, and the aliases and computed columns this view has."""
    bare = sorted({k for r in rows for w in _BARE_IN for k in (r.get(w) or {})} - set(known))
    own = [n for n in (*known, *bare) if n not in _SHADOWED]
    # Aliases resolve into one view or the other (`tries` is a trial's): only this view's.
    extra = [n for n in (*ALIASES, *sorted(COMPUTED), "gpus") if _known(rows, n)]
    return [n for n in dict.fromkeys([*own, *extra]) if n != column]


def _other_view(rows: Sequence[Mapping[str, Any]], column: str, what: str) -> str | None:
    """`` in the experiments list: it is a column of one experiment's trials (gpusched ls EXP
    --columns tries)`` when ``column`` is a column of the other view of `ls` only (the
    experiments list and one experiment's trials); else None. ``what`` ends with the option
    that named it (``ls --sort``), which the command shown uses too."""
    trials = "number" in rows[0]  # only a trial view has a number
    name = ALIASES.get(column, column)
    head = "devices" if name == "gpus" else name.partition(".")[0]
    here, there = (_TRIAL_KEYS, _EXPERIMENT_KEYS) if trials else (_EXPERIMENT_KEYS, _TRIAL_KEYS)
    if head in here or head not in there:
        return None
    option = what.rsplit(" ", 1)[-1]
    if option == "--filter":
        named = f"--filter {shlex.quote(f'{column} OP VALUE')}"
    else:
        named = f"{option if option.startswith('--') else '--columns'} {shlex.quote(column)}"
    if trials:
        return (" in one experiment's trials: it is a column of the experiments list"
                f" (gpusched ls {named})")
    return (" in the experiments list: it is a column of one experiment's trials"
            f" (gpusched ls EXP {named})")


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

    def matches(self, row: Mapping[str, Any], index_of: Mapping[str, int] | None = None) -> bool:
        """True when the row's value compares true. A missing or null value, or one of
        another kind than ``value`` (a word against a number), never matches. ``index_of``:
        as in :func:`lookup`."""
        have = lookup(row, self.column, index_of)
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


def apply_filters(rows: Sequence[dict[str, Any]], filters: Sequence[Filter], what: str, *,
                  index_of: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """The rows every filter matches (filters are ANDed, as repeated `tune ls --filter`).
    ``index_of``: as in :func:`lookup`."""
    check_columns(rows, [f.column for f in filters], f"{what} --filter")
    for f in filters:
        if f.op in _ORDERS and isinstance(f.value, str) and _holds_numbers(rows, f.column):
            # `lr > abc` once gave an empty table and exit 0: every number "is" below a word.
            raise UsageError(f"{what} --filter {f.text!r}: {f.column} holds numbers, and"
                             f" {f.value!r} is not one: compare it with a number")
    return [r for r in rows if all(f.matches(r, index_of) for f in filters)]


_ORDERS = frozenset({"<", "<=", ">", ">="})


def _holds_numbers(rows: Sequence[Mapping[str, Any]], column: str) -> bool:
    """Whether some row's ``column`` is a number (not a bool)."""
    for row in rows:
        value = lookup(row, column)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True
    return False


_NUMBER, _WORD, _NONE = 0, 1, 2  # the kinds of sort keys, in the order they are shown


def _key(value: Any) -> tuple[int, Any]:
    if value is MISSING or value is None or (isinstance(value, float) and math.isnan(value)):
        return (_NONE, 0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (_NUMBER, value)
    return (_WORD, _as_text(value))


def sort_rows(rows: Sequence[dict[str, Any]], keys: Sequence[str], *, desc: bool = False,
              what: str = "ls", index_of: Mapping[str, int] | None = None
              ) -> list[dict[str, Any]]:
    """Rows sorted by ``keys`` (each may start with ``-`` for descending; ``desc`` flips
    all). In a column that mixes them, numbers come before words, and missing (or null, or
    NaN) values last, whichever the direction. ``index_of``: as in :func:`lookup`."""
    out = list(rows)
    check_columns(out, [k.lstrip("-") for k in keys], f"{what} --sort")
    for key in reversed(keys):  # stable sorts, last key first: the first key decides
        name, reverse = key.lstrip("-"), key.startswith("-") != desc
        by_kind: tuple[list[tuple[Any, dict[str, Any]]], ...] = ([], [], [])
        for row in out:
            kind, value = _key(lookup(row, name, index_of))
            by_kind[kind].append((value, row))
        for group in by_kind[:_NONE]:
            group.sort(key=operator.itemgetter(0), reverse=reverse)  # stable either way
        out = [r for group in by_kind for _, r in group]
    return out
