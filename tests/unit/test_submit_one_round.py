"""What of a refused file the parser hands the daemon (``SpecError.read``), what the daemon
judges of it (``Scheduler.judge_refused``), and where its problems go among the parser's
(``PartialRead.merge``). The integration tests (tests/integration/test_submit_one_round.py)
take the same path through a real daemon and the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gpusched._spec_partial import CHECK_ORDER, PartialRead, PluginRead
from gpusched.errors import Problem, SpecError
from gpusched.models import Goal
from gpusched.spec import parse_experiment, parse_experiment_text
from tests.unit.test_scheduler_endings import idle_scheduler

SOUND: dict[str, Any] = {"command": "python t.py", "metric": "acc",
                         "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}


def refused(data: Any) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_experiment(data, base_dir="/")
    return caught.value


def read_of(**settings: Any) -> PartialRead:
    """The PartialRead of SOUND with ``settings``, refused for its `max_trials: 0`."""
    read = refused({**SOUND, "max_trials": 0, **settings}).read
    assert read is not None
    return read


def test_the_check_order_is_the_order_of_the_parsers_problems() -> None:
    # Every setting wrong, written in the reverse order: the problems come in the parser's.
    wrong = {"name": "-x", "command": [], "workdir": 3, "env": 3, "metric": 3, "goal": "x",
             "objective": "x", "resume_from": 3, "max_trials": 0, "max_parallel_trials": 0,
             "max_failed_trials": 0, "max_retries_per_trial": -1,
             "max_consecutive_failed_trials": 0, "gpus_per_trial": 0.3, "gpu_memory": "x",
             "trial_timeout": "x", "time_budget": "x", "fail_fast": 3, "priority": "x",
             "search": 3, "early_stopping": 3, "stop": 3, "params": 3, "points_to_evaluate": 3}
    problems = refused(dict(reversed(wrong.items()))).problems
    assert set(wrong) == set(CHECK_ORDER)
    assert [p.place for p in problems] == list(CHECK_ORDER)


def test_a_refused_file_carries_the_settings_only_the_daemon_can_judge() -> None:
    read = read_of(search={"algorithm": "tpee", "n": 1}, resume_from="e9", gpus_per_trial=2,
                   early_stopping={"policy": "median", "grace_period": 2}, stop={"acc": 0.9})
    assert read.search == PluginRead("tpee", "search.algorithm", "search", {"n": 1})
    assert read.stopping == (
        PluginRead("median", "early_stopping.policy", "early_stopping", {"grace_period": 2}),
        PluginRead("bounds", "stop", "stop", {"acc": 0.9}))
    assert (read.metric, read.goal) == ("acc", Goal.MAXIMIZE)
    assert (read.gpus_per_trial, read.resume_from) == (2.0, "e9")
    # The defaults, as a submit reads them: `random` is named at `search`.
    default = read_of()
    assert default.search == PluginRead("random", "search", "search", {})
    assert (default.stopping, default.resume_from, default.gpus_per_trial) == ((), None, 1.0)


def test_what_did_not_parse_is_left_out() -> None:
    read = read_of(search={"algorithm": "no such!"}, metric=3, resume_from=3,
                   gpus_per_trial=0.3, early_stopping={"policy": "median", 1: 2},
                   stop={"acc": 0.9, "loss": "low"})
    assert (read.search, read.metric, read.resume_from, read.gpus_per_trial) == (
        None, None, None, None)
    # The names parsed, the options did not: the names can be judged, the options not.
    assert read.stopping == (PluginRead("median", "early_stopping.policy", "early_stopping",
                                        None), PluginRead("bounds", "stop", "stop", None))


def test_places_are_as_the_file_writes_them() -> None:
    read = read_of(search="tpee", early_stopping="medain")
    assert read.search == PluginRead("tpee", "search", "search", {})
    assert read.stopping[0].name_at == "early_stopping"
    aip = refused({"command": "python t.py", "hyperparameters": {
        "algorithm": "TPEE", "resumePreviousJobId": "e9", "enableTrialEarlyStopping": True,
        "maxTrials": 0,
        "params": [{"parameterName": "x", "type": "DOUBLE", "minValue": 0, "maxValue": 1}]}})
    assert aip.read is not None
    assert aip.read.search == PluginRead("TPEE", "hyperparameters.algorithm", "search", {})
    assert aip.read.stopping == (PluginRead(
        "median", "hyperparameters.enableTrialEarlyStopping",
        "hyperparameters.enableTrialEarlyStopping", {}),)
    assert aip.read.place("resume_from") == "hyperparameters.resumePreviousJobId"
    assert aip.read.place("gpus_per_trial") == "gpus_per_trial"  # not written: its name


def test_nothing_is_carried_without_settings_to_read() -> None:
    assert refused([1, 2]).read is None
    with pytest.raises(SpecError) as not_yaml:
        parse_experiment_text("search: tpee\nparams: [\n", source="x.yaml", base_dir="/")
    assert not_yaml.value.read is None


def test_the_daemons_problems_go_where_the_parser_would_have_listed_them() -> None:
    # A problem of the file as a whole (an unknown key, a `--set` that cannot be applied)
    # comes first, as the parser lists it.
    text = ("command: python t.py\nmetric: acc\nmax_trial: 1\nname: -x\nmax_trials: 0\n"
            "priority: x\nparams: 3\n")
    with pytest.raises(SpecError) as caught:
        parse_experiment_text(text, source="x.yaml", base_dir="/", overrides=["nokey"])
    error = caught.value
    assert error.read is not None
    judged = [Problem("search", "S"), Problem("resume_from", "R"),
              Problem("gpus_per_trial", "G"), Problem("stop", "B"),
              Problem("early_stopping.policy", "E")]
    merged = error.read.merge(error.problems, judged)
    assert [(p.place, p.message[:1]) for p in merged] == [
        ("", "u"), ("--set nokey", "m"), ("name", "m"), ("resume_from", "R"), ("max_trials", "m"),
        ("gpus_per_trial", "G"), ("priority", "m"), ("search", "S"),
        ("early_stopping.policy", "E"), ("stop", "B"), ("params", "m")]
    # Places in AI Platform's spelling rank as the setting they are.
    aip = refused({"command": "python t.py", "goal": "up", "trainingInput": {"hyperparameters": {
        "maxTrials": 0, "resumePreviousJobId": "e9",
        "params": [{"parameterName": "x", "type": "DOUBLE", "minValue": 0, "maxValue": 1}]}}})
    assert aip.read is not None
    place = "trainingInput.hyperparameters.resumePreviousJobId"
    assert [p.place for p in aip.read.merge(aip.problems, [Problem(place, "R")])] == [
        "goal", place, "trainingInput.hyperparameters.maxTrials"]


async def test_the_daemon_judges_names_resume_from_and_the_gpu_limit(tmp_path: Path) -> None:
    async with idle_scheduler(tmp_path, max_gpus_per_user=1) as (store, scheduler):
        await store.create_experiment(name="busy", spec={}, seed=0, priority=0,
                                      owner_uid=os.getuid())
        await store.update_experiment("e1", state="running")
        await store.create_experiment(name="done", spec={}, seed=0, priority=0,
                                      owner_uid=os.getuid())
        await store.update_experiment("e2", state="completed")
        bad = await scheduler.judge_refused(read_of(
            gpus_per_trial=2, search={"algorithm": "tpee"}, early_stopping="medain",
            resume_from="busy"))
        fine = await scheduler.judge_refused(read_of(
            search="tpe", early_stopping="median", stop={"acc": 0.9}, resume_from="done"))
    assert [p.place for p in bad] == [
        "gpus_per_trial", "search.algorithm", "early_stopping", "resume_from"]
    assert bad[1].message.startswith("unknown search plugin 'tpee' (did you mean 'tpe'?)")
    assert bad[2].message.startswith("unknown stopping plugin 'medain' (did you mean")
    assert bad[3].message == ("e1 is still running: wait until it ends (`gpusched wait e1`),"
                              " then submit this again")
    assert fine == []


async def test_the_daemon_judges_a_stopping_plugins_options_only_with_all_they_need(
    tmp_path: Path
) -> None:
    # A search plugin's options need the search space: never judged here (the next round).
    options = {"search": {"algorithm": "tpe", "bogus": 1},
               "early_stopping": {"policy": "median", "nope": 2}}
    async with idle_scheduler(tmp_path) as (_store, scheduler):
        judged = await scheduler.judge_refused(read_of(**options))
        no_metric = await scheduler.judge_refused(read_of(**options, metric=3))
        no_goal = await scheduler.judge_refused(read_of(**options, goal="up"))
    assert [p.place for p in judged] == ["early_stopping"]
    assert judged[0].message.startswith("stopping plugin 'median': ") and (
        "nope" in judged[0].message)
    assert no_metric == no_goal == []
