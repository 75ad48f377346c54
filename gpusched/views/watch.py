"""`gpusched watch`: a live table of one experiment, like Ray Tune's progress reporter.

A header (the experiment, its state, its trials counted by state, the best so far and what it
waits for), then its trials with their hyperparameters, last reported metric and objective
(so far, marked ``*``, for a trial that has not ended). On a terminal the picture is redrawn in
place (ANSI: cursor home, clear to end of line and of screen) and cut to the terminal's size;
otherwise each changed picture is appended, so a log file reads as a history. Between pictures
it waits on the daemon's ``wait``, so the last picture comes the moment the experiment ends,
and then it exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from gpusched.client import Client
from gpusched.errors import UsageError
from gpusched.models import TERMINAL_EXPERIMENT_STATES
from gpusched.render import cut_to_width, fmt_value, printable
from gpusched.views import tables
from gpusched.views.gpus import device_indices

__all__ = ["cmd_watch", "watch", "snapshot", "render_snapshot", "header_lines"]

_ENDED = {s.value for s in TERMINAL_EXPERIMENT_STATES}
HOME, CLEAR_LINE, CLEAR_DOWN = "\x1b[H", "\x1b[K", "\x1b[J"
HIDE_CURSOR, SHOW_CURSOR, CLEAR_SCREEN = "\x1b[?25l", "\x1b[?25h", "\x1b[2J"
_MIN_ROWS = 3  # trial rows kept on the smallest terminal


def header_lines(exp: Mapping[str, Any]) -> list[str]:
    """The experiment's state, its trials by state, the best so far, and why it waits."""
    ended = f": {exp['reason']}" if exp["state"] in _ENDED and exp.get("reason") else ""
    lines = [f"== {exp['id']} {exp['name']} ({exp.get('owner') or '?'}):"
             f" {exp['state']}{ended} =="]
    counts = exp["trials"]
    by_state = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "total" and n)
    waiting = exp.get("waiting")
    pending = f", {waiting['trials']} to start" if waiting else ""
    cap = exp.get("max_trials")  # unset: the search's default decides, not shown as a number
    of = f" of {cap}" if cap is not None else ""
    lines.append(f"trials: {counts['total']}{of} ({by_state or 'none yet'}{pending})")
    best = exp.get("best")
    goal = "max" if exp["goal"] == "maximize" else "min"
    if best is None:
        lines.append(f"best {exp['metric']} ({goal}): - (no result yet)")
    else:
        params = ", ".join(f"{k}={fmt_value(v)}" for k, v in best["params"].items())
        lines.append(f"best {exp['metric']} ({goal}): {fmt_value(best['objective'])}"
                     f" ({best['trial']}) {params}")
    if waiting:
        lines.append(f"waiting: {waiting['message']}")
    return [printable(line) for line in lines]  # names and reasons are anyone's text


def _columns(trials: Sequence[Mapping[str, Any]], metric: str) -> list[str]:
    return tables.trial_columns(trials, head=("id", "state"), tail=(
        f"last_report.{metric}", "objective", "iter", "gpus", "time", "why"))


def render_snapshot(exp: Mapping[str, Any], trials: Sequence[Mapping[str, Any]], *,
                    height: int | None = None,
                    index_of: Mapping[str, int] | None = None) -> str:
    """The picture of experiment ``exp`` (a `show` view) and its ``trials`` (with their last
    reports). ``height``: cut the trials table to fit that many lines (the newest stay)."""
    lines = header_lines(exp)
    hidden = 0
    if height is not None:
        # Below the header: a blank line, the table's header, and the notes under it.
        notes = 1 + (tables.so_far_note(trials, ["objective"], exp) is not None)
        room = max(height - len(lines) - 2 - notes, _MIN_ROWS)
        hidden = max(len(trials) - room, 0)
        trials = trials[hidden:]
    lines.append("")
    columns = _columns(trials, exp["metric"])
    lines += tables.render_rows(trials, columns, metric="objective",
                                index_of=index_of).splitlines()
    if hidden:
        lines.append(f"({hidden} earlier trials not shown: gpusched ls {exp['id']})")
    note = tables.so_far_note(trials, columns, exp)
    if note:
        lines.append(note)
    return "\n".join(lines)


def snapshot(client: Client, exp_id: str, *, height: int | None = None,
             index_of: Mapping[str, int] | None = None) -> tuple[str, bool]:
    """The picture of ``exp_id`` now (:func:`render_snapshot`), and whether it has ended."""
    exp = client.show(exp_id)
    text = render_snapshot(exp, client.trials(exp_id, last_report=True), height=height,
                           index_of=index_of)
    return text, exp["state"] in _ENDED


def _newest_in_progress(client: Client) -> str:
    """The id of this user's newest experiment in progress, else (they have none) anyone's
    newest, as `gpusched best` alone means the user's own; UsageError when none is."""
    live = client.experiments(include_finished=False)  # newest first
    if not live:
        raise UsageError("no experiment is queued or running: name one, `gpusched watch EXP`"
                         " (see `gpusched ls --all`)")
    uid = os.getuid()
    picked = next((e for e in live if e.get("owner_uid") == uid), live[0])
    return str(picked["id"])


def watch(client: Client, experiment: str | None, interval_s: float, *,
          out: TextIO = sys.stdout, tty: bool | None = None) -> int:
    """Show ``experiment`` until it ends; 0 then. ``tty``: redraw in place (default: when
    ``out`` is a terminal)."""
    exp_id = str(client.show(experiment)["id"]) if experiment else _newest_in_progress(client)
    tty = out.isatty() if tty is None else tty
    index_of = device_indices(client.gpus())
    previous = None
    if tty:
        out.write(HIDE_CURSOR + CLEAR_SCREEN)
    try:
        while True:
            size = shutil.get_terminal_size()
            text, ended = snapshot(client, exp_id, height=size.lines - 1 if tty else None,
                                   index_of=index_of)
            if tty:
                body = "".join(cut_to_width(line, size.columns) + CLEAR_LINE + "\n"
                               for line in text.splitlines())
                out.write(HOME + body + CLEAR_DOWN)
            elif text != previous:
                stamp = time.strftime("%H:%M:%S")
                out.write(("\n" if previous is not None else "") + f"-- {stamp}\n{text}\n")
            out.flush()
            previous = text
            if ended:
                return 0
            client.wait(exp_id, interval_s)  # back at once when it ends
    finally:
        if tty:
            out.write(SHOW_CURSOR)
            out.flush()


def cmd_watch(args: argparse.Namespace) -> int:
    """`gpusched watch [EXP] [--interval S]`."""
    if not args.interval > 0:
        raise UsageError(f"--interval {args.interval:g}: give a number of seconds > 0")
    try:
        return watch(Client(args.socket), args.experiment, args.interval)
    except KeyboardInterrupt:
        print()  # leave the prompt on a line of its own
        return 130
