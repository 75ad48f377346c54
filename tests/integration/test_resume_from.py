"""``resume_from`` (AI Platform's ``resumePreviousJobId``) through a real daemon: the new
experiment's search sees the earlier experiment's finished trials (issue 3, point 4)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gpusched.models import Goal, TrialState
from gpusched.plugin_api import Param, ParamType, SearchSpace, TrialView
from gpusched.plugins import make_search_plugin
from tests.integration.harness import running_daemon, trial_script, wait_for

GRID = [0.0, 0.25, 0.5, 0.75, 1.0]  # `grid` over x in [0, 1] with its default 5 points


def probe_search(out: Path, search: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Sequential probe.py trials scoring their x (score = x), searched by ``search``."""
    out.mkdir(exist_ok=True)
    return {"command": [sys.executable, trial_script("probe.py"), "--out", str(out)],
            "metric": "score", "goal": "maximize", "max_parallel_trials": 1,
            "max_failed_trials": 100, "search": search,
            "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}], **overrides}


def xs(trials: list[dict[str, Any]]) -> list[float]:
    return [t["params"]["x"] for t in trials]



def test_the_new_search_sees_the_earlier_trials_even_across_a_restart(
    tmp_path: Path,
) -> None:
    out, state = tmp_path / "out", tmp_path / "state"
    slow = [sys.executable, trial_script("probe.py"), "--out", str(out), "--sleep", "0.4"]
    with running_daemon(tmp_path / "d1", state_dir=state) as d:
        first = d.submit(probe_search(out, {"algorithm": "grid"}, max_trials=3), name="warm")
        assert d.wait_experiment(first)["state"] == "completed"
        assert xs(d.client.trials(first)) == GRID[:3]
        # Named like the earlier one, and resuming from it by that name.
        second = d.submit(probe_search(out, {"algorithm": "grid"}, command=slow,
                                       resume_from="warm"), name="warm")
        assert d.client.show(second)["spec"]["resume_from"] == first  # pinned to its id
        wait_for(lambda: d.client.show(second)["trials"]["running"], 20, "its first trial")
        d.proc.kill()  # mid-search: at restart, "warm" would name this experiment itself
        d.proc.wait()
    with running_daemon(tmp_path / "d2", state_dir=state) as d:
        view = d.wait_experiment(second)
        second_trials = d.client.trials(second)
        # tpe from the same seed, with and without the earlier trials.
        tpe = {"algorithm": "tpe", "seed": 7, "n_startup_trials": 2}
        warm = d.submit(probe_search(out, tpe, max_trials=1, resume_from=first), name="tpe")
        cold = d.submit(probe_search(out, tpe, max_trials=1), name="cold")
        # Another metric: the earlier trials never reported it, so they teach nothing.
        other = d.submit(probe_search(out, {"algorithm": "grid"}, max_trials=1,
                                      metric="loss", resume_from=first), name="other")
        ended = {e: d.wait_experiment(e) for e in (warm, cold, other)}
        first_trials = d.client.trials(first)
        (warm_trial,), (cold_trial,) = d.client.trials(warm), d.client.trials(cold)
        (other_trial,) = d.client.trials(other)

    # The grid went on where the earlier experiment stopped, and then ran out.
    assert view["state"] == "completed" and "search space exhausted" in view["reason"]
    assert xs(second_trials) == GRID[3:]
    assert [t["state"] for t in second_trials] == ["completed", "completed"]
    assert second_trials[0]["attempts"] == 2  # the kill interrupted it; it ran again
    # tpe proposed exactly what it proposes given the earlier trials as its history.
    space = SearchSpace((Param("x", ParamType.DOUBLE, low=0.0, high=1.0),))
    # The earlier trials are numbered -N ... -1 in their order: the last is the most recent.
    history = [TrialView(number=i - len(first_trials), params=t["params"],
                         state=TrialState.COMPLETED, objective=t["objective"],
                         metric_values=(t["objective"],), metric_steps=(1,))
               for i, t in enumerate(first_trials)]
    plugin = make_search_plugin("tpe", space, goal=Goal.MAXIMIZE, seed=7,
                                options={"n_startup_trials": 2})
    warm_answer, cold_answer = plugin.suggest(0, history), plugin.suggest(0, [])
    assert isinstance(warm_answer, Mapping) and isinstance(cold_answer, Mapping)
    assert warm_trial["params"] == dict(warm_answer)
    assert cold_trial["params"] == dict(cold_answer)
    assert warm_trial["params"] != cold_trial["params"]
    assert all(e["state"] == "completed" for e in ended.values() if e["id"] != other)
    assert other_trial["params"]["x"] == GRID[0]  # no earlier point counted as used


def test_resume_from_what_does_not_exist_or_has_not_ended_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d") as d:
        running = d.submit(probe_search(out, {"algorithm": "random"}, max_trials=1, command=[
            sys.executable, trial_script("probe.py"), "--out", str(out), "--sleep", "30"]),
            name="long")
        for target, said in [("nosuch", "resume_from: no experiment 'nosuch'"),
                             ("long", f"resume_from: {running} is still "),
                             (running, "wait until it ends")]:
            path = tmp_path / "resume.yaml"
            path.write_text(yaml.safe_dump({"name": "r", **probe_search(
                out, {"algorithm": "random"}, resume_from=target)}))
            refused = d.cli("submit", str(path))
            # A refused file: exit 2, its problem at its place (docs/experiment-file.md).
            assert refused.returncode == 2 and said in refused.stderr, refused.stderr
            assert refused.stderr.startswith(f"gpusched: {path}: 1 problem in the experiment\n")
            assert refused.stderr.count("\n") == 2
        assert [e["id"] for e in d.client.experiments()] == [running]
        d.cli("cancel", running)
