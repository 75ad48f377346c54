"""The read commands `gpusched ls`, `gpusched gpus` and `gpusched plot`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any

from gpusched.client import Client
from gpusched.errors import UsageError
from gpusched.render import print_json
from gpusched.views import query, tables
from gpusched.views.gpus import device_indices, gpus_table

__all__ = ["cmd_ls", "cmd_gpus", "cmd_plot", "split_list", "check_names", "select_rows"]

RECENT_S = 24 * 3600  # `ls` without --all: experiments in progress or ended this recently


def split_list(value: str | None) -> list[str]:
    """``"a, b,c"`` -> ["a", "b", "c"]."""
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def check_names(rows: list[dict[str, Any]], args: argparse.Namespace, what: str, *,
                trials: bool, experiment: Mapping[str, Any] | None = None) -> None:
    """Refuse a column that ``--filter``, ``--sort`` or (for a table) ``--columns`` names and
    the view does not have, checked once against ``rows``, all of them before any filter or
    limit, and the view's own fields (:func:`gpusched.views.query.check_columns`): the same
    command is refused or not whatever a filter leaves. ``experiment``: for one experiment's
    trials, its `show` view (its metric and hyperparameters are columns before any trial)."""
    named = [("--filter", [query.parse_filter(f).column for f in args.filter]),
             ("--sort", [k.lstrip("-") for k in split_list(args.sort)]),
             ("--columns", [] if args.json else split_list(args.columns))]
    for option, columns in named:
        where = "ls" if option == "--columns" else what  # `ls --columns`, `ls e3 --sort`
        query.check_columns(rows, columns, f"{where} {option}", trials=trials,
                            experiment=experiment)


def select_rows(rows: list[dict[str, Any]], args: argparse.Namespace, what: str,
                default_sort: str, *, index_of: Mapping[str, int] | None = None
                ) -> list[dict[str, Any]]:
    """``--filter``, then ``--sort``/``--desc``, then ``--limit``, as `tune ls` applies them,
    to rows whose column names :func:`check_names` has checked. ``index_of`` (UUID -> NVML
    index): ``gpus`` compares the indices the table shows."""
    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit {args.limit}: give a whole number >= 0")
    rows = query.apply_filters(rows, [query.parse_filter(f) for f in args.filter], what,
                               index_of=index_of)
    keys = split_list(args.sort)
    if keys or args.desc:
        rows = query.sort_rows(rows, keys or [default_sort], desc=args.desc, index_of=index_of)
    return rows if args.limit is None else rows[: args.limit]


def _names_gpus(args: argparse.Namespace, columns: list[str]) -> bool:
    """Whether the trials table or its filters and sort keys show or compare ``gpus``."""
    keys = [k.lstrip("-") for k in split_list(args.sort)]
    filters = [query.parse_filter(f).column for f in args.filter]
    return "gpus" in keys + filters or (not args.json and (not columns or "gpus" in columns))


def cmd_ls(args: argparse.Namespace) -> int:
    """Experiments, or the trials of one, with chosen columns, filters, sort and limit."""
    client = Client(args.socket)
    columns = split_list(args.columns)
    if args.experiment is None:
        rows = client.experiments(include_finished=True)
        check_names(rows, args, "ls", trials=False)  # every experiment, even those not shown
        if not args.all:
            recent = time.time() - RECENT_S
            rows = [e for e in rows if e["state"] in ("queued", "running")
                    or (e["ended_at"] or 0) > recent]
        rows = select_rows(rows, args, "ls", "submitted_at")
        if args.json:
            print_json(rows)
            return 0
        columns = columns or tables.experiment_columns()
        print(tables.render_rows(rows, columns, trials=False))
        notes = tables.warning_notes(rows)
        if notes:
            print("\n" + "\n".join(notes))
        return 0
    exp = client.show(args.experiment)
    index_of = device_indices(client.gpus()) if _names_gpus(args, columns) else {}
    rows = client.trials(exp["id"], last_report=True)
    check_names(rows, args, f"ls {exp['id']}", trials=True, experiment=exp)
    rows = select_rows(rows, args, f"ls {exp['id']}", "number", index_of=index_of)
    if args.json:
        print_json(rows)
        return 0
    columns = columns or tables.trial_columns(rows)
    print(tables.render_rows(rows, columns, metric=exp["metric"], index_of=index_of))
    note = tables.so_far_note(rows, columns, exp)
    if note:
        print(f"\n{note}")
    waiting = exp.get("waiting")
    if waiting:
        print(f"\n{waiting['trials']} trial(s) of {exp['id']} waiting: {waiting['message']}")
    return 0


def cmd_gpus(args: argparse.Namespace) -> int:
    """Devices, their state, who holds them (and whose experiment), foreign processes."""
    client = Client(args.socket)
    answer = client.gpus()
    if args.json:
        print_json(answer)
        return 0
    held = any(d["trials"] or d.get("releasing") for d in answer["devices"])
    owners = ({e["id"]: e.get("owner") or "?" for e in client.experiments()} if held else {})
    print(gpus_table(answer, owners))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw the experiment's PNGs (matplotlib, the `plot` extra, is imported only here)."""
    from gpusched import plot

    for path in plot.plot_experiment(Client(args.socket), args.experiment, args.out,
                                     metric=args.metric):
        print(path)
    return 0
