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
lists), nothing for a CPU-only trial; ``devices`` holds the UUIDs. ``time`` is a trial's time as
the tables show it (:func:`trial_time`).

A name is checked (:func:`check_columns`) once, against every row of the view before any filter
or limit and against the fields the view always has (docs/json.md), with an experiment's
declared hyperparameters and metric: the same command is accepted or refused whatever the rows
hold at the moment.
"""

from __future__ import annotations

import math
import operator
import re
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpusched.errors import UsageError
from gpusched.models import AUTO_FILLED_FIELDS

__all__ = ["lookup", "Filter", "parse_filter", "apply_filters", "sort_rows", "check_columns",
           "gpu_label", "gpus_value", "trial_time", "ALIASES", "MISSING", "COMPUTED", "DERIVED"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: What :func:`lookup` returns for a column a row does not have.
MISSING: Any = _Missing()

#: Short names for common columns.
ALIASES: Mapping[str, str] = {
    "trial": "id", "iter": "last_report.training_iteration", "tries": "attempts",
    "waiting": "waiting.message", "wait": "waiting.code",
}
#: Columns :func:`lookup` derives from a row's fields: ``gpus`` (from ``devices``) and ``time``
#: (:func:`trial_time`).
DERIVED = ("gpus", "time")
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


def trial_time(row: Mapping[str, Any]) -> Any:
    """A trial's time, as ``ls EXP`` and ``watch`` show it (TIME, the column ``time``): its
    ``duration_s`` once it has ended; until then the time it had run at its last report (the
    ``time_total_s`` the daemon adds to each report, every attempt counted); None before its
    first report. Not the time since it started: ``watch`` appends a picture to its log each
    time one changes, and a clock would change every one. :data:`MISSING` for a row that is
    not a trial."""
    if "duration_s" not in row:
        return MISSING
    if row["duration_s"] is not None:
        return row["duration_s"]
    report = row.get("last_report")
    return report.get("time_total_s") if isinstance(report, Mapping) else None


def lookup(row: Mapping[str, Any], column: str, index_of: Mapping[str, int] | None = None) -> Any:
    """The value of ``column`` in ``row``; :data:`MISSING` where it has none. ``index_of``
    (UUID -> NVML index): ``gpus`` as the tables show it (:func:`gpus_value`); without it,
    ``gpus`` is the list of UUIDs."""
    column = ALIASES.get(column, column)
    if column == "time":
        return trial_time(row)
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

#: The keys of the two views `ls` lists (docs/json.md; tests/integration/test_cli.py holds them
#: to a real daemon's answers).
_TRIAL_KEYS = frozenset({
    "id", "experiment", "number", "state", "params", "budget", "continues", "point",
    "objective", "objective_so_far", "reason", "devices", "pid", "attempts", "exit_code",
    "exit_signal", "reports", "created_at", "started_at", "ended_at", "duration_s", "dir",
    "waiting", "last_report",
})
_EXPERIMENT_KEYS = frozenset({
    "id", "name", "state", "reason", "metric", "goal", "priority", "owner_uid", "owner", "seed",
    "max_trials", "trials", "best", "submitted_at", "started_at", "ended_at", "waiting",
    "warning_count",
})
#: The fields of the views' objects whose shape is fixed (docs/json.md), and the fields the
#: daemon adds to every report: a column into one of them (``waiting.code``, so the alias
#: ``wait``; ``best.objective``; ``trials.running``; ``iter``) is known even when every row
#: has the object null (nothing waits, nothing has reported yet). A view's other objects
#: (``params``, a report's metrics, ``best.params``) hold what each experiment names.
_NESTED: Mapping[str, tuple[str, ...]] = {
    "waiting": ("code", "message", "trials", "ahead"),
    "trials": ("total", "queued", "running", "completed", "stopped", "failed", "cancelled",
               "interrupted"),
    "best": ("trial", "objective", "params"),
    "last_report": AUTO_FILLED_FIELDS,
}
#: Names :func:`lookup` reads before a row's own keys: a row's key so named is not itself a
#: column (a hyperparameter ``iter`` is shadowed by the alias).
_SHADOWED = frozenset({*ALIASES, *COMPUTED, *DERIVED})
#: Where each view is, as a message names it (by whether it is one experiment's trials).
_VIEW_NAME = {True: "one experiment's trials", False: "the experiments list"}


def _fields(trials: bool, experiment: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A row with every field of a view, each null (the objects of ``_NESTED`` with their
    fields): what the view has whatever its rows hold now. For one experiment's trials,
    ``experiment`` (its `show` view) adds its metric to ``last_report`` and the
    hyperparameters its file declares (``spec.params``, conditional ones too) to ``params``."""
    keys = _TRIAL_KEYS if trials else _EXPERIMENT_KEYS
    row: dict[str, Any] = {k: dict.fromkeys(_NESTED[k]) if k in _NESTED else None
                           for k in sorted(keys)}
    if trials and experiment is not None:
        declared = (experiment.get("spec") or {}).get("params") or ()
        row["params"] = {p["name"]: None for p in declared if isinstance(p, Mapping)}
        metric = experiment.get("metric")
        if isinstance(metric, str):
            row["last_report"][metric] = None
    return row


def _known(view: Sequence[Mapping[str, Any]], column: str) -> bool:
    """Whether ``column`` names something a row of ``view`` has (its first row: the view's
    fields, :func:`_fields`)."""
    return column in COMPUTED or any(lookup(r, column) is not MISSING for r in view)


def check_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], what: str, *,
                  trials: bool, experiment: Mapping[str, Any] | None = None) -> None:
    """Refuse a column the view does not have (a typo, or a column of the other view of `ls`),
    saying where it is or suggesting the closest name, and naming the ones there are.

    ``rows``: every row of the view, before any filter or limit, so that whether a name is
    refused does not hang on what a filter left; ``trials``: whether they are one experiment's
    trials (else experiments); ``experiment``: that experiment (its `show` view), whose metric
    and declared hyperparameters are columns before any trial has them. The view's own fields
    (docs/json.md) are known even with no row, or where no row has a value (nothing waits,
    nothing has reported): a row without one sorts last and matches no filter."""
    view = [_fields(trials, experiment), *rows]
    for column in columns:
        if not _known(view, column):
            raise UsageError(_unknown_column(view, column, what, trials))


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    """The dotted paths into ``value``: each key of a mapping, then the paths under it."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield f"{prefix}{key}"
            yield from _paths(inner, f"{prefix}{key}.")


def _names(view: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str], list[str]]:
    """The columns ``view`` answers to, as a refusal lists them and suggests from them: the
    paths into its rows (``params`` and ``last_report`` through their keys alone), the short
    names it takes (aliases, derived and computed columns), and the bare hyperparameter and
    metric names that neither shadows."""
    paths = sorted({p for row in view for p in _paths(row)} - set(_BARE_IN) - _SHADOWED)
    short = sorted(n for n in _SHADOWED if _known(view, n))
    inner = {k for row in view for w in _BARE_IN if isinstance(row.get(w), Mapping)
             for k in row[w]}
    bare = sorted(inner - set(paths) - _SHADOWED)
    return paths, short, bare


def _unknown_column(view: Sequence[Mapping[str, Any]], column: str, what: str,
                    trials: bool) -> str:
    """The message for ``column``, which ``view`` does not have: where it is when it is a
    column of the other view, else the closest name there is, here or there; then the
    columns there are."""
    paths, short, bare = _names(view)
    said = _other_view(column, what, trials)
    if said is None:
        guess = _closest(column, [n for n in (*paths, *short, *bare) if n != column])
        said = f" (did you mean {guess!r}?)" if guess else _elsewhere(column, what, trials)
    there = f"there are: {', '.join(paths)}; the short names {', '.join(short)}"
    if bare:
        there += f"; the bare hyperparameter and metric names {', '.join(bare)}"
    return f"{what}: no column '{column}'{said}; {there}"


def _closest(word: str, names: Sequence[str]) -> str | None:
    """The name of ``names`` closest to ``word``: the same but for case, else difflib's
    (as :func:`gpusched._spec_check.did_you_mean`); None when none is close."""
    import difflib  # paid only when a name is wrong

    by_case = {n.lower(): n for n in names}
    if word.lower() in by_case:
        return by_case[word.lower()]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return close[0] if close else None


def _command(column: str, what: str, trials: bool) -> str:
    """The `ls` command of the other view that names ``column`` with the option that ``what``
    ends with (``ls --sort``)."""
    option = what.rsplit(" ", 1)[-1]
    if option == "--filter":
        named = f"--filter {shlex.quote(f'{column} OP VALUE')}"
    else:
        named = f"{option if option.startswith('--') else '--columns'} {shlex.quote(column)}"
    return f"gpusched ls {named}" if trials else f"gpusched ls EXP {named}"


def _other_view(column: str, what: str, trials: bool) -> str | None:
    """`` in the experiments list: it is a column of one experiment's trials (gpusched ls EXP
    --columns tries)`` when ``column`` is a field of the other view of `ls` (the experiments
    list or one experiment's trials); else None. Only the fields every row of that view has
    count: which hyperparameters and metrics an experiment has is not known here, so
    ``params.lrr`` is not sent to a command that would refuse it too."""
    if not _known([_fields(not trials)], column):
        return None
    return (f" in {_VIEW_NAME[trials]}: it is a column of {_VIEW_NAME[not trials]}"
            f" ({_command(column, what, trials)})")


def _elsewhere(column: str, what: str, trials: bool) -> str:
    """For a hyperparameter or metric asked of the experiments list: where those are (which
    ones an experiment has is not known here); for a name close to a field of the other view:
    that field and where it is; else ``""``."""
    if not trials and column.partition(".")[0] in _BARE_IN:
        return (" in the experiments list: hyperparameters (params.NAME) and metrics"
                " (last_report.NAME) are columns of one experiment's trials (gpusched ls EXP)")
    paths, short, _ = _names([_fields(not trials)])
    guess = _closest(column, [*paths, *short])
    if guess is None:
        return ""
    return (f" in {_VIEW_NAME[trials]} (did you mean {guess!r}, a column of"
            f" {_VIEW_NAME[not trials]}? {_command(guess, what, trials)})")


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
    Their columns are not checked here: :func:`check_columns` checks them first, against
    every row. ``index_of``: as in :func:`lookup`."""
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
              index_of: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Rows sorted by ``keys`` (each may start with ``-`` for descending; ``desc`` flips
    all). In a column that mixes them, numbers come before words, and missing (or null, or
    NaN) values last, whichever the direction. The keys are not checked here
    (:func:`check_columns`). ``index_of``: as in :func:`lookup`."""
    out = list(rows)
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
