"""`gpusched ls` through a real daemon: the names of `--columns`, `--sort` and `--filter` are
checked once, against every trial and the experiment's own file (its metric, every declared
hyperparameter), whatever a filter or `--limit` leaves; a hint about the other view never names
a command that fails in turn; and a running trial's TIME."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from gpusched.render import fmt_duration
from tests.integration.harness import fake_config, running_daemon, wait_for
from tests.unit.test_views import cells

# Reports `score` (0.5 for sgd, 0.25 for adam), then waits for the gate file (its first argument;
# the params follow as flags) and exits: it runs as long as the test wants.
TRIAL = (
    "import json, os, sys, time\n"
    "from gpusched import trial\n"
    "score = 0.5 if trial.params()['opt'] == 'sgd' else 0.25\n"
    "with open(os.environ['GPUSCHED_REPORT_FILE'], 'a') as fh:\n"
    "    fh.write(json.dumps({'score': score}) + '\\n')\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.02)\n"
)


def conditional(gate: Path, **overrides: Any) -> dict[str, Any]:
    """Trials that wait at ``gate``: a grid of two, sgd (with a momentum) and adam (without:
    it is inactive there), and a hyperparameter `beta` no trial gets (active for a third
    optimizer, past `max_trials`)."""
    experiment: dict[str, Any] = {
        "command": [sys.executable, "-c", TRIAL, str(gate)], "metric": "score",
        "goal": "maximize", "search": {"algorithm": "grid"}, "max_trials": 2,
        "params": [
            {"name": "opt", "type": "categorical", "values": ["sgd", "adam", "lamb"]},
            {"name": "momentum", "type": "discrete", "values": [0.9], "when": {"opt": "sgd"}},
            {"name": "beta", "type": "discrete", "values": [0.99], "when": {"opt": "lamb"}},
        ],
    }
    experiment.update(overrides)
    return experiment


def opened(tmp: Path) -> Path:
    """A gate that is open: the trials end at once."""
    gate = tmp / "open"
    gate.touch()
    return gate


def refused(out: subprocess.CompletedProcess[str], start: str) -> str:
    """The one line a refused `ls` wrote, checked to start with ``gpusched: start``."""
    assert out.returncode == 1 and out.stdout == "", out
    assert out.stderr.startswith(f"gpusched: {start}"), out.stderr
    assert out.stderr.count("\n") == 1
    return out.stderr


def test_names_are_checked_against_every_trial_whatever_a_filter_leaves(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(conditional(opened(tmp_path)), name="cond")
        d.wait_experiment(exp)
        # Only adam's trial is left, and it has no momentum: still a column, shown as `-`.
        out = d.cli("ls", exp, "--filter", "opt == adam", "--columns", "id,momentum")
        assert out.returncode == 0, out.stderr
        assert cells(out.stdout) == [{"TRIAL": f"{exp}/1", "momentum": "-"}]
        out = d.cli("ls", exp, "--sort", "opt", "--limit", "1", "--columns", "id,momentum")
        assert out.returncode == 0, out.stderr
        assert cells(out.stdout) == [{"TRIAL": f"{exp}/1", "momentum": "-"}]
        # A declared hyperparameter no trial got is a column too.
        out = d.cli("ls", exp, "--columns", "id,beta", "--sort", "params.beta")
        assert out.returncode == 0, out.stderr
        # A filter that leaves nothing does not let a typo through.
        for option in (["--columns", "id,momentm"], ["--sort", "momentm"]):
            said = refused(d.cli("ls", exp, "--filter", "state == nothing", *option), "ls ")
            assert "no column 'momentm' (did you mean 'momentum'?); there are: " in said


def test_a_fresh_experiment_has_its_metric_and_params_as_columns(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d", fake=fake_config(2)) as d:
        # Three GPUs a trial on a host of two: it waits, and no trial has reported.
        fresh = d.submit(conditional(opened(tmp_path), gpus_per_trial=3), name="fresh")
        for args in (["--columns", "id,opt,score,momentum"], ["--sort=-score"],
                     ["--filter", "score > 0.5"], ["--filter", "momentum > 0.5"]):
            out = d.cli("ls", fresh, *args)
            assert out.returncode == 0, (args, out.stderr)
        assert out.stdout.splitlines()[0].split() == ["TRIAL", "STATE", "SCORE", "ITER",
                                                      "TRIES", "GPUS", "TIME", "WHY"]
        said = refused(d.cli("ls", fresh, "--columns", "id,scor"), "ls --columns: ")
        assert "no column 'scor' (did you mean 'score'?)" in said
        d.client.cancel(fresh)


def test_a_hint_about_the_other_view_never_names_a_failing_command(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(conditional(opened(tmp_path)), name="hints")
        d.wait_experiment(exp)
        said = refused(d.cli("ls", exp, "--columns", "best.objectiv"), "ls --columns: ")
        assert "gpusched ls --columns best.objectiv" not in said
        said = refused(d.cli("ls", "--columns", "params.optt"), "ls --columns: ")
        assert "gpusched ls EXP --columns params.optt" not in said
        said = refused(d.cli("ls", exp, "--columns", "trials.runing"), "ls --columns: ")
        assert ("(did you mean 'trials.running', a column of the experiments list? gpusched ls"
                " --columns trials.running)") in said
        assert d.cli("ls", "--columns", "id,trials.running").returncode == 0  # and it works
        said = refused(d.cli("ls", "--columns", "trails.running"), "ls --columns: ")
        assert "no column 'trails.running' (did you mean 'trials.running'?)" in said
        # Every name suggested is in the list: the short names a view takes too.
        said = refused(d.cli("ls", exp, "--columns", "tris"), "ls --columns: ")
        assert "(did you mean 'tries'?)" in said and "the short names gpus, iter, time" in said


def test_a_running_trials_time_is_shown(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(conditional(gate, max_trials=1), name="timed")
        wait_for(lambda: [t["reports"] for t in d.client.trials(exp)] == [1], what="a report")
        (view,) = d.cli_json("ls", exp)
        assert view["state"] == "running" and view["duration_s"] is None
        shown = d.cli("ls", exp).stdout.splitlines()
        (row,) = cells("\n".join(shown[: shown.index("")]))
        # The time it had run at its last report, as `watch` shows it (not `-`).
        assert row["TIME"] == fmt_duration(view["last_report"]["time_total_s"]) != "-"
        gate.touch()
        d.wait_experiment(exp)
        (row,) = cells(d.cli("ls", exp).stdout)
        assert row["TIME"] == fmt_duration(d.cli_json("ls", exp)[0]["duration_s"])
