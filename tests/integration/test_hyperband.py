"""Hyperband through a real daemon: budgets as a flag and GPUSCHED_BUDGET, promoted trials in
the checkpoint folder of the trial they continue, brackets that survive a restart."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.integration.harness import fake_config, running_daemon, trial_script, wait_for


def _experiment(truth: Path, **over: Any) -> dict[str, Any]:
    truth.mkdir(parents=True, exist_ok=True)
    return {
        # A default --epochs in the command: the budget flag comes after it and wins.
        "command": [sys.executable, trial_script("epochs.py"), "--epochs", "100",
                    "--truth", str(truth)],
        "metric": "score", "goal": "maximize",
        "search": {"algorithm": "hyperband", "seed": 3, "max_epochs": 9, "factor": 3},
        "max_parallel_trials": 2,
        "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}],
        **over,
    }


def _seen(truth: Path, exp: str, number: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((truth / f"{exp}-{number}.json").read_text())
    return data


def _check_brackets(trials: list[dict[str, Any]], truth: Path, exp: str) -> None:
    """What every hyperband run with max_epochs 9, factor 3 must look like, whatever order its
    trials ended in: the brackets' trials, their budgets, their promotions and folders."""
    # Every bracket: 9+3+1, 5+2 and 3 trials (max_trials comes from them).
    assert len(trials) == 23 and all(t["state"] == "completed" for t in trials)
    by_number = {t["number"]: t for t in trials}
    fresh = [t for t in trials if t["continues"] is None]
    assert [t["budget"] for t in fresh] == [1] * 9 + [3] * 5 + [9] * 3
    for t in trials:
        seen = _seen(truth, exp, t["number"])
        # The budget arrives as the flag (over the command's --epochs 100) and in the env.
        assert seen["argv_epochs"] == t["budget"]
        assert seen["GPUSCHED_BUDGET"] == str(t["budget"])
        if t["continues"] is None:
            assert seen["GPUSCHED_INITIAL_BUDGET"] == "0" and seen["GPUSCHED_CONTINUES"] is None
            assert seen["checkpoint_dir"] == str(Path(t["dir"]) / "checkpoint")
            continue
        parent = by_number[int(t["continues"].split("/")[1])]
        assert t["params"] == parent["params"] and t["budget"] == 3 * parent["budget"]
        assert seen["GPUSCHED_CONTINUES"] == str(parent["number"])
        assert seen["GPUSCHED_INITIAL_BUDGET"] == str(parent["budget"])
        # Same folder as the trial it continues, and it went on from that trial's epochs.
        assert seen["checkpoint_dir"] == _seen(truth, exp, parent["number"])["checkpoint_dir"]
        assert seen["resumed_at"] == parent["budget"]
        assert seen["trained_by"][-2] == parent["number"]
    # The top third of each first rung went on (score = x * epochs: the best x's).
    for rung, places in ((fresh[:9], 3), (fresh[9:14], 2)):
        went_on = {t["continues"] for t in trials if t["continues"]} & {
            f"{exp}/{t['number']}" for t in rung}
        best = sorted(rung, key=lambda t: -t["objective"])[:places]
        assert went_on == {f"{exp}/{t['number']}" for t in best}


def test_hyperband_budgets_promotions_and_shared_checkpoints(tmp_path: Path) -> None:
    truth = tmp_path / "truth"
    with running_daemon(tmp_path / "d", fake=fake_config(2)) as d:
        exp = d.submit(_experiment(truth))
        view = d.wait_experiment(exp, timeout=120)
        trials = d.client.trials(exp)
        promoted = next(t for t in trials if t["continues"])
        shown = d.cli("show", promoted["id"])
        as_json = d.cli_json("show", promoted["id"])
    assert view["state"] == "completed", view["reason"]
    _check_brackets(trials, truth, exp)
    for t in trials:  # one report per epoch the trial trained itself
        assert t["reports"] == t["budget"] - _seen(truth, exp, t["number"])["resumed_at"]
    assert (as_json["budget"], as_json["continues"]) == (promoted["budget"],
                                                         promoted["continues"])
    assert shown.returncode == 0, shown.stderr
    assert f"continues    {promoted['continues']}" in shown.stdout
    assert f"budget       {promoted['budget']}" in shown.stdout


def test_a_restarted_daemon_continues_the_same_brackets(tmp_path: Path) -> None:
    truth, state = tmp_path / "truth", tmp_path / "state"
    with running_daemon(tmp_path / "d1", state_dir=state) as d:
        exp = d.submit(_experiment(truth))
        wait_for(lambda: len(d.client.trials(exp)) >= 11, 60, "11 trials")
        before = d.client.trials(exp)
    with running_daemon(tmp_path / "d2", state_dir=state) as d:
        assert d.wait_experiment(exp, timeout=120)["state"] == "completed"
        after = d.client.trials(exp)
    # The restarted daemon kept the trials it found and went on with their brackets (a
    # plugin that lost its state would open bracket 0 again: 9 more trials at 1 epoch).
    for old in before:
        new = after[old["number"]]
        assert (new["params"], new["budget"], new["continues"]) == (
            old["params"], old["budget"], old["continues"])
    _check_brackets(after, truth, exp)
