"""`gpusched export`: an experiment's trials as CSV or JSON, or as TensorBoard HParams runs.

CSV has one row per trial (``--reports``: one per report), with the same column names as
``gpusched ls --columns``: ``number``, ``id``, ``state``, ``objective``, ``params.NAME``, the
search's ``budget``, ``continues`` and ``point``, ``last_report.NAME``, the times, ``gpus``
(UUIDs, space-separated), ``attempts``. A text cell
(or header) that a spreadsheet would run as a formula, one starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return and not a number, is written with a ``'`` before it. JSON is
``{"experiment": <show view>, "trials": [<trial view + last_report (+ history)>]}``, exact.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gpusched.client import Client
from gpusched.errors import UsageError
from gpusched.render import union_keys

__all__ = ["cmd_export", "trial_rows", "report_rows", "to_csv", "collect"]

_FIXED = ("number", "id", "state", "objective")
_SEARCH = ("budget", "continues", "point")  # where the trial's params came from (docs/json.md)
_TIMES = ("created_at", "started_at", "ended_at", "duration_s")
_TAIL = ("gpus", "attempts", "reports", "exit_code", "exit_signal", "reason")


def trial_rows(trials: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per trial (views with ``last_report``)."""
    params, last = union_keys(trials, "params"), union_keys(trials, "last_report")
    out = []
    for t in trials:
        row: dict[str, Any] = {k: t.get(k) for k in _FIXED}
        row.update({f"params.{p}": t["params"].get(p) for p in params})
        row.update({k: t.get(k) for k in _SEARCH})
        report = t.get("last_report") or {}
        row.update({f"last_report.{m}": report.get(m) for m in last})
        row.update({k: t.get(k) for k in _TIMES})
        row.update({k: t.get(k) for k in _TAIL})
        row["gpus"] = " ".join(t.get("devices") or [])
        out.append(row)
    return out


def report_rows(trials: Sequence[Mapping[str, Any]],
                reports: Mapping[int, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One flat row per stored report: the trial, its params, then the report's fields."""
    params = union_keys(trials, "params")
    keys: list[str] = []
    for rows in reports.values():
        for r in rows:
            keys += [k for k in r if k not in keys]
    out = []
    for t in trials:
        for r in reports.get(t["number"], []):
            row: dict[str, Any] = {"number": t["number"], "id": t["id"], "state": t["state"]}
            row.update({f"params.{p}": t["params"].get(p) for p in params})
            row.update({k: r.get(k) for k in keys})
            out.append(row)
    return out


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV text (a header line, then the rows; nothing is written as ''). Text that a
    spreadsheet would take for a formula gets a ``'`` before it (:func:`_defused`)."""
    buf = io.StringIO()
    fields = list(rows[0]) if rows else list(_FIXED)
    writer = csv.writer(buf, lineterminator="\n")
    # Python 3.11's writer quotes a cell holding "\n" but not one holding a lone "\r", which
    # readers take for a line break: a row with one is written with every cell quoted.
    quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for cells in [[_defused(f) for f in fields],
                  *([_cell(row.get(f)) for f in fields] for row in rows)]:
        has_cr = any(isinstance(c, str) and "\r" in c for c in cells)
        (quoted if has_cr else writer).writerow(cells)
    return buf.getvalue()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _defused(text: str) -> str:
    # A trial's text (a reason, a reported string, a key) must not run in whoever opens the
    # CSV (OWASP's CSV injection): a text cell starting like a formula is quoted with `'`.
    # Numbers written as text (`-0.5`, `-inf`) are left as they are.
    if not text.startswith(_FORMULA_START):
        return text
    try:
        float(text)
    except ValueError:
        return "'" + text
    return text


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return _defused(value)
    return value


def collect(client: Client, experiment: str, *, reports: bool) -> tuple[
        dict[str, Any], list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    """The experiment's `show` view, its trials (with last reports) and, when asked, every
    report by trial number."""
    exp = client.show(experiment)
    trials = client.trials(exp["id"], last_report=True)
    by_number = ({r["number"]: r["reports"] for r in client.reports(exp["id"])}
                 if reports else {})
    return exp, trials, by_number


def _write(text: str, out: str | None) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate a trial reported: UTF-8 cannot hold it
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if out is None or out == "-":
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(out, file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    """`gpusched export EXP --format csv|json|tensorboard [-o FILE|DIR] [--reports]`."""
    if args.format == "tensorboard":
        from gpusched.tb_hparams import write_hparams

        if not args.out:
            raise UsageError("--format tensorboard writes a folder: give it with --out DIR,"
                             " then `tensorboard --logdir DIR`")
        folder = Path(args.out)
        if any(folder.glob("events.out.tfevents.*")) or any(
                folder.glob("trial-*/events.out.tfevents.*")):
            # TensorBoard would read the old runs and the new ones side by side.
            raise UsageError(f"{folder} already holds a TensorBoard export: remove it or"
                             " choose another --out")
        exp, trials, by_number = collect(Client(args.socket), args.experiment, reports=True)
        try:  # all or nothing: a failure leaves the folder as it was, to try again
            paths = write_hparams(folder, exp, trials, by_number)
        except OSError as exc:
            raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        except (ValueError, ArithmeticError) as exc:  # the encoder takes any number: a bug
            raise UsageError(f"cannot export {exp['id']} as TensorBoard events ({exc});"
                             f" nothing was written to {args.out}") from None
        print(f"{len(paths)} event files under {args.out}: tensorboard --logdir {args.out}")
        return 0
    exp, trials, by_number = collect(Client(args.socket), args.experiment, reports=args.reports)
    if args.format == "json":
        if args.reports:
            for t in trials:
                t["history"] = by_number.get(t["number"], [])
        _write(json.dumps({"experiment": exp, "trials": trials}, indent=2) + "\n", args.out)
    else:
        rows = report_rows(trials, by_number) if args.reports else trial_rows(trials)
        _write(to_csv(rows), args.out)
    return 0
