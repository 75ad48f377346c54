"""The tables of `gpusched ls`: which columns by default, their headers and their cells.

Any column :func:`gpusched.views.query.lookup` understands can be shown; a few have a header
and a cell of their own (the objective under the metric's name, a trial's objective so far
marked ``*`` until it ends, GPUs as NVML indices, the view's own times as ages and durations,
the trial counts and best of an experiment in a few words).
Hyperparameters and metrics are shown as they are, whatever their names (a ``warmup_s`` is a
number, not a duration). Every cell is made printable (:func:`gpusched.render.printable`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gpusched.render import (
    finite_number,
    fmt_age,
    fmt_duration,
    fmt_value,
    printable,
    table,
    union_keys,
)
from gpusched.views.query import ALIASES, MISSING, gpu_label, lookup

__all__ = ["trial_columns", "experiment_columns", "render_rows", "gpu_label", "EXPERIMENT_DEFAULT",
           "why", "SO_FAR_MARK", "so_far_note", "warning_notes"]

EXPERIMENT_DEFAULT = ("id", "name", "owner", "state", "trials", "metric", "best", "submitted_at",
                      "why")
_TRIAL_HEAD = ("id", "state", "objective")
_TRIAL_TAIL = ("iter", "attempts", "gpus", "time", "why")
_SEARCH_KEYS = ("budget", "continues")
_HEADERS = {"id": "ID", "submitted_at": "SUBMITTED", "duration_s": "TIME", "attempts": "TRIES",
            "why": "WHY", "last_report.time_total_s": "TIME", "time": "TIME"}
#: What follows a trial's objective so far (``objective_so_far``) in the objective column: it
#: is not its result yet (see :func:`so_far_note`).
SO_FAR_MARK = "*"
# The views' own times (docs/json.md), shown as ages and durations; a hyperparameter or metric
# whose name ends in `_at` or `_s` is shown as the number it is.
_VIEW_TIMES = {"created_at": fmt_age, "started_at": fmt_age, "ended_at": fmt_age,
               "submitted_at": fmt_age, "duration_s": fmt_duration}
# ... and the times the daemon adds to every report (Ray Tune's auto-filled fields).
_REPORT_TIMES = {"time_total_s": fmt_duration, "time_this_iter_s": fmt_duration,
                 "timestamp": fmt_age}


# The keys of the trial and experiment views (docs/json.md): shown as upper-case headers.
_VIEW_KEYS = frozenset({
    "id", "experiment", "number", "state", "params", "objective", "objective_so_far", "reason",
    "devices", "pid", "attempts", "exit_code", "exit_signal", "reports", "created_at",
    "started_at", "ended_at", "duration_s", "dir", "waiting", "last_report", "name", "metric",
    "goal", "priority", "owner_uid", "owner", "seed", "max_trials", "trials", "best",
    "submitted_at", "gpus", "why", "budget", "continues", "point", "warning_count",
})


def trial_columns(trials: Sequence[Mapping[str, Any]], *, head: Sequence[str] = _TRIAL_HEAD,
                  tail: Sequence[str] = _TRIAL_TAIL) -> list[str]:
    """The columns of a trials table: one per hyperparameter between ``head`` and ``tail``
    (by default: id, state and objective; then iter, tries, GPUs, time and why: the time as
    :func:`~gpusched.views.query.trial_time` has it, so a running trial's too), and the
    search's ``budget`` and ``continues`` where some trial has one (hyperband)."""
    extra = [k for k in _SEARCH_KEYS if any(t.get(k) is not None for t in trials)]
    return [*head, *(f"params.{n}" for n in union_keys(trials, "params")), *extra, *tail]


def experiment_columns() -> list[str]:
    """The default columns of the experiments table."""
    return list(EXPERIMENT_DEFAULT)


def why(row: Mapping[str, Any]) -> str:
    """Why a row is where it is: what it waits for, else why it ended."""
    waiting = row.get("waiting")
    if waiting:
        return f"waiting: {waiting['message']}"
    return str(row.get("reason") or "")


def _header(column: str, metric: str, trials: bool) -> str:
    if column == "id":
        return "TRIAL" if trials else "ID"
    if column == "objective" and trials:
        return metric.upper()
    if column in _HEADERS:
        return _HEADERS[column]
    if column.startswith(("params.", "last_report.")):
        return column.split(".", 1)[1]  # hyperparameters and metrics keep their own names
    if column.split(".", 1)[0] in _VIEW_KEYS or column in ALIASES:
        return column.upper()  # the view's own fields (`trials.running`) and the aliases
    return column  # a bare hyperparameter or metric name, as the user wrote it


def _trials_cell(row: Mapping[str, Any]) -> str:
    """An experiment's trials in a few words: ``2 running, 1 queued, 4 done, 1 failed / 30``
    (done: completed or stopped), with ``, 3 cancelled`` when some were; without ``/ N`` when
    its file sets no ``max_trials``: the search's default decides how many run, a number the
    view does not hold.

    Queued: what its wait reason counts, the trials waiting to run again (interrupted ones,
    retries) and those still to be suggested; an interrupted trial is not counted apart, as it
    is among them (or, in an experiment that is ending, about to be cancelled)."""
    t = row["trials"]
    done = t["completed"] + t["stopped"]
    waiting = (row.get("waiting") or {}).get("trials", 0)
    queued = f", {waiting} queued" if waiting else ""
    # Else a cancelled experiment's counts add up to less than it ran, with no word of why.
    cancelled = f", {t['cancelled']} cancelled" if t.get("cancelled") else ""
    cap = row.get("max_trials")
    of = f" / {cap}" if cap is not None else ""
    return f"{t['running']} running{queued}, {done} done, {t['failed']} failed{cancelled}{of}"


def _experiment_cell(column: str, row: Mapping[str, Any]) -> Any:
    if column == "trials" and isinstance(row.get("trials"), Mapping):
        return _trials_cell(row)
    if column == "metric" and "goal" in row:
        return f"{row['metric']} {'max' if row['goal'] == 'maximize' else 'min'}"
    if column == "best" and "best" in row:
        best = row["best"]
        return "-" if best is None else f"{fmt_value(best['objective'])} ({best['trial']})"
    return MISSING


def _so_far(row: Mapping[str, Any]) -> float | None:
    """A trial's objective so far, where it has no result yet but has one so far."""
    if row.get("objective") is not None:
        return None
    return finite_number(row.get("objective_so_far"))


def so_far_note(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                exp: Mapping[str, Any]) -> str | None:
    """The footnote of a trials table whose objective column marks a value so far
    (:data:`SO_FAR_MARK`), saying what that value is; None when no cell is marked. ``exp``:
    the experiment (its ``metric``, ``goal`` and, in a `show` view, ``spec.objective``)."""
    if "objective" not in columns or all(_so_far(r) is None for r in rows):
        return None
    metric, rule = exp.get("metric", "objective"), (exp.get("spec") or {}).get("objective")
    if rule == "best":
        highest = "highest" if exp.get("goal") == "maximize" else "lowest"
        which = f"{highest} {metric} so far (objective: best)"
    elif rule == "last":  # a NaN (or a report without the metric) does not count
        which = f"last finite {metric} so far (objective: last)"
    else:  # a view without its spec
        which = f"{metric} so far"
    # The metric's name is anyone's text: made printable, as every cell is.
    return printable(f"{SO_FAR_MARK} not final: the trial's {which}; its result when it ends")


def warning_notes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The lines under the experiments table for those of ``rows`` with warning events
    (``warning_count``): ``e8 has 1 warning: `gpusched show e8` shows it``; none for the
    others (a view from an older daemon has no count)."""
    notes = []
    for row in rows:
        count = row.get("warning_count")
        if isinstance(count, int) and count > 0:
            what, them = ("1 warning", "it") if count == 1 else (f"{count} warnings", "them")
            notes.append(printable(
                f"{row['id']} has {what}: `gpusched show {row['id']}` shows {them}"))
    return notes


def _time_format(column: str, row: Mapping[str, Any]) -> Callable[[float], str] | None:
    """How ``column`` is shown when it is one of the view's own times; else None."""
    if column == "time":  # a trial's time (lookup reads it before any hyperparameter `time`)
        return fmt_duration
    name = ALIASES.get(column, column)
    if name in row:
        return _VIEW_TIMES.get(name)
    where, dot, rest = name.partition(".")
    if not dot:  # a bare name: a hyperparameter's if there is one (lookup's order)
        if name in (row.get("params") or {}):
            return None
        where, rest = "last_report", name
    return _REPORT_TIMES.get(rest) if where == "last_report" else None


def _cell(column: str, row: Mapping[str, Any], index_of: Mapping[str, int],
          trials: bool) -> str:
    if column == "why":
        return why(row)
    if not trials and (special := _experiment_cell(column, row)) is not MISSING:
        return str(special)
    if trials and column == "objective" and (so_far := _so_far(row)) is not None:
        return fmt_value(so_far) + SO_FAR_MARK
    value = lookup(row, column, index_of)
    if value is MISSING or value is None:
        return "-"
    if (number := finite_number(value)) is not None and (
            shown := _time_format(column, row)) is not None:
        return shown(number)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return fmt_value(value)


def render_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, metric: str = "",
                trials: bool = True, index_of: Mapping[str, int] | None = None,
                cut: Callable[[str], str] | None = None) -> str:
    """``rows`` as a table of ``columns``. ``cut`` shortens each cell (the live view)."""
    index_of = index_of or {}
    clip = cut or (lambda s: s)
    headers = [_header(c, metric, trials) for c in columns]
    cells = [[clip(_cell(c, r, index_of, trials)) for c in columns] for r in rows]
    return table(headers, cells)
