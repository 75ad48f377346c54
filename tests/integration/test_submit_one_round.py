"""One submit lists the parser's problems and the daemon's together, through a real daemon and
the real CLI (docs/experiment-file.md, "What errors look like"). The daemon's were told only
once the parser had nothing left to say: a `search: tpee` came out at the second submit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.harness import Daemon, running_daemon

# Sound but for what the test adds: a metric, a command (the file's folder is its workdir) and
# one parameter.
BASE = ("command: python train.py\nmetric: acc\n"
        "params: [{name: lr, type: double, min: 0.001, max: 0.1}]\n")


def submit(d: Daemon, path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    path.write_text(text)
    return d.cli("submit", str(path), *args)


def problems(out: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """(place, message) of each problem of a refused submit, in the order printed."""
    assert out.returncode == 2, out
    head, *lines = out.stderr.splitlines()
    assert head.endswith(f": {len(lines)} problem{'s' if len(lines) != 1 else ''} in the "
                         "experiment"), out.stderr
    assert all(line.startswith("  ") for line in lines), out.stderr
    pairs = [line.strip().partition(": ") for line in lines]
    # A problem with the file as a whole has no place (none of these messages holds ": ").
    return [(place, message) if sep else ("", place) for place, sep, message in pairs]


def places(out: subprocess.CompletedProcess[str]) -> list[str]:
    return [place for place, _ in problems(out)]


def test_a_parse_problem_and_an_unknown_search_come_in_one_answer(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        out = submit(d, tmp_path / "exp.yaml", BASE + "max_trials: -1\nsearch: tpee\n")
        assert d.client.experiments() == []
    assert problems(out)[0] == ("max_trials", "must be at least 1 (got -1)")
    place, message = problems(out)[1]
    assert place == "search"
    assert message.startswith("unknown search plugin 'tpee' (did you mean 'tpe'?) (installed: ")
    assert len(problems(out)) == 2


def test_a_parse_problem_and_a_bad_resume_from_come_in_one_answer(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        ended = d.submit({"command": [sys.executable, "-c", "pass"], "metric": "acc",
                          "max_trials": 1, "params": [{"name": "x", "type": "double",
                                                       "min": 0, "max": 1}]}, name="ended")
        d.wait_experiment(ended)
        missing = submit(d, tmp_path / "a.yaml", BASE + "goal: up\nresume_from: e99\n")
        # AI Platform's spelling: the problem is where the file writes it.
        aip = submit(d, tmp_path / "b.yaml", "command: python train.py\nhyperparameters:\n"
                     "  resumePreviousJobId: nosuch\n  maxTrials: 0\n"
                     "  params: [{parameterName: lr, type: DOUBLE, minValue: 0, maxValue: 1}]\n")
        # One that names an ended experiment is no problem: the parser's alone are told.
        fine = submit(d, tmp_path / "c.yaml", BASE + f"goal: up\nresume_from: {ended}\n")
        assert [e["id"] for e in d.client.experiments()] == [ended]
    assert problems(missing) == [
        ("goal", "must be one of maximize, minimize (got 'up')"),
        ("resume_from", "no experiment 'e99' (`gpusched ls --all` lists them)")]
    assert problems(aip) == [
        ("hyperparameters.resumePreviousJobId",
         "no experiment 'nosuch' (`gpusched ls --all` lists them)"),
        ("hyperparameters.maxTrials", "must be at least 1 (got 0)")]
    assert places(fine) == ["goal"]


def test_the_daemons_problems_are_listed_where_the_parser_would_list_them(
    tmp_path: Path
) -> None:
    # The file's keys in another order than the parser checks them: its order is the rule.
    text = ("params: 3\nearly_stopping: medain\nsearch: tpee\npriority: high\n"
            "gpus_per_trial: 2\nmax_trials: -1\nresume_from: e99\nname: -bad\n"
            "command: python train.py\nmetric: acc\nmax_trial: 3\n")
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    alone = subprocess.run([sys.executable, "-m", "gpusched", "submit", str(path), "--socket",
                            str(tmp_path / "none.sock")], capture_output=True, text=True,
                           timeout=60, check=False)
    with running_daemon(tmp_path / "d", settings={"max_gpus_per_user": 1}) as d:
        out = submit(d, path, text)
    assert places(out) == ["", "name", "resume_from", "max_trials", "gpus_per_trial",
                           "priority", "search", "early_stopping", "params"]
    # The parser's own are as the CLI lists them with no daemon to ask, in the same order.
    daemons = {"resume_from", "gpus_per_trial", "search", "early_stopping"}
    assert [p for p in problems(out) if p[0] not in daemons] == problems(alone)


def test_a_stopping_plugins_options_come_now_and_a_search_plugins_once_the_file_parses(
    tmp_path: Path
) -> None:
    # A stopping plugin is made of its options, the metric and the goal; a search plugin of
    # the search space too, which the next submit's file may change.
    text = (BASE + "search: {algorithm: tpe, bogus: 1}\n"
            "early_stopping: {policy: median, nope: 2}\n")
    with running_daemon(tmp_path / "d") as d:
        first = submit(d, tmp_path / "exp.yaml", text + "max_trials: -1\n")
        second = submit(d, tmp_path / "exp.yaml", text + "max_trials: 5\n")
    assert places(first) == ["max_trials", "early_stopping"]
    assert places(second) == ["search", "early_stopping"]
    assert problems(first)[1] == problems(second)[1]
    assert problems(first)[1][1].startswith("stopping plugin 'median': ") and (
        "nope" in problems(first)[1][1])
    assert problems(second)[0][1].startswith("search plugin 'tpe': ") and (
        "bogus" in problems(second)[0][1])


def test_a_file_with_only_the_daemons_problems_is_refused_as_before(tmp_path: Path) -> None:
    text = BASE + "gpus_per_trial: 2\nsearch: tpee\nearly_stopping: medain\nresume_from: e99\n"
    with running_daemon(tmp_path / "d", settings={"max_gpus_per_user": 1}) as d:
        out = submit(d, tmp_path / "exp.yaml", text)
    assert places(out) == ["gpus_per_trial", "search", "early_stopping", "resume_from"]


def test_nothing_is_judged_in_a_file_that_is_not_yaml(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        out = submit(d, tmp_path / "exp.yaml", "search: tpee\nresume_from: e99\nparams: [\n")
    assert len(problems(out)) == 1 and "not valid YAML" in problems(out)[0][1]


def test_a_sound_ai_platform_files_daemon_problems_are_where_it_wrote_them(
    tmp_path: Path
) -> None:
    # With no problem of the parser's, the daemon's were placed at our keys (`resume_from:`,
    # `search:`), which an AI Platform file does not have.
    text = ("trainingInput:\n  hyperparameters:\n    hyperparameterMetricTag: acc\n"
            "    resumePreviousJobId: job_1\n    algorithm: tpee\n"
            "    params: [{parameterName: lr, type: DOUBLE, minValue: 0, maxValue: 1}]\n")
    path = tmp_path / "hptuning_config.yaml"
    path.write_text(text)
    with running_daemon(tmp_path / "d") as d:
        out = d.cli("submit", "--aip", str(path), "--", sys.executable, "-c", "pass")
        assert d.client.experiments() == []
    assert places(out) == ["trainingInput.hyperparameters.algorithm",
                           "trainingInput.hyperparameters.resumePreviousJobId"]
    assert problems(out)[0][1].startswith("unknown search plugin 'tpee' (did you mean 'tpe'?)")
    assert problems(out)[1][1] == "no experiment 'job_1' (`gpusched ls --all` lists them)"


def test_a_gpu_limit_problem_is_at_the_accelerator_count_the_file_wrote(tmp_path: Path) -> None:
    # The GPUs of an AI Platform file given by masterConfig.acceleratorConfig.count: its
    # over-limit problem was placed at gpus_per_trial, a key the file does not have.
    sound = ("trainingInput:\n  masterConfig:\n    acceleratorConfig: {count: 2}\n"
             "  hyperparameters:\n    hyperparameterMetricTag: acc\n"
             "    params: [{parameterName: lr, type: DOUBLE, minValue: 0, maxValue: 1}]\n")
    refused = sound.replace("hyperparameterMetricTag: acc", "hyperparameterMetricTag: acc\n"
                            "    maxTrials: 0")
    with running_daemon(tmp_path / "d", settings={"max_gpus_per_user": 1}) as d:
        outs = []
        for name, text in (("a.yaml", sound), ("b.yaml", refused)):
            (tmp_path / name).write_text(text)
            outs.append(d.cli("submit", "--aip", str(tmp_path / name), "--", sys.executable,
                              "-c", "pass"))
    count = "trainingInput.masterConfig.acceleratorConfig.count"
    assert places(outs[0]) == [count]
    assert places(outs[1]) == ["trainingInput.hyperparameters.maxTrials", count]
