"""``points_to_evaluate`` through a real daemon: the first trials run the file's points, in
order, then the search's own; a daemon killed mid-way runs no point twice and skips none; a
bad point is refused at its place, as any problem of the file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from tests.integration.harness import running_daemon, trial_script, wait_for

POINTS = [{"x": 0.125, "opt": "b"}, {"x": 0.5, "opt": "a"}, {"x": 0.875, "opt": "b"}]


def probe(out: Path, **overrides: Any) -> dict[str, Any]:
    """Sequential, slow-enough probe.py trials (score = x), searched at random."""
    out.mkdir(exist_ok=True)
    return {"command": [sys.executable, trial_script("probe.py"), "--out", str(out),
                        "--sleep", "0.4"],
            "metric": "score", "goal": "maximize", "max_parallel_trials": 1,
            "max_trials": 5, "search": {"algorithm": "random", "seed": 3},
            "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0},
                       {"name": "opt", "type": "categorical", "values": ["a", "b"]}],
            "points_to_evaluate": POINTS, **overrides}


def test_the_points_run_first_and_once_across_a_daemon_kill(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running_daemon(tmp_path / "d1", state_dir=state) as d:
        exp = d.submit(probe(tmp_path / "out"))
        # Killed while the second point runs: at restart it runs again (it was interrupted),
        # and the next trial takes the third point, not the first one again.
        wait_for(lambda: any(t["number"] == 1 and t["state"] == "running"
                             for t in d.client.trials(exp)), 30, "trial 1 running")
        d.proc.kill()
        d.proc.wait()
    with running_daemon(tmp_path / "d2", state_dir=state) as d:
        view = d.wait_experiment(exp)
        trials = d.client.trials(exp)
        spec = d.client.show(exp)["spec"]
    assert view["state"] == "completed", view
    assert [t["params"] for t in trials[:3]] == POINTS
    assert trials[1]["attempts"] == 2  # the kill interrupted it; it ran again
    searched = [t["params"] for t in trials[3:]]
    assert len(searched) == 2 and not any(p in POINTS for p in searched)
    assert [t["state"] for t in trials] == ["completed"] * 5
    assert spec["points_to_evaluate"] == POINTS


def test_a_bad_point_is_refused_at_its_place(tmp_path: Path) -> None:
    experiment = probe(tmp_path / "out", points_to_evaluate=[{"x": 0.5, "opt": "a"},
                                                             {"x": 2, "op": "a"}])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", **experiment}))
    with running_daemon(tmp_path / "d") as d:
        refused = d.cli("submit", str(path))
        assert d.client.experiments() == []
    assert refused.returncode == 2, refused
    assert refused.stderr.splitlines() == [
        f"gpusched: {path}: 3 problems in the experiment",
        "  points_to_evaluate[1].op: no parameter named 'op' (did you mean 'opt'?)",
        "  points_to_evaluate[1].x: 2 is outside the range of 'x' (0.0..1.0)",
        "  points_to_evaluate[1]: no value for 'opt': a point gives a value to every parameter"
        " that is active under it (the search fills none in)",
    ]
