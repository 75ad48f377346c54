"""Dispatch latency from the kernel's tracepoints: a trial's exit -> the next trial's exec.

The trial log's timestamps are taken by the daemon, after it has noticed an exit and after it
has spawned the next trial, so they cannot show how long the daemon took to notice, nor how
long a spawn kept the new trial from running. The kernel can: this records, with
``perf record -a``, the ``sched_process_fork``, ``sched_process_exec`` and
``sched_process_exit`` tracepoints around each run of ``dispatch.py``'s experiment (200 tiny
trials, 2 at a time on 2 fake GPUs), keeps the daemon's children (the trials), and pairs each
trial's exec with the latest unpaired trial exit before it: the time a GPU's slot stood empty,
exit to exec, as the kernel saw it.

Like ``dispatch_ab.py``, it runs the daemons of one or more checkouts in turn (round after
round, rotating their order), with ``PYTHONPATH`` and ``PYTHONSAFEPATH`` choosing the code. It
needs ``perf`` and the right to trace the whole system (root, or
``kernel.perf_event_paranoid = -1``). ``perf`` costs a little CPU while it records, so compare
sides of one run only. Run:

    .venv/bin/python bench/dispatch_trace.py DIR [DIR ...] [--rounds 4] [--trials 200]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/dispatch_trace.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dispatch
from bench._daemon import DaemonProcess, print_table
from bench.dispatch_ab import prepare_side, side_environment

_EVENTS = "sched:sched_process_fork,sched:sched_process_exec,sched:sched_process_exit"
# perf script -F time,event,trace: "  1234.567890: sched:sched_process_exit: comm=... pid=42 ..."
_LINE = re.compile(r"\s*([\d.]+):\s+sched:(\w+):\s*(.*)")


@dataclass
class Run:
    """One traced run of one side."""

    rate: float  # trials/s, submit -> ended, as dispatch.py times it
    gaps_ms: list[float]  # each trial exit -> the next trial's exec
    lives_ms: list[float]  # each trial's exec -> exit


def _events(data: Path) -> list[tuple[float, str, str]]:
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "time,event,trace"],
                         capture_output=True, text=True, check=True).stdout
    return [(float(m[1]), m[2], m[3]) for m in map(_LINE.match, out.splitlines()) if m]


def _field(text: str, name: str) -> int:
    found = re.search(rf"\b{name}=(\d+)", text)
    return int(found[1]) if found else -1


def analyse(events: list[tuple[float, str, str]], daemon_pid: int) -> tuple[list[float],
                                                                         list[float]]:
    """(exit -> next exec gaps, trial lifetimes), in ms, for the daemon's children."""
    children: set[int] = set()
    execs: dict[int, float] = {}
    exits: dict[int, float] = {}
    for t, kind, text in events:
        # fork: "comm=... pid=PARENT child_comm=... child_pid=CHILD" (\bpid skips child_pid)
        if kind == "sched_process_fork" and _field(text, "pid") == daemon_pid:
            children.add(_field(text, "child_pid"))
        elif kind == "sched_process_exec" and _field(text, "pid") in children:
            execs.setdefault(_field(text, "pid"), t)
        elif kind == "sched_process_exit" and _field(text, "pid") in children:
            exits[_field(text, "pid")] = t
    trials = sorted((execs[p], exits[p]) for p in execs if p in exits)
    ends = sorted(end for _, end in trials)
    used: set[float] = set()
    gaps = []
    for start, _ in trials:
        before = [e for e in ends if e < start and e not in used]
        if before:  # the first trials of each slot have no exit before them
            used.add(before[-1])
            gaps.append(1000 * (start - before[-1]))
    return gaps, [1000 * (end - start) for start, end in trials]


@contextlib.contextmanager
def _recording(data: Path, daemon: DaemonProcess, pids: list[int]) -> Iterator[None]:
    """``perf record`` of the process tracepoints into ``data`` for the block; the daemon's
    pid goes into ``pids``."""
    pids.append(daemon.proc.pid)
    perf = subprocess.Popen(["perf", "record", "-q", "-a", "-e", _EVENTS, "-o", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # perf is recording
        yield
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait()


def run_side(code_dir: Path, script: Path, root: Path, n: int, rep: int) -> Run:
    """One traced run of ``code_dir``'s daemon (``dispatch.py``'s run, perf recording)."""
    data = Path(tempfile.mkdtemp(prefix=f"trace{rep}-", dir=root)) / "perf.data"
    pids: list[int] = []
    with side_environment(code_dir):
        result = dispatch.run_gpusched(
            script, root, n, rep, around=lambda daemon: _recording(data, daemon, pids))
    gaps, lives = analyse(_events(data), pids[0])
    return Run(result.rate, gaps, lives)


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("dirs", type=Path, nargs="+", help="checkouts (with gpusched/, plugins/)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args(argv)
    if shutil.which("perf") is None:
        parser.error("perf is not installed (linux-tools / linux-perf)")
    dirs = [d.resolve() for d in args.dirs]
    for code_dir in dirs:
        prepare_side(code_dir)
    runs: dict[Path, list[Run]] = {d: [] for d in dirs}
    with tempfile.TemporaryDirectory(prefix="gpusched-bench-trace-") as root_name:
        root = Path(root_name)
        script = root / "trial.py"
        script.write_text(dispatch.TRIAL_SCRIPT)
        for rnd in range(args.rounds):
            order = dirs[rnd % len(dirs):] + dirs[:rnd % len(dirs)]
            for code_dir in order:
                run = run_side(code_dir, script, root, args.trials, rnd)
                runs[code_dir].append(run)
                print(f"  round {rnd + 1}/{args.rounds}: {code_dir}: {run.rate:.1f} trials/s,"
                      f" exit -> exec median {statistics.median(run.gaps_ms):.2f} ms",
                      file=sys.stderr, flush=True)
    rows = []
    for code_dir, mine in runs.items():
        gaps = [g for r in mine for g in r.gaps_ms]
        lives = [life for r in mine for life in r.lives_ms]
        rows.append([str(code_dir), f"{statistics.median([r.rate for r in mine]):.1f}",
                     f"{statistics.median(gaps):.2f}", f"{statistics.fmean(gaps):.2f}",
                     f"{statistics.quantiles(gaps, n=10)[-1]:.2f}",
                     f"{statistics.median(lives):.1f}"])
    print_table(
        f"dispatch trace: {args.trials} tiny trials, 2 at a time on 2 fake GPUs,"
        f" {args.rounds} rounds",
        ["exit -> exec: a trial process's exit to the next trial process's exec (perf"
         " tracepoints), all rounds pooled",
         "trials/s: submit -> ended, as dispatch.py times it (perf recording costs some CPU)"],
        ["checkout", "median trials/s", "exit -> exec median ms", "mean ms", "p90 ms",
         "trial exec -> exit median ms"],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
