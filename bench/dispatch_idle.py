"""Where the host's idle CPU goes during the dispatch benchmark, by what the scheduler was doing.

On a host whose cores the trials keep busy, gpusched loses throughput two ways: its own CPU,
and the time a core stands idle while a trial could run. This finds the second. It runs
``dispatch.py``'s experiment (200 tiny trials, 2 at a time on 2 fake GPUs) under ``perf record
-a`` of the scheduler's switch and wake-up tracepoints, with the kernel's stack at each switch,
for each checkout given and for the bare loop, and sums every stretch of time a core stood
idle by

- what the scheduler's thread (the daemon's event loop; the bare loop's own thread) was doing
  then: running, woken but waiting for a core, or asleep, and where (epoll, a futex such as
  the GIL, vfork, ...);
- what the other cores were running: a trial (or anything else), the scheduler, nothing.

The clock starts ``--skip-ms`` after the timed part does (default 120 ms: the `gpusched submit`
command, when one core is idle on both sides) and stops when it ends. ``perf`` costs some CPU
while it records, so compare sides of one run only. Needs ``perf`` and the right to trace the
whole system (root, or ``kernel.perf_event_paranoid = -1``). Run:

    .venv/bin/python bench/dispatch_idle.py [DIR ...] [--rounds 2] [--trials 200]

(no DIR: this checkout). Each DIR is a checkout, as for ``dispatch_ab.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/dispatch_idle.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dispatch
from bench._daemon import DaemonProcess, print_table
from bench.dispatch_ab import prepare_side, side_environment

REPO = Path(__file__).resolve().parent.parent
_EVENTS = ["-e", "sched:sched_switch", "-e", "sched:sched_wakeup", "-e", "sched:sched_wakeup_new"]
# "python  1234 [001]  5678.123456: sched:sched_switch: prev_comm=... ==> next_comm=..."
_HEAD = re.compile(r"\s*.+?\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s*(.*)")
# The first kernel function on a sleeping thread's stack that says what it waits for.
_SLEEPS = [("epoll", "do_epoll_wait"), ("futex", "futex_wait"), ("vfork", "kernel_clone"),
           ("waitid", "do_wait"), ("poll", "do_sys_poll"), ("disk", "io_schedule")]


@dataclass
class Window:
    """The part of a recording to count, and whose thread is the scheduler's."""

    start: float = 0.0
    end: float = 0.0
    thread: int = 0


@dataclass
class Idle:
    """Idle core time of one or more runs, by (scheduler's state, the other cores)."""

    trials: int = 0
    seconds: float = 0.0  # the windows' length, summed
    cores: int = 0
    by_case: defaultdict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float))


def _field(text: str, name: str) -> str:
    found = re.search(rf"\b{name}=(\S+)", text)
    return found[1] if found else ""


def _sleep_kind(stack: str) -> str:
    for kind, marker in _SLEEPS:
        if marker in stack:
            return f"asleep: {kind}"
    return "asleep: other"


def analyse(perf_script: str, window: Window, idle: Idle) -> None:
    """Add the idle time of one recording (``perf script``'s text) to ``idle``."""
    thread = window.thread
    state = "asleep: before the window"
    running: dict[int, int] = {}  # cpu -> pid running there (0: idle)
    idle_since: dict[int, tuple[float, tuple[str, str]]] = {}
    for block in perf_script.split("\n\n"):
        head = _HEAD.match(block)
        if not head:
            continue
        cpu, t, kind, text = int(head[2]), float(head[3]), head[4], head[5]
        if kind in ("sched_wakeup", "sched_wakeup_new"):
            if int(_field(text, "pid") or -1) == thread:
                state = "woken, waiting for a core"
            continue
        prev, nxt = int(_field(text, "prev_pid")), int(_field(text, "next_pid"))
        if prev == 0 and cpu in idle_since:
            since, case = idle_since.pop(cpu)
            start, end = max(since, window.start), min(t, window.end)
            if end > start:
                idle.by_case[case] += end - start
        if prev == thread:
            state = ("woken, waiting for a core" if _field(text, "prev_state").startswith("R")
                     else _sleep_kind(block))
        if nxt == thread:
            state = "running"
        running[cpu] = nxt
        if nxt == 0:
            others = {running.get(c, -1) for c in running if c != cpu}
            other = ("the scheduler" if thread in others
                     else "a trial or other" if others - {0, -1} else "nothing")
            idle_since[cpu] = (t, (state, other))
    idle.seconds += window.end - window.start
    idle.cores = max(idle.cores, len(running))


@contextlib.contextmanager
def _recording(data: Path, window: Window, skip_s: float) -> Iterator[None]:
    """``perf record`` into ``data`` around the block; ``window`` gets the block's times
    (CLOCK_MONOTONIC, the clock perf is told to use), less ``skip_s`` at its start."""
    perf = subprocess.Popen(
        ["perf", "record", "-q", "-a", "-g", "-k", "CLOCK_MONOTONIC", *_EVENTS,
         "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # perf is recording
        window.start = time.monotonic() + skip_s
        yield
        window.end = time.monotonic()
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait()


def _script(data: Path) -> str:
    return subprocess.run(["perf", "script", "-i", str(data)], capture_output=True,
                          text=True, check=True).stdout


def run_daemon(code_dir: Path, script: Path, root: Path, n: int, rep: int, *,
               skip_s: float, idle: Idle) -> float:
    """One recorded run of ``code_dir``'s daemon; its trials/s."""
    data = Path(tempfile.mkdtemp(prefix=f"idle{rep}-", dir=root)) / "perf.data"
    window = Window()

    def around(daemon: DaemonProcess) -> contextlib.AbstractContextManager[None]:
        window.thread = daemon.pid  # the event loop runs in the daemon's main thread
        return _recording(data, window, skip_s)

    with side_environment(code_dir):
        result = dispatch.run_gpusched(script, root, n, rep, around=around)
    analyse(_script(data), window, idle)
    idle.trials += n
    return result.rate


def run_bare(script: Path, root: Path, n: int, rep: int, *, skip_s: float,
             idle: Idle) -> float:
    """One recorded run of the bare loop (in this process's main thread); its trials/s."""
    data = Path(tempfile.mkdtemp(prefix=f"idle-bare{rep}-", dir=root)) / "perf.data"
    window = Window(thread=threading.get_native_id())  # the bare loop runs in this thread
    with _recording(data, window, skip_s):
        result = dispatch.run_bare(script, root, n, rep)
    analyse(_script(data), window, idle)
    idle.trials += n
    return result.rate


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("dirs", type=Path, nargs="*", help="checkouts (default: this one)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--skip-ms", type=float, default=120.0,
                        help="left out at the start of each timed part (default 120)")
    args = parser.parse_args(argv)
    if shutil.which("perf") is None:
        parser.error("perf is not installed (linux-tools / linux-perf)")
    dirs = [d.resolve() for d in args.dirs] or [REPO]
    for code_dir in dirs:
        prepare_side(code_dir)
    names = ["bare loop", *map(str, dirs)]
    idle = {name: Idle() for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    skip_s = args.skip_ms / 1000
    with tempfile.TemporaryDirectory(prefix="gpusched-bench-idle-") as root_name:
        root = Path(root_name)
        script = root / "trial.py"
        script.write_text(dispatch.TRIAL_SCRIPT)
        for rnd in range(args.rounds):
            for name in names:
                if name == "bare loop":
                    rate = run_bare(script, root, args.trials, rnd, skip_s=skip_s,
                                    idle=idle[name])
                else:
                    rate = run_daemon(Path(name), script, root, args.trials, rnd,
                                      skip_s=skip_s, idle=idle[name])
                rates[name].append(rate)
                print(f"  round {rnd + 1}/{args.rounds}: {name}: {rate:.1f} trials/s",
                      file=sys.stderr, flush=True)
    cases = sorted({case for i in idle.values() for case in i.by_case},
                   key=lambda c: -sum(i.by_case[c] for i in idle.values()))

    def cell(i: Idle, seconds: float) -> str:
        share = 100 * seconds / (i.seconds * i.cores) if i.seconds and i.cores else 0.0
        return f"{1000 * seconds / max(i.trials, 1):.3f} ({share:.2f}%)"

    rows = [["all idle time", *(cell(idle[n], sum(idle[n].by_case.values())) for n in names)]]
    rows += [[f"{state}; others: {other}", *(cell(idle[n], idle[n].by_case[(state, other)])
                                             for n in names)] for state, other in cases]
    rows.append(["trials/s (recorded runs)",
                 *(f"{sum(rates[n]) / len(rates[n]):.1f}" for n in names)])
    print_table(
        f"dispatch idle: {args.trials} tiny trials, 2 at a time on 2 fake GPUs,"
        f" {args.rounds} rounds, the first {args.skip_ms:g} ms of each left out",
        ["idle core time per trial in ms (share of all cores' time), by what the scheduler's"
         " thread was doing and what the other cores ran",
         "scheduler: the daemon's event loop, or the bare loop's thread; perf costs some CPU"],
        ["scheduler's thread; other cores", *names],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
