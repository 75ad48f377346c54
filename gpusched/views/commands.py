"""The read commands `gpusched ls` and `gpusched gpus`, and the parsers of every view command
(ls, gpus, watch, export, plot), so that cli.py only wires them in."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from gpusched import export
from gpusched.client import Client
from gpusched.errors import UsageError
from gpusched.render import print_json
from gpusched.views import query, tables, watch
from gpusched.views.gpus import device_indices, gpus_table

__all__ = ["cmd_ls", "cmd_gpus", "cmd_plot", "add_view_commands", "split_list", "select_rows"]

RECENT_S = 24 * 3600  # `ls` without --all: experiments in progress or ended this recently
AddCommand = Callable[..., argparse.ArgumentParser]


def split_list(value: str | None) -> list[str]:
    """``"a, b,c"`` -> ["a", "b", "c"]."""
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def select_rows(rows: list[dict[str, Any]], args: argparse.Namespace, what: str,
                default_sort: str) -> list[dict[str, Any]]:
    """``--filter``, then ``--sort``/``--desc``, then ``--limit``, as `tune ls` applies them."""
    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit {args.limit}: give a whole number >= 0")
    rows = query.apply_filters(rows, [query.parse_filter(f) for f in args.filter], what)
    keys = split_list(args.sort)
    if keys or args.desc:
        rows = query.sort_rows(rows, keys or [default_sort], desc=args.desc, what=what)
    return rows if args.limit is None else rows[: args.limit]


def cmd_ls(args: argparse.Namespace) -> int:
    """Experiments, or the trials of one, with chosen columns, filters, sort and limit."""
    client = Client(args.socket)
    columns = split_list(args.columns)
    if args.experiment is None:
        rows = client.experiments(include_finished=True)
        if not args.all:
            recent = time.time() - RECENT_S
            rows = [e for e in rows if e["state"] in ("queued", "running")
                    or (e["ended_at"] or 0) > recent]
        rows = select_rows(rows, args, "ls", "submitted_at")
        if args.json:
            print_json(rows)
            return 0
        query.check_columns(rows, columns, "ls --columns")
        columns = columns or tables.experiment_columns()
        print(tables.render_rows(rows, columns, trials=False))
        return 0
    exp = client.show(args.experiment)
    rows = select_rows(client.trials(exp["id"], last_report=True), args, f"ls {exp['id']}",
                       "number")
    if args.json:
        print_json(rows)
        return 0
    query.check_columns(rows, columns, "ls --columns")
    columns = columns or tables.trial_columns(rows)
    index_of = device_indices(client.gpus()) if "gpus" in columns else {}
    print(tables.render_rows(rows, columns, metric=exp["metric"], index_of=index_of))
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


def _add_query_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sort", metavar="COL[,COL]",
                   help="sort by these columns (objective, params.lr, val_loss, ...);"
                        " --sort=-COL for descending")
    p.add_argument("--desc", action="store_true", help="sort descending")
    p.add_argument("--filter", action="append", default=[], metavar="'COL OP VALUE'",
                   help="keep rows where this holds, e.g. 'val_accuracy > 0.9' or"
                        " 'state == running' (OP: == != < <= > >=; repeat to AND)")
    p.add_argument("--columns", metavar="COL[,COL]",
                   help="the columns to show, e.g. id,state,params.lr,val_loss,gpus,why")
    p.add_argument("--limit", type=int, metavar="N", help="show at most N rows")


def add_view_commands(sub: Any, add: AddCommand) -> None:
    """Register ls, gpus, watch, export and plot; ``add`` is cli.py's parser helper."""
    p = add(sub, "ls", cmd_ls, "list experiments, or the trials of one")
    p.add_argument("experiment", nargs="?")
    p.add_argument("--all", action="store_true", help="include experiments that ended long ago")
    _add_query_flags(p)
    add(sub, "gpus", cmd_gpus, "devices, their state and who holds them")
    p = add(sub, "watch", watch.cmd_watch, "a live table of an experiment, until it ends",
            json_flag=False)
    p.add_argument("experiment", nargs="?", help="default: the newest one in progress")
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                   help="refresh every this many seconds (default 2)")
    p = add(sub, "export", export.cmd_export, "an experiment's trials as CSV, JSON or"
            " TensorBoard HParams", json_flag=False)
    p.add_argument("experiment")
    p.add_argument("--format", choices=["csv", "json", "tensorboard"], default="csv")
    p.add_argument("-o", "--out", metavar="FILE|DIR",
                   help="where to write (default: stdout; a folder for tensorboard)")
    p.add_argument("--reports", action="store_true",
                   help="every report: one CSV row per report, or `reports` per trial in JSON")
    p = add(sub, "plot", cmd_plot, "learning curves and parallel coordinates as PNG files",
            json_flag=False)
    p.add_argument("experiment")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for the PNGs (default .)")
    p.add_argument("--metric", help="the metric to plot (default: the experiment's)")


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw the experiment's PNGs (matplotlib, the `plot` extra, is imported only here)."""
    from gpusched import plot

    for path in plot.plot_experiment(Client(args.socket), args.experiment, args.out,
                                     metric=args.metric):
        print(path)
    return 0
