"""The parsers of every view command (ls, gpus, watch, export, plot), so that cli.py only wires
them in. Each command's module is imported only when that command runs: `submit` should not pay
for the tables of `ls`."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

TYPE_CHECKING = False  # typing is imported for the type checker only: the CLI starts faster
if TYPE_CHECKING:
    from typing import Any

__all__ = ["VIEW_COMMANDS", "lazy_command"]

AddCommand = Callable[..., argparse.ArgumentParser]


def lazy_command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The command ``module.name``, imported when it runs."""
    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(module), name)(args))

    run.__doc__ = f"`{module}.{name}`, imported when it runs."
    return run


_LISTING = "gpusched.views.listing"


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


def _add_ls(sub: Any, add: AddCommand) -> None:
    p = add(sub, "ls", lazy_command(_LISTING, "cmd_ls"), "list experiments, or the trials of one")
    p.add_argument("experiment", nargs="?")
    p.add_argument("--all", action="store_true", help="include experiments that ended long ago")
    _add_query_flags(p)


def _add_gpus(sub: Any, add: AddCommand) -> None:
    add(sub, "gpus", lazy_command(_LISTING, "cmd_gpus"), "devices, their state and who holds them")


def _add_watch(sub: Any, add: AddCommand) -> None:
    p = add(sub, "watch", lazy_command("gpusched.views.watch", "cmd_watch"),
            "a live table of an experiment, until it ends", json_flag=False)
    p.add_argument("experiment", nargs="?",
                   help="default: your newest one in progress, else anyone's")
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                   help="refresh every this many seconds (default 2)")


def _add_export(sub: Any, add: AddCommand) -> None:
    p = add(sub, "export", lazy_command("gpusched.export", "cmd_export"),
            "an experiment's trials as CSV, JSON or TensorBoard HParams", json_flag=False)
    p.add_argument("experiment")
    p.add_argument("--format", choices=["csv", "json", "tensorboard"], default="csv")
    p.add_argument("-o", "--out", metavar="FILE|DIR",
                   help="where to write (default: stdout; a folder for tensorboard)")
    p.add_argument("--reports", action="store_true",
                   help="every report: one CSV row per report, or each trial's reports in order"
                        " as its `history` in JSON (`reports` stays their count)")


def _add_plot(sub: Any, add: AddCommand) -> None:
    p = add(sub, "plot", lazy_command(_LISTING, "cmd_plot"),
            "learning curves and parallel coordinates as PNG files", json_flag=False)
    p.add_argument("experiment")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for the PNGs (default .)")
    p.add_argument("--metric", help="the metric to plot (default: the experiment's)")


# Each view command's parser, by name, in the order `gpusched --help` lists them; each one is
# called with cli.py's subparsers and its parser helper (see cli.build_parser).
VIEW_COMMANDS: dict[str, Callable[[Any, AddCommand], None]] = {
    "ls": _add_ls, "gpus": _add_gpus, "watch": _add_watch, "export": _add_export,
    "plot": _add_plot,
}
