"""Dispatch throughput: 200 tiny trials, 2 at a time on 2 fake GPUs, gpusched vs a bare loop.

gpusched side: a real daemon (``--fake-gpus``, release barrier on with the fake release delay 0),
an experiment file submitted through the real CLI (``gpusched submit``), timed from the start of
the submit command until ``Client.wait`` returns (the daemon answers it when the experiment
ends: no polling). Each run gets a fresh daemon, and the clock starts once it has finished
starting up (its plugins are imported in the background right after start, ~0.1-0.2 s, and a
submit during that time waits): a service has done that long before anyone submits.

Bare side: the same trial script run 200 times by an asyncio loop, 2 at a time
(``asyncio.Semaphore(2)``), each with its own report file and CUDA_VISIBLE_DEVICES, its report
read after it exits. This is the floor: what a bash loop over CUDA_VISIBLE_DEVICES costs.

The sides alternate, 3 runs each; the table shows every run and the medians. Run:

    .venv/bin/python bench/dispatch.py [--trials 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/dispatch.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._daemon import (
    DaemonProcess,
    compile_bytecode,
    cpu_seconds,
    describe_settings,
    fake_gpus,
    machine,
    median,
    print_table,
    running_daemon,
    write_experiment,
)

# Tuned as a user with very short trials would tune them; the release barrier stays on.
SETTINGS: dict[str, object] = {
    "poll_interval_s": 0.5,
    "release_poll_s": 0.01,
    "report_poll_s": 0.1,
}
GPUS = 2
PARALLEL = 2
TARGET_RATIO = 0.9

TRIAL_SCRIPT = '''\
"""A tiny trial: report {"score": x} once and exit 0."""
import json
import os
import sys

x = 0.0
for arg in sys.argv[1:]:
    if arg.startswith("--x="):
        x = float(arg[4:])
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
    fh.write(json.dumps({"score": x}) + "\\n")
'''


@dataclass
class RunResult:
    """One timed run of one side."""

    seconds: float
    trials: int
    # Diagnostics, each a list of per-trial values in seconds.
    durations: list[float] = field(default_factory=list)  # start -> end of one trial
    gaps: list[float] = field(default_factory=list)  # one trial's end -> next start, same GPU
    extra: dict[str, float] = field(default_factory=dict)
    # CPU seconds used by the scheduler (daemon, or the bare loop) and by the trial processes.
    cpu_scheduler: float = 0.0
    cpu_trials: float = 0.0
    # Percent of the host's CPU time that was idle while timed (all cores, /proc/stat).
    host_idle: float = 0.0

    @property
    def rate(self) -> float:
        """Trials per second."""
        return self.trials / self.seconds


def host_cpu_ticks() -> tuple[int, int]:
    """``(idle, total)`` clock ticks of all the host's cores so far (/proc/stat's cpu line;
    idle counts iowait too)."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)


def idle_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Percent of the host's CPU time idle between two :func:`host_cpu_ticks`."""
    total = after[1] - before[1]
    return 100.0 * (after[0] - before[0]) / total if total else 0.0


def _gaps(spans: list[tuple[str, float, float]]) -> list[float]:
    """Per device: the idle time between one trial's end and the next one's start."""
    by_gpu: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for gpu, start, end in spans:
        by_gpu[gpu].append((start, end))
    out: list[float] = []
    for runs in by_gpu.values():
        runs.sort()
        out.extend(nxt[0] - prev[1] for prev, nxt in itertools.pairwise(runs))
    return out


# -- bare asyncio loop --------------------------------------------------------------------------


async def _bare(script: Path, work: Path, n: int, seed: int) -> RunResult:
    sem = asyncio.Semaphore(PARALLEL)
    free = [f"GPU-bare-{i}" for i in range(GPUS)]
    rng = random.Random(seed)
    xs = [rng.uniform(0.0, 1.0) for _ in range(n)]
    spans: list[tuple[str, float, float]] = []
    scores: list[float] = []
    base_env = dict(os.environ)

    async def one(i: int) -> None:
        async with sem:
            gpu = free.pop()
            try:
                start = time.time()
                trial_dir = work / str(i)
                trial_dir.mkdir()
                report = trial_dir / "reports.jsonl"
                env = {**base_env, "CUDA_VISIBLE_DEVICES": gpu,
                       "GPUSCHED_REPORT_FILE": str(report)}
                with open(trial_dir / "stdout.log", "ab") as out, \
                        open(trial_dir / "stderr.log", "ab") as err:
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable, str(script), f"--x={xs[i]!r}", env=env,
                        stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
                        cwd=work, start_new_session=True,
                    )
                code = await proc.wait()
                if code != 0:
                    raise RuntimeError(f"bare trial {i} exited {code}")
                last = report.read_text().splitlines()[-1]
                scores.append(float(json.loads(last)["score"]))
                spans.append((gpu, start, time.time()))
            finally:
                free.append(gpu)

    own0, children0 = _rusage()
    host0 = host_cpu_ticks()
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    seconds = time.perf_counter() - t0
    host1 = host_cpu_ticks()
    own1, children1 = _rusage()
    if len(scores) != n:
        raise RuntimeError(f"bare: {len(scores)} of {n} trials reported")
    return RunResult(seconds, n, durations=[e - s for _, s, e in spans], gaps=_gaps(spans),
                     cpu_scheduler=own1 - own0, cpu_trials=children1 - children0,
                     host_idle=idle_percent(host0, host1))


def _rusage() -> tuple[float, float]:
    """CPU seconds of this process and of its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def run_bare(script: Path, root: Path, n: int, rep: int) -> RunResult:
    """One bare run in a fresh folder."""
    work = Path(tempfile.mkdtemp(prefix=f"bare{rep}-", dir=root))
    return asyncio.run(_bare(script, work, n, seed=rep))


# -- gpusched -----------------------------------------------------------------------------------


def experiment(script: Path, n: int, seed: int) -> dict[str, Any]:
    """The experiment file's content."""
    return {
        "name": "dispatch-bench",
        "command": [sys.executable, str(script)],
        "workdir": str(script.parent),
        "metric": "score",
        "goal": "maximize",
        "max_trials": n,
        "max_parallel_trials": PARALLEL,
        "gpus_per_trial": 1,
        "search": {"algorithm": "random", "seed": seed},
        "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}],
    }


def run_gpusched(
    script: Path, root: Path, n: int, rep: int,
    around: Callable[[DaemonProcess], AbstractContextManager[object]] | None = None,
) -> RunResult:
    """One daemon run: a fresh daemon and state folder; submit -> completed is timed.
    ``around``: a context entered, given the started daemon, before the clock starts and left
    after it stops (``dispatch_trace.py`` records the kernel's tracepoints in it)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"daemon{rep}-", dir=root))
    exp_file = write_experiment(tmp / "experiment.yaml", experiment(script, n, seed=rep))
    with running_daemon(tmp, settings=SETTINGS, fake=fake_gpus(GPUS), warm=True) as daemon:
        pid = daemon.pid
        with contextlib.nullcontext() if around is None else around(daemon):
            own0, children0 = cpu_seconds(pid)
            host0 = host_cpu_ticks()
            t0 = time.perf_counter()
            exp_id = daemon.submit_file(exp_file)
            t_submitted = time.perf_counter()
            view = daemon.wait_experiment(exp_id, timeout=600.0)
            seconds = time.perf_counter() - t0
            host1 = host_cpu_ticks()
            own1, children1 = cpu_seconds(pid)
        trials = daemon.client.trials(exp_id)
    if view["state"] != "completed" or view["trials"]["completed"] != n:
        raise RuntimeError(f"{exp_id} ended {view['state']} ({view['reason']}): {view['trials']}")
    spans = [(t["devices"][0], float(t["started_at"]), float(t["ended_at"])) for t in trials]
    starts = sorted(s for _, s, _ in spans)
    ends = sorted(e for _, _, e in spans)
    extra = {
        "`gpusched submit` command, start -> exit": t_submitted - t0,
        "experiment submitted_at -> first trial started_at": (
            starts[0] - float(view["submitted_at"])),
        "last trial ended_at -> experiment ended_at": float(view["ended_at"]) - ends[-1],
        "experiment submitted_at -> ended_at": (
            float(view["ended_at"]) - float(view["submitted_at"])),
    }
    return RunResult(seconds, n, durations=[e - s for _, s, e in spans], gaps=_gaps(spans),
                     extra=extra, cpu_scheduler=own1 - own0, cpu_trials=children1 - children0,
                     host_idle=idle_percent(host0, host1))


# -- report -------------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):.1f}" if values else "-"


def _mean_ms(values: list[float]) -> str:
    return f"{1000 * statistics.fmean(values):.1f}" if values else "-"


def _cpu(runs: list[RunResult], which: str) -> str:
    per_trial = [(r.cpu_scheduler if which == "scheduler" else r.cpu_trials) / r.trials
                 for r in runs]
    return f"{1000 * median(per_trial):.1f}"


def main(argv: list[str] | None = None) -> int:
    """Run both sides, alternating, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    n, repeats = int(args.trials), int(args.repeats)
    bytecode = compile_bytecode()

    with tempfile.TemporaryDirectory(prefix="gpusched-bench-dispatch-") as root_name:
        root = Path(root_name)
        script = root / "trial.py"
        script.write_text(TRIAL_SCRIPT)
        run_bare(script, root, 10, rep=-1)  # warm-up: page cache, bytecode
        bare: list[RunResult] = []
        daemon: list[RunResult] = []
        for rep in range(repeats):
            bare.append(run_bare(script, root, n, rep))
            print(f"  run {rep + 1}/{repeats}: bare     {bare[-1].rate:7.1f} trials/s",
                  file=sys.stderr, flush=True)
            daemon.append(run_gpusched(script, root, n, rep))
            print(f"  run {rep + 1}/{repeats}: gpusched {daemon[-1].rate:7.1f} trials/s",
                  file=sys.stderr, flush=True)

    bare_med = median([r.rate for r in bare])
    daemon_med = median([r.rate for r in daemon])
    ratio = daemon_med / bare_med
    runs = [f"run {i + 1}" for i in range(repeats)]
    header = ["side", *(f"{r} trials/s" for r in runs), "median trials/s", "median s"]
    rows = [
        ["bare asyncio loop", *(f"{r.rate:.1f}" for r in bare), f"{bare_med:.1f}",
         f"{median([r.seconds for r in bare]):.2f}"],
        ["gpusched daemon+CLI", *(f"{r.rate:.1f}" for r in daemon), f"{daemon_med:.1f}",
         f"{median([r.seconds for r in daemon]):.2f}"],
    ]
    print_table(
        f"dispatch: {n} tiny trials, {PARALLEL} at a time on {GPUS} fake GPUs",
        [f"machine: {machine()}",
         f"daemon settings: {describe_settings(SETTINGS, fake_gpus(GPUS))}",
         "gpusched timed from `gpusched submit` start until Client.wait() returns"
         " (answered when the experiment ends)",
         f"{repeats} runs per side, alternating (bare first); a fresh daemon per run, started"
         " up (plugins loaded) before the clock starts", bytecode],
        header, rows,
    )
    verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"ratio gpusched / bare (medians): {ratio:.3f}  (target >= {TARGET_RATIO}: {verdict})")
    print()

    all_bare_d = [d for r in bare for d in r.durations]
    all_daemon_d = [d for r in daemon for d in r.durations]
    all_bare_g = [g for r in bare for g in r.gaps]
    all_daemon_g = [g for r in daemon for g in r.gaps]
    per_trial_overhead = (1 / daemon_med - 1 / bare_med) * PARALLEL
    diag = [
        ["scheduler CPU per trial (ms)", _cpu(bare, "scheduler"), _cpu(daemon, "scheduler"),
         "", ""],
        ["trial process CPU per trial (ms)", _cpu(bare, "trials"), _cpu(daemon, "trials"), "", ""],
        ["host CPU idle while timed (%)", f"{median([r.host_idle for r in bare]):.1f}",
         f"{median([r.host_idle for r in daemon]):.1f}", "", ""],
        ["one trial, start -> end (ms)", _ms(all_bare_d), _ms(all_daemon_d),
         _mean_ms(all_bare_d), _mean_ms(all_daemon_d)],
        ["same GPU, end -> next start (ms)", _ms(all_bare_g), _ms(all_daemon_g),
         _mean_ms(all_bare_g), _mean_ms(all_daemon_g)],
    ]
    print_table(
        "where the time goes (all runs pooled)",
        ["scheduler CPU: the bare loop's own process, or the daemon (/proc/PID/stat), median run",
         "bare: start = before spawn, end = report read after exit",
         "gpusched: trial started_at (after spawn) and ended_at (recorded, reports stored)"
         " from the trial log",
         "daemon CPU includes answering the benchmark's `wait` and final `show`",
         f"extra wall time per trial on each GPU, (1/gpusched - 1/bare rate) x {PARALLEL}:"
         f" {1000 * per_trial_overhead:.1f} ms"],
        ["", "bare median", "gpusched median", "bare mean", "gpusched mean"], diag,
    )
    extra_rows = [[k, f"{1000 * median([r.extra[k] for r in daemon]):.1f}"]
                  for k in daemon[0].extra]
    print_table("gpusched fixed costs per experiment (median of runs)", [],
                ["", "ms"], extra_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
