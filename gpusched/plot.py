"""`gpusched plot`: an experiment's learning curves and a parallel-coordinates picture, as PNG.

matplotlib is an optional extra (``pip install 'gpusched[plot]'``) and this is the one module
that imports it, when a plot is drawn, so every other command starts without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gpusched.client import Client
from gpusched.errors import UsageError
from gpusched.export import collect
from gpusched.render import finite_number

__all__ = ["plot_experiment", "learning_curves", "parallel_coordinates", "axis_values"]

_BEST, _OTHER = "#d62728", "#1f77b4"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UsageError("gpusched plot needs matplotlib: pip install 'gpusched[plot]'"
                         " (or pip install matplotlib)") from None
    matplotlib.use("Agg")  # files only: never a window, works without a display
    import matplotlib.pyplot as plt

    return plt


def learning_curves(plt: Any, path: Path, exp: Mapping[str, Any], metric: str, *,
                    trials: Sequence[Mapping[str, Any]],
                    reports: Mapping[int, Sequence[Mapping[str, Any]]]) -> Path:
    """``metric`` against ``training_iteration``, one line per trial, the best one in red."""
    best = (exp.get("best") or {}).get("trial")
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=100)
    drawn = 0
    for t in trials:
        points = [(int(r.get("training_iteration") or i + 1), v)
                  for i, r in enumerate(reports.get(t["number"], []))
                  if (v := finite_number(r.get(metric))) is not None]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        if t["id"] == best:
            ax.plot(xs, ys, color=_BEST, linewidth=2.8, zorder=3, label=f"best: {t['id']}")
        else:
            ax.plot(xs, ys, color=_OTHER, linewidth=1.0, alpha=0.45)
        drawn += 1
    ax.set_xlabel("training_iteration")
    ax.set_ylabel(metric)
    ax.set_title(f"{exp['id']} {exp['name']}: {metric} ({drawn} trials)")
    ax.grid(True, alpha=0.3)
    if best is not None and drawn:
        ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def axis_values(param: Mapping[str, Any], values: Sequence[Any]) -> tuple[list[float], list[str]]:
    """Values of one parameter placed on a [0, 1] axis (log scale as the search saw it;
    categories evenly spaced), and the axis' tick labels."""
    choices = param.get("values")
    if choices is not None and not all(finite_number(c) is not None for c in choices):
        names = [str(c) for c in choices]
        span = max(len(names) - 1, 1)
        return [names.index(str(v)) / span if str(v) in names else math.nan
                for v in values], names
    nums = [finite_number(v) for v in values]
    low = float(param["min"]) if choices is None else min(float(c) for c in choices)
    high = float(param["max"]) if choices is None else max(float(c) for c in choices)
    log = param.get("scale") in ("log", "reverse_log") and low > 0
    f = math.log10 if log else (lambda x: x)
    lo, hi = f(low), f(high)
    width = (hi - lo) or 1.0
    placed = [math.nan if n is None or (log and n <= 0) else (f(n) - lo) / width for n in nums]
    return placed, [f"{low:.3g}", f"{high:.3g}"]


def parallel_coordinates(plt: Any, path: Path, exp: Mapping[str, Any],
                         trials: Sequence[Mapping[str, Any]]) -> Path:
    """One vertical axis per hyperparameter and one for the objective; one line per trial
    with a result, coloured by its objective, the best one thick and red."""
    scored = [t for t in trials if finite_number(t.get("objective")) is not None]
    params = exp["spec"]["params"]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * (len(params) + 1)), 5.5), dpi=100)
    columns = [axis_values(p, [t["params"].get(p["name"]) for t in scored]) for p in params]
    objectives = [float(t["objective"]) for t in scored]
    lo, hi = (min(objectives), max(objectives)) if objectives else (0.0, 1.0)
    width = (hi - lo) or 1.0
    columns.append(([(o - lo) / width for o in objectives], [f"{lo:.4g}", f"{hi:.4g}"]))
    cmap = plt.get_cmap("viridis" if exp["goal"] == "maximize" else "viridis_r")
    best = (exp.get("best") or {}).get("trial")
    xs = list(range(len(columns)))
    for i, t in enumerate(scored):
        ys = [col[0][i] for col in columns]
        if t["id"] == best:
            ax.plot(xs, ys, color=_BEST, linewidth=3.0, zorder=3)
        else:
            ax.plot(xs, ys, color=cmap(columns[-1][0][i]), linewidth=1.2, alpha=0.8)
    for x, (_, labels) in zip(xs, columns, strict=True):
        ax.axvline(x, color="black", linewidth=0.8)
        for k, label in enumerate(labels):
            ax.text(x + 0.03, k / max(len(labels) - 1, 1), label, fontsize=8, va="center")
    mappable = plt.cm.ScalarMappable(norm=plt.Normalize(lo, hi), cmap=cmap)
    fig.colorbar(mappable, ax=ax, label=f"{exp['metric']} (objective)", pad=0.08)
    ax.set_xticks(xs, [p["name"] for p in params] + [f"{exp['metric']} (objective)"])
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    shown = f"\nbest in red: {best}" if best is not None and scored else ""
    ax.set_title(f"{exp['id']} {exp['name']}: parameters vs {exp['metric']}"
                 f" ({len(scored)} trials with a result){shown}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_experiment(client: Client, experiment: str, out: str | Path, *,
                    metric: str | None = None) -> list[Path]:
    """Draw ``EXP-curves.png`` and ``EXP-parallel.png`` in ``out``; return their paths."""
    plt = _pyplot()
    exp, trials, reports = collect(client, experiment, reports=True)
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make {folder}: {exc.strerror or exc}") from None
    metric = metric or exp["metric"]
    if not any(finite_number(r.get(metric)) is not None for rows in reports.values() for r in rows):
        raise UsageError(f"no trial of {exp['id']} reported '{metric}' yet: nothing to plot")
    return [learning_curves(plt, folder / f"{exp['id']}-curves.png", exp, metric,
                            trials=trials, reports=reports),
            parallel_coordinates(plt, folder / f"{exp['id']}-parallel.png", exp, trials)]
