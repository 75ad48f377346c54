"""An AI Platform config without ``hyperparameterMetricTag`` with a trainer that reports through
``cloudml-hypertune`` without a tag: the metric, the tag the trial is given and the value read
back are one name, ``training/hptuning/metric``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpusched._daemon.launcher import TrialFiles, trial_environment
from gpusched._daemon.reports import HypertuneFileReader, Report
from gpusched.spec import load_aip_file

CONFIG = """\
trainingInput:
  hyperparameters:
    goal: MAXIMIZE
    maxTrials: 4
    params:
      - {parameterName: lr, type: DOUBLE, minValue: 0.001, maxValue: 0.1}
"""


def test_an_untagged_hypertune_report_is_the_experiments_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "hptuning_config.yaml"
    config.write_text(CONFIG)
    spec = load_aip_file(config, ["python", "-m", "trainer.task"])
    assert spec.metric == "training/hptuning/metric"
    files = TrialFiles(tmp_path / "e1" / "0")
    files.create()
    env = trial_environment(daemon_env={}, experiment_env={}, experiment_id="e1", number=0,
                            params={"lr": 0.01}, files=files, uuids=[], metric=spec.metric)
    assert env["CLOUD_ML_HP_METRIC_TAG"] == spec.metric
    # What cloudml-hypertune's report_hyperparameter_tuning_metric("", 0.25, global_step=3)
    # writes: with no tag it stores the value under training/hptuning/metric.
    entry = {"global_step": "3", "timestamp": 1000.5, "training/hptuning/metric": "0.25",
             "trial": "0"}
    Path(env["CLOUD_ML_HP_METRIC_FILE"]).write_text(json.dumps(entry, sort_keys=True) + "\n")
    reports = HypertuneFileReader(files.hypertune, spec.metric).poll(final=True)
    assert reports == [Report({"step": 3, spec.metric: 0.25}, 1000.5)]
