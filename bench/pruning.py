"""Early stopping side by side with Optuna 5's pruners, on synthetic learning curves.

Two curve sets (``bench/_curves.py``): ``crossing``, where slow starters finish best, and
``parallel``, where curves keep their order. Per set and seed, 100 trials of 50 steps each, one
after the other (no parallel trials), with the same 100 configurations for every stopping rule:
our ``random`` search draws them, and Optuna gets them through ``study.enqueue_trial``, so the
sampler is the same on both sides. A trial reports its loss at steps 1 .. 50 and is asked after
each report whether to stop:

- ours (``median``, ``asha``) through :meth:`StoppingPlugin.should_stop` with a
  :class:`TrialView` of the trial and of every earlier one (completed, or stopped);
- Optuna's (``MedianPruner``, ``SuccessiveHalvingPruner``, ``HyperbandPruner``) through
  ``trial.report`` and ``trial.should_prune`` in ``study.optimize``.

Our ``hyperband`` is a search plugin: it draws its own configurations (seeded like ``random``)
and gives each trial a budget; a promoted trial goes on from its parent's last step. It runs
until it would start a 101st configuration, or has nothing more to start. Its row appears when
the plugin is installed.

Per rule, the table gives the total steps consumed (all trials) and the true regret of the
configuration picked: the best trial that ran all 50 steps, by its last reported loss (if none
did, the best by the loss at the furthest step reached). Progress goes to stderr, the table to
stdout; the tables are written into docs/benchmarks.md (not with ``--quick``).

    .venv/bin/python bench/pruning.py            # 20 seeds, a few minutes
    .venv/bin/python bench/pruning.py --quick    # 3 seeds
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._curves import CURVE_SETS, MINIMUM, SPACE, STEPS, final, loss_curve
from bench._daemon import machine, print_table
from bench._versus import ensure_optuna, fmt, progress, quartiles, write_section
from gpusched import plugin_api
from gpusched.errors import PluginError
from gpusched.plugin_api import WAIT, Goal, ParamValue, TrialState, TrialView, as_suggestion
from gpusched.plugins import load_search_plugin, make_search_plugin, make_stopping_plugin

__all__ = ["main"]

TRIALS = 100
METRIC = "loss"
# Our rules: (row name, plugin, options). max_t is the curves' length.
OURS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("median", "median", {}),
    ("asha", "asha", {"max_t": STEPS}),
    ("asha (2 brackets)", "asha", {"max_t": STEPS, "brackets": 2}),
)
THEIRS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("MedianPruner", lambda o: o.pruners.MedianPruner()),
    ("SuccessiveHalvingPruner", lambda o: o.pruners.SuccessiveHalvingPruner()),
    ("HyperbandPruner", lambda o: o.pruners.HyperbandPruner(min_resource=1,
                                                            max_resource=STEPS)),
)
HYPERBAND_OPTIONS = {"max_epochs": STEPS, "factor": 3, "hyperband_iterations": 2}

# One trial's outcome: its params, the steps it ran, the step it reached (more than the steps
# it ran for a hyperband trial that went on from its parent's), the loss at that step.
Outcome = tuple[Mapping[str, ParamValue], int, int, float]


def configurations(seed: int) -> list[dict[str, ParamValue]]:
    """The 100 configurations every rule sees: our random search's draws."""
    search = make_search_plugin("random", SPACE, goal=Goal.MINIMIZE, seed=seed, options={})
    answers = [search.suggest(n, ()) for n in range(TRIALS)]
    return [dict(as_suggestion(a).params) for a in answers if a is not None and a is not WAIT]


def run_ours(curve_set: str, plugin: str, options: Mapping[str, Any], seed: int,
             configs: Sequence[Mapping[str, ParamValue]]) -> list[Outcome]:
    """Each configuration in turn; ``should_stop`` after every report."""
    rule = make_stopping_plugin(plugin, metric=METRIC, goal=Goal.MINIMIZE, options=options)
    ended: list[TrialView] = []
    outcomes: list[Outcome] = []
    for number, params in enumerate(configs):
        curve = loss_curve(curve_set, params, seed=seed, trial=number)
        state, ran = TrialState.COMPLETED, STEPS
        for step in range(1, STEPS + 1):
            report = {METRIC: curve[step - 1], "training_iteration": step}
            view = TrialView(number=number, params=params, state=TrialState.RUNNING,
                             metric_values=curve[:step], metric_steps=range(1, step + 1),
                             last_report=report)
            if step < STEPS and rule.should_stop(view, [report], ended) is not None:
                state, ran = TrialState.STOPPED, step
                break
        ended.append(TrialView(number=number, params=params, state=state,
                               objective=curve[ran - 1], metric_values=curve[:ran],
                               metric_steps=range(1, ran + 1)))
        outcomes.append((params, ran, ran, curve[ran - 1]))
    return outcomes


def run_optuna(curve_set: str, make_pruner: Callable[[Any], Any], seed: int,
               configs: Sequence[Mapping[str, ParamValue]]) -> list[Outcome]:
    """The same configurations, enqueued, under an Optuna pruner."""
    optuna = ensure_optuna()
    # A fixed study name: HyperbandPruner picks a trial's bracket from a hash of it.
    study = optuna.create_study(direction="minimize", pruner=make_pruner(optuna),
                                sampler=optuna.samplers.RandomSampler(seed=seed),
                                study_name=f"{curve_set}-{seed}")
    for params in configs:
        study.enqueue_trial(dict(params))
    outcomes: list[Outcome] = []

    def objective(trial: Any) -> float:
        params = {"lr": trial.suggest_float("lr", 1e-4, 1.0, log=True),
                  "width": trial.suggest_float("width", 0.0, 1.0)}
        curve = loss_curve(curve_set, params, seed=seed, trial=trial.number)
        for step in range(1, STEPS + 1):
            trial.report(curve[step - 1], step)
            if step < STEPS and trial.should_prune():
                outcomes.append((params, step, step, curve[step - 1]))
                raise optuna.TrialPruned()
        outcomes.append((params, STEPS, STEPS, curve[-1]))
        return curve[-1]

    study.optimize(objective, n_trials=len(configs))
    return outcomes


def hyperband_available() -> bool:
    """True when a ``hyperband`` search plugin and the budget API are installed."""
    if not hasattr(plugin_api, "as_suggestion"):
        return False
    try:
        load_search_plugin("hyperband")
    except PluginError:
        return False
    return True


def run_hyperband(curve_set: str, seed: int) -> list[Outcome]:
    """Our hyperband search: each trial trains its configuration from its parent's budget to
    its own; the curve of a chain is its first trial's (same noise all along)."""
    # Through vars(): the budget API is newer than this benchmark's type checking may know.
    as_suggestion: Callable[[Any], Any] = vars(plugin_api)["as_suggestion"]
    make_view: Callable[..., TrialView] = TrialView
    search = make_search_plugin("hyperband", SPACE, goal=Goal.MINIMIZE, seed=seed,
                                options=HYPERBAND_OPTIONS)
    history: list[TrialView] = []
    roots: list[int] = []  # per trial: the number of the first trial of its chain
    budgets: list[int] = []
    outcomes: list[Outcome] = []
    fresh = 0
    while True:
        answer = search.suggest(len(history), tuple(history))
        if answer is None or answer is getattr(plugin_api, "WAIT", None):
            break  # one trial at a time: nothing runs, so WAIT is the end too
        suggestion = as_suggestion(answer)
        number = len(history)
        if suggestion.continues is None:
            fresh += 1
            if fresh > TRIALS:
                break
            root = number
        else:
            root = roots[suggestion.continues]
        start = 0 if suggestion.continues is None else budgets[suggestion.continues]
        budget = min(int(suggestion.budget), STEPS)
        curve = loss_curve(curve_set, suggestion.params, seed=seed, trial=root)
        value = curve[budget - 1]
        history.append(make_view(
            number=number, params=dict(suggestion.params), state=TrialState.COMPLETED,
            objective=value, metric_values=curve[start:budget],
            metric_steps=range(start + 1, budget + 1), budget=suggestion.budget,
            continues=suggestion.continues))
        roots.append(root)
        budgets.append(budget)
        outcomes.append((suggestion.params, budget - start, budget, value))
    return outcomes


def picked_regret(outcomes: Sequence[Outcome]) -> float:
    """True regret of the configuration picked: the best loss among trials that reached the last
    step (or, if none did, the furthest step any reached)."""
    furthest = max(reached for _, _, reached, _ in outcomes)
    params = min((o for o in outcomes if o[2] == furthest), key=lambda o: o[3])[0]
    return final(params) - MINIMUM


def _one(curve_set: str, rule: str, seed: int) -> tuple[int, float, int]:
    """(steps consumed, true regret of the pick, trials that ran every step)."""
    configs = configurations(seed)
    if rule == "none":
        outcomes = run_ours(curve_set, "bounds", {}, seed, configs)
    elif rule == "hyperband":
        outcomes = run_hyperband(curve_set, seed)
    elif rule in {name for name, _, _ in OURS}:
        _, plugin, options = next(o for o in OURS if o[0] == rule)
        outcomes = run_ours(curve_set, plugin, options, seed, configs)
    else:
        outcomes = run_optuna(curve_set, dict(THEIRS)[rule], seed, configs)
    steps = sum(ran for _, ran, _, _ in outcomes)
    full = sum(1 for _, _, reached, _ in outcomes if reached == STEPS)
    return steps, picked_regret(outcomes), full


def _target(medians: Mapping[str, tuple[float, float]]) -> str:
    """Our best rule (fewest steps with a regret no worse than Optuna's Hyperband's) vs it."""
    if "HyperbandPruner" not in medians:
        return "target: HyperbandPruner not run"
    their_steps, their_regret = medians["HyperbandPruner"]
    ours = [r for r in (*(name for name, _, _ in OURS), "hyperband") if r in medians]
    good = [r for r in ours if medians[r][1] <= their_regret and medians[r][0] < their_steps]
    if good:
        best = min(good, key=lambda r: medians[r][0])
        steps, regret = medians[best]
        return (f"target (fewer steps than HyperbandPruner, regret no worse): ok with {best}: "
                f"{steps:,.0f} steps, regret {fmt(regret)} vs {their_steps:,.0f}, "
                f"{fmt(their_regret)}")
    listed = "; ".join(f"{r} {medians[r][0]:,.0f} steps, regret {fmt(medians[r][1])}"
                       for r in ours)
    return (f"target (fewer steps than HyperbandPruner, regret no worse): MISSED: "
            f"HyperbandPruner {their_steps:,.0f} steps, regret {fmt(their_regret)}; {listed}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run both curve sets, print the tables, and (unless ``--quick``) write the doc."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, default=None, help="default 20 (3 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="3 seeds, docs/benchmarks.md left alone (development)")
    parser.add_argument("--only", default="", help="comma-separated rules to run")
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 20)
    optuna_version = str(ensure_optuna().__version__)
    rules = ["none", *(name for name, _, _ in OURS)]
    hyperband = hyperband_available()
    if hyperband:
        rules.append("hyperband")
    else:
        progress("no hyperband search plugin installed: its row is left out")
    rules += [name for name, _ in THEIRS]
    if args.only:
        rules = [r for r in rules if r in args.only.split(",")]
    notes = [f"machine: {machine()}",
             f"Optuna {optuna_version}; {TRIALS} trials x {STEPS} steps, one at a time; "
             f"seeds 0..{seeds - 1}; medians over seeds",
             "the same 100 configurations (our random search) for every rule but hyperband",
             "ours: median {}, asha {max_t: 50} and {max_t: 50, brackets: 2}, hyperband "
             + (str(HYPERBAND_OPTIONS) if hyperband else "(not installed: no row)"),
             "Optuna: MedianPruner(), SuccessiveHalvingPruner(), "
             "HyperbandPruner(min_resource=1, max_resource=50)",
             "regret: true final loss of the picked configuration minus the minimum 0.1"]
    header = ["rule", "steps (median)", "steps IQR", "regret (median)", "regret IQR",
              "trials run to 50 steps"]
    tables: list[tuple[str, list[list[str]], str]] = []
    started = time.perf_counter()
    for curve_set in CURVE_SETS:
        rows: list[list[str]] = []
        medians: dict[str, tuple[float, float]] = {}
        for rule in rules:
            began = time.perf_counter()
            results = [_one(curve_set, rule, seed) for seed in range(seeds)]
            s1, s2, s3 = quartiles([r[0] for r in results])
            r1, r2, r3 = quartiles([r[1] for r in results])
            _, f2, _ = quartiles([r[2] for r in results])
            medians[rule] = (s2, r2)
            label = "none (every trial to 50)" if rule == "none" else rule
            rows.append([label, f"{s2:,.0f}", f"{s1:,.0f} .. {s3:,.0f}", fmt(r2),
                         f"{fmt(r1)} .. {fmt(r3)}", f"{f2:.0f}"])
            progress(f"  {curve_set:<9} {rule:<24} steps {s2:>7,.0f}  regret {fmt(r2):>9}"
                     f"  ({time.perf_counter() - began:.1f} s)")
        target = _target(medians)
        print_table(f"pruning: {curve_set} curves", notes, header, rows)
        print(target, end="\n\n")
        tables.append((curve_set, rows, target))
    progress(f"pruning: {time.perf_counter() - started:.0f} s")
    if not args.quick:
        command = " ".join(["python bench/pruning.py", *(argv or sys.argv[1:])])
        _write_doc(command, notes, header, tables)
    return 0


def _write_doc(command: str, notes: Sequence[str], header: Sequence[str],
               tables: Sequence[tuple[str, list[list[str]], str]]) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Written by `{command}` on {stamp}.", ""] + [f"- {n}" for n in notes]
    for curve_set, rows, target in tables:
        lines += ["", f"**{curve_set} curves**", "", "| " + " | ".join(header) + " |",
                  "| --- | " + " | ".join("---:" for _ in header[1:]) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines += ["", target]
    write_section("pruning", "\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
