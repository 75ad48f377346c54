"""Conditional parameters through a real daemon: each trial gets exactly its active parameters,
as flags, in ``GPUSCHED_PARAMS`` and from ``trial.params()``, and the log, ``show``, ``best``
and ``ls`` leave the inactive ones out. In our spelling and in AI Platform's (``--aip``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gpusched.spec import parse_experiment

from .harness import Daemon, running_daemon, trial_script

PARAMS = [
    {"name": "optimizer", "type": "categorical", "values": ["sgd", "adam"]},
    {"name": "momentum", "type": "discrete", "values": [0.0, 0.9], "when": {"optimizer": "sgd"}},
    {"name": "nesterov", "type": "categorical", "values": ["on", "off"],
     "when": {"momentum": 0.9}},
    {"name": "beta1", "type": "discrete", "values": [0.9, 0.99],
     "when": {"optimizer": ["adam"]}},
    {"name": "layers", "type": "integer", "min": 1, "max": 2},
]
# The grid's distinct points: sgd with momentum 0 (no nesterov), sgd with momentum 0.9 and each
# nesterov, adam with each beta1; times two layer counts. Ten, not the product's 32.
EXPECTED = [
    {"optimizer": "sgd", "momentum": 0.0},
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": "on"},
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": "off"},
    {"optimizer": "adam", "beta1": 0.9},
    {"optimizer": "adam", "beta1": 0.99},
]
EXPECTED = [{**point, "layers": n} for point in EXPECTED for n in (1, 2)]

AIP_CONFIG = """\
trainingInput:
  scaleTier: BASIC
  hyperparameters:
    goal: MAXIMIZE
    hyperparameterMetricTag: score
    algorithm: GRID_SEARCH
    maxParallelTrials: 2
    params:
      - parameterName: optimizer
        type: CATEGORICAL
        categoricalValues: [sgd, adam]
        conditionalParameterSpecs:
          - parameterSpec:
              parameterName: momentum
              type: DISCRETE
              discreteValues: [0.0, 0.9]
              conditionalParameterSpecs:
                - parameterSpec: {parameterName: nesterov, type: CATEGORICAL,
                                  categoricalValues: ["on", "off"]}
                  parentDiscreteValues: {values: [0.9]}
            parentCategoricalValues: {values: [sgd]}
          - parameterSpec: {parameterName: beta1, type: DISCRETE, discreteValues: [0.9, 0.99]}
            parentCategoricalValues: {values: [adam]}
      - {parameterName: layers, type: INTEGER, minValue: 1, maxValue: 2}
"""


def flags_of(params: dict[str, Any]) -> list[str]:
    return sorted(f"--{k}={v!r}" if isinstance(v, float) else f"--{k}={v}"
                  for k, v in params.items())


def check_trials(d: Daemon, exp: str, out: Path, expected: list[dict[str, Any]] | None) -> None:
    """Every trial of ``exp`` saw exactly its active parameters, everywhere."""
    view = d.wait_experiment(exp)
    assert view["state"] == "completed", view
    space = parse_experiment(view["spec"], base_dir="/").space()
    trials = d.client.trials(exp)
    seen = []
    for t in trials:
        params = t["params"]
        assert sorted(params) == sorted(p.name for p in space.active(params)), params
        record = json.loads((out / f"{t['number']}.json").read_text())
        assert sorted(record["flags"]) == flags_of(params), (record, params)
        assert record["env"] == record["api"] == params
        seen.append(params)
    if expected is not None:
        assert sorted(map(repr, seen)) == sorted(map(repr, expected))
    # show and best say what the log says: an inactive parameter is absent, not null.
    sgd = next(t for t in trials if t["params"] == {"optimizer": "sgd", "momentum": 0.0,
                                                     "layers": 1})
    shown = d.cli_json("show", f"{exp}/{sgd['number']}")
    assert shown["params"] == {"optimizer": "sgd", "momentum": 0.0, "layers": 1}
    best = d.cli_json("best", exp, "-n", "20")
    assert all(sorted(b["params"]) == sorted(p.name for p in space.active(b["params"]))
               for b in best)
    # In the table an inactive parameter is a "-".
    table = d.cli("ls", exp).stdout.splitlines()
    header = table[0].split()
    row = next(line.split() for line in table if line.startswith(f"{exp}/{sgd['number']} "))
    assert row[header.index("nesterov")] == "-" and row[header.index("beta1")] == "-"


def test_our_spelling_runs_each_distinct_grid_point_with_its_flags(tmp_path: Path) -> None:
    out = tmp_path / "records"
    out.mkdir()
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({
            "command": [sys.executable, trial_script("record_params.py"), "--out", str(out)],
            "metric": "score", "search": "grid", "max_parallel_trials": 2, "params": PARAMS,
        })
        check_trials(d, exp, out, EXPECTED)  # max_trials: the grid's 10 distinct points


def test_ai_platform_spelling_runs_alike(tmp_path: Path) -> None:
    out = tmp_path / "records"
    out.mkdir()
    config = tmp_path / "hptuning_config.yaml"
    config.write_text(AIP_CONFIG)
    with running_daemon(tmp_path / "d") as d:
        submitted = d.cli("submit", "--aip", str(config), "--", sys.executable,
                          trial_script("record_params.py"), "--out", str(out))
        assert submitted.returncode == 0, submitted.stderr
        exp = submitted.stdout.strip()
        check_trials(d, exp, out, EXPECTED)
        # Stored in our spelling, flattened: a child right after its parent.
        spec = d.client.show(exp)["spec"]
        assert [p["name"] for p in spec["params"]] == ["optimizer", "momentum", "nesterov",
                                                       "beta1", "layers"]
        assert spec["params"][2]["when"] == {"momentum": [0.9]}


def test_model_based_search_passes_only_active_parameters(tmp_path: Path) -> None:
    out = tmp_path / "records"
    out.mkdir()
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({
            "command": [sys.executable, trial_script("record_params.py"), "--out", str(out)],
            "metric": "score", "max_trials": 14, "max_parallel_trials": 2,
            "search": {"algorithm": "tpe", "seed": 3, "n_startup_trials": 4},
            "params": [*PARAMS, {"name": "lr", "type": "double", "min": 1e-4, "max": 0.1,
                                 "scale": "log", "when": {"optimizer": "sgd"}}],
        })
        view = d.wait_experiment(exp)
        assert view["state"] == "completed", view
        trials = d.client.trials(exp)
        assert len(trials) == 14
        for t in trials:
            record = json.loads((out / f"{t['number']}.json").read_text())
            assert record["env"] == t["params"]
            assert sorted(record["flags"]) == flags_of(t["params"])
            assert ("lr" in t["params"]) == ("momentum" in t["params"]) == (
                t["params"]["optimizer"] == "sgd")
            assert ("beta1" in t["params"]) == (t["params"]["optimizer"] == "adam")


IGNORANT_PLUGIN = '''\
from gpusched.plugin_api import SearchPlugin


POINTS = [
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": "off", "beta1": 0.9, "layers": 1},
    {"optimizer": "sgd", "momentum": 0.0, "nesterov": "on", "beta1": 0.99, "layers": 2},
    {"optimizer": "adam", "momentum": 0.9, "nesterov": "on", "beta1": 0.99, "layers": 1},
]


class EveryName(SearchPlugin):
    """Ignores conditions: a value for every parameter."""

    summary = "a value for every parameter"

    def suggest(self, number, history):
        return POINTS[number] if number < len(POINTS) else None
'''


def test_the_daemon_drops_what_a_plugin_proposes_for_inactive_parameters(tmp_path: Path
                                                                          ) -> None:
    # A third-party plugin, installed as one is (a dist-info with its entry point), that
    # proposes every name: the daemon passes and logs only the active ones.
    site = tmp_path / "site"
    (site / "every_name-1.0.dist-info").mkdir(parents=True)
    (site / "every_name.py").write_text(IGNORANT_PLUGIN)
    info = site / "every_name-1.0.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: every-name\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[gpusched.search]\neveryname = every_name:EveryName\n")
    out = tmp_path / "records"
    out.mkdir()
    with running_daemon(tmp_path / "d", env={"PYTHONPATH": str(site)}) as d:
        exp = d.submit({
            "command": [sys.executable, trial_script("record_params.py"), "--out", str(out)],
            "metric": "score", "max_trials": 3, "search": "everyname", "params": PARAMS,
        })
        view = d.wait_experiment(exp)
        assert view["state"] == "completed", view
        trials = d.client.trials(exp)
    assert [t["params"] for t in trials] == [
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": "off", "layers": 1},
        {"optimizer": "sgd", "momentum": 0.0, "layers": 2},
        {"optimizer": "adam", "beta1": 0.99, "layers": 1},
    ]
    for t in trials:
        record = json.loads((out / f"{t['number']}.json").read_text())
        assert record["env"] == t["params"] and sorted(record["flags"]) == flags_of(t["params"])
