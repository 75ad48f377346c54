"""Search quality side by side with Optuna 5: regret on Branin, Hartmann 6 and a mixed space.

For each function, seed and searcher, one sequential run of ``--trials`` trials (default 100);
the regret at a budget ``b`` is the best objective among the first ``b`` trials minus the
function's known minimum (a searcher does not know its budget, so the first 50 trials of a
100-trial run are a 50-trial run). Ours (``random``, ``tpe``, ``gp``, loaded through their
entry points with default options) are driven in-process through :mod:`gpusched.plugin_api`:
``suggest(number, history)`` with a :class:`TrialView` per earlier trial, as the daemon does
with one trial at a time. Optuna's (``RandomSampler``, ``TPESampler``, ``GPSampler``, default
options, seeded) run ``study.optimize`` on the same function in the same process. Optuna is
installed by this command when missing (the ``bench`` extra).

    .venv/bin/python bench/quality.py            # 10 seeds, ~1 h on 2 busy cores
    .venv/bin/python bench/quality.py --quick    # 3 seeds, 50 trials, no doc written

Progress goes to stderr, the table to stdout; the tables are written into docs/benchmarks.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._versus import single_thread_env

single_thread_env()

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

from bench._daemon import machine, print_table  # noqa: E402
from bench._functions import FUNCTIONS, Function  # noqa: E402
from bench._versus import ensure_optuna, fmt, progress, quartiles, write_section  # noqa: E402
from gpusched.plugin_api import WAIT, Goal, TrialState, TrialView, as_suggestion  # noqa: E402
from gpusched.plugins import make_search_plugin  # noqa: E402

__all__ = ["main"]

OURS = ("random", "tpe", "gp")
THEIRS = ("RandomSampler", "TPESampler", "GPSampler")
PAIRS = (("random", "RandomSampler"), ("tpe", "TPESampler"), ("gp", "GPSampler"))
TARGETS = (("gp", "GPSampler"), ("tpe", "TPESampler"))


@dataclass(frozen=True)
class Run:
    """One searcher's run: objectives in trial order and seconds spent choosing each point."""

    function: str
    searcher: str
    seed: int
    values: tuple[float, ...]
    seconds: tuple[float, ...]


def run_ours(fn: Function, name: str, seed: int, trials: int) -> Run:
    """Our plugin ``name``, sequentially: suggest, evaluate, append a completed TrialView."""
    plugin = make_search_plugin(name, fn.space(), goal=Goal.MINIMIZE, seed=seed, options={})
    history: list[TrialView] = []
    values, seconds = [], []
    for number in range(trials):
        start = time.perf_counter()
        answer = plugin.suggest(number, history)
        seconds.append(time.perf_counter() - start)
        assert answer is not None and answer is not WAIT, f"{name} ran out of points on {fn.name}"
        params = as_suggestion(answer).params
        value = fn.evaluate(params)
        values.append(value)
        history.append(TrialView(number=number, params=dict(params),
                                 state=TrialState.COMPLETED, objective=value))
    return Run(fn.name, name, seed, tuple(values), tuple(seconds))


def run_optuna(fn: Function, name: str, seed: int, trials: int) -> Run:
    """Optuna's sampler ``name`` (default options, seeded) on the same function."""
    optuna = ensure_optuna()
    sampler = getattr(optuna.samplers, name)(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    seconds: list[float] = []
    last = [time.perf_counter()]

    def objective(trial: Any) -> float:
        # Time from the previous trial's end to here: the sampler choosing this point.
        params = fn.optuna_params(trial)
        seconds.append(time.perf_counter() - last[0])
        value = fn.evaluate(params)
        last[0] = time.perf_counter()
        return value

    study.optimize(objective, n_trials=trials)
    values = tuple(float(t.value) for t in study.trials)
    return Run(fn.name, name, seed, values, tuple(seconds))


def _one(job: tuple[str, str, int, int]) -> Run:
    function, searcher, seed, trials = job
    fn = FUNCTIONS[function]
    runner = run_ours if searcher in OURS else run_optuna
    start = time.perf_counter()
    run = runner(fn, searcher, seed, trials)
    progress(f"  {function:<10} {searcher:<13} seed {seed:>2}: best {fmt(min(run.values))}"
             f" in {time.perf_counter() - start:.1f} s")
    return run


def regret(run: Run, budget: int) -> float:
    """Best of the first ``budget`` trials minus the known minimum."""
    return max(min(run.values[:budget]) - FUNCTIONS[run.function].minimum, 0.0)


def _summary(runs: Sequence[Run], budgets: Sequence[int]
             ) -> tuple[list[list[str]], dict[tuple[str, int, str], float]]:
    rows: list[list[str]] = []
    medians: dict[tuple[str, int, str], float] = {}
    by_key: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_key.setdefault((run.function, run.searcher), []).append(run)
    for function in FUNCTIONS:
        for budget in budgets:
            for ours, theirs in PAIRS:
                for searcher in (ours, theirs):
                    group = by_key.get((function, searcher), [])
                    if not group:
                        continue
                    q1, q2, q3 = quartiles([regret(r, budget) for r in group])
                    medians[(function, budget, searcher)] = q2
                    per_trial = sorted(s for r in group for s in r.seconds[:budget])
                    late = [s for r in group for s in r.seconds[budget - 10:budget]]
                    rows.append([f"{function} @{budget}", searcher, fmt(q2),
                                 f"{fmt(q1)} .. {fmt(q3)}",
                                 f"{sum(per_trial) / len(per_trial):.3f}",
                                 f"{max(late):.3f}", str(len(group))])
    return rows, medians


def _verdicts(medians: Mapping[tuple[str, int, str], float], budgets: Sequence[int]
              ) -> list[str]:
    lines = []
    for ours, theirs in TARGETS:
        for function in FUNCTIONS:
            for budget in budgets:
                a = medians.get((function, budget, ours))
                b = medians.get((function, budget, theirs))
                if a is None or b is None:
                    continue
                verdict = "ok" if a <= b else "MISSED"
                lines.append(f"{ours} <= {theirs} on {function} @{budget}: "
                             f"{fmt(a)} vs {fmt(b)}: {verdict}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, and (unless ``--quick``) write docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, default=None, help="default 10 (3 with --quick)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds FIRST .. FIRST+SEEDS-1 (default 0); another set than the "
                             "table's checks a change on seeds it was not developed on")
    parser.add_argument("--trials", type=int, default=None,
                        help="the largest budget (default 100; 50 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="3 seeds, 50 trials, docs/benchmarks.md left alone (development)")
    parser.add_argument("--only", default="", help="comma-separated searchers to run")
    parser.add_argument("--functions", default=",".join(FUNCTIONS))
    parser.add_argument("--jobs", type=int, default=1, help="processes in parallel")
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 10)
    trials = args.trials or (50 if args.quick else 100)
    budgets = sorted({50, trials} if trials >= 50 else {trials})
    searchers = [s for s in (*OURS, *THEIRS) if not args.only or s in args.only.split(",")]
    functions = [f for f in args.functions.split(",") if f]
    unknown = [f for f in functions if f not in FUNCTIONS]
    if unknown:
        parser.error(f"unknown function(s) {', '.join(unknown)}; known: {', '.join(FUNCTIONS)}")
    ensure_optuna()
    optuna_version = str(ensure_optuna().__version__)
    if args.first_seed < 0:
        parser.error(f"--first-seed must be >= 0 (got {args.first_seed})")
    seed_range = range(args.first_seed, args.first_seed + seeds)
    jobs = [(f, s, seed, trials) for f in functions for seed in seed_range for s in searchers]
    progress(f"quality: {len(jobs)} runs of {trials} trials ({args.jobs} at a time)")
    started = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(_one, jobs))
    else:
        runs = [_one(job) for job in jobs]
    elapsed = time.perf_counter() - started
    rows, medians = _summary(runs, budgets)
    header = ["function @trials", "searcher", "median regret", "IQR (25% .. 75%)",
              "s/trial", "max s (last 10)", "seeds"]
    notes = [f"machine: {machine()}",
             f"Optuna {optuna_version}; ours and theirs with default options, "
             f"seeds {seed_range[0]}..{seed_range[-1]}",
             "regret = best of the first N trials minus the known minimum; one thread each",
             "s/trial: mean time to choose a point; max s: slowest of the last 10 before N",
             f"wall time {elapsed / 60:.1f} min"]
    print_table("quality: regret of the best trial, ours vs Optuna's", notes, header, rows)
    verdicts = _verdicts(medians, budgets)
    for line in verdicts:
        print(line)
    if not args.quick:
        command = " ".join(["python bench/quality.py", *(argv or sys.argv[1:])])
        _write_doc(command, notes, header, rows, verdicts)
    return 0


def _write_doc(command: str, notes: Sequence[str], header: Sequence[str],
               rows: Sequence[Sequence[str]], verdicts: Sequence[str]) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Written by `{command}` on {stamp}.", ""]
    lines += [f"- {note}" for note in notes]
    lines += ["", "| " + " | ".join(header) + " |",
              "| --- | --- | " + " | ".join("---:" for _ in header[2:]) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Targets (medians):", ""] + [f"- {v}" for v in verdicts]
    write_section("quality", "\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
