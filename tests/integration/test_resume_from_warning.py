"""``gpusched submit`` warns when ``resume_from`` names an experiment that its search cannot
learn from: its trials failed, no finished trial reported the metric (with the closest name
they reported), or none has params in the new space. The search then starts from scratch; the
submit goes through all the same."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from tests.integration.harness import running_daemon, trial_script

WARNING = "gpusched: warning: resume_from: "
SCRATCH = ", so the search has nothing to learn from it and starts from scratch, as without" \
          " resume_from. To learn from it, "
DROP = "; else drop resume_from\n"


def probe(out: Path, **overrides: Any) -> dict[str, Any]:
    """One probe.py trial (score = x) over x in [0, 1]."""
    out.mkdir(exist_ok=True)
    return {"command": [sys.executable, trial_script("probe.py"), "--out", str(out)],
            "metric": "score", "goal": "maximize", "max_trials": 1,
            "search": {"algorithm": "grid"},
            "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}], **overrides}


def test_submit_warns_when_the_earlier_experiment_has_nothing_to_teach(tmp_path: Path) -> None:
    out = tmp_path / "out"
    files = {
        # It reported `score`, never `loss`.
        "other-metric": probe(out, metric="loss", goal="minimize"),
        # Its trial ran at x = 0, outside this space.
        "other-space": probe(out, params=[{"name": "x", "type": "double", "min": 2.0,
                                           "max": 3.0}]),
        "usable": probe(out),
    }
    with running_daemon(tmp_path / "d") as d:
        first = d.submit(probe(out), name="first")
        assert d.wait_experiment(first)["state"] == "completed"
        answers = {}
        for name, experiment in files.items():
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump({"name": name, **experiment,
                                            "resume_from": "first"}))
            answers[name] = d.cli("submit", str(path))
        ids = {e["name"]: e["id"] for e in d.client.experiments()}
    assert all(a.returncode == 0 for a in answers.values()), answers
    assert answers["other-metric"].stderr == (
        f"{WARNING}{first} has no finished trial (completed, or stopped) that reported 'loss'"
        f" (its trials reported score, step){SCRATCH}if its trials reported the metric under"
        f" another name (`gpusched show {first}/0` shows a trial's last report), set metric to"
        f" that name{DROP}")
    assert answers["other-space"].stderr == (
        f"{WARNING}none of the 1 finished trials of {first} has params that fit this"
        f" experiment's (the first: 'x': 0.0 is outside [2.0, 3.0]){SCRATCH}make this"
        f" experiment's params (their names, ranges and values) take in the values its trials"
        f" ran with{DROP}")
    assert answers["usable"].stderr == ""
    # Warned, not refused: each was submitted.
    assert set(ids) == {"first", *files}


def test_the_warning_says_the_earlier_trials_failed_or_guesses_the_metric(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d") as d:
        # Its trial reported `score`, then crashed: it failed, with no result.
        crashed = d.submit({**probe(out), "command": [*probe(out)["command"], "--exit", "1"]},
                           name="crashed")
        first = d.submit(probe(out), name="first")
        for exp in (crashed, first):
            d.wait_experiment(exp)
        answers = {}
        for name, experiment in {"after-crash": probe(out, resume_from="crashed"),
                                 "misnamed": probe(out, metric="scores",
                                                   resume_from="first")}.items():
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump({"name": name, **experiment}))
            answers[name] = d.cli("submit", str(path))
    assert all(a.returncode == 0 for a in answers.values()), answers
    # Not "set metric to that name": it did report score.
    assert answers["after-crash"].stderr == (
        f"{WARNING}the one trial of {crashed} failed: it has no result, so the search has"
        " nothing to learn from it and starts from scratch, as without resume_from. Resume"
        f" from an experiment whose trials have results (`gpusched ls {crashed}` says why these"
        " ended), or drop resume_from\n")
    assert answers["misnamed"].stderr.startswith(
        f"{WARNING}{first} has no finished trial (completed, or stopped) that reported"
        " 'scores' (its trials reported score, step) (did you mean 'score'?), so the search")
