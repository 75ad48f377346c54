"""A Vertex AI tuning config (``gcloud ai hp-tuning-jobs create --config``) through a real daemon:
``gpusched submit --aip vertex.yaml -- python trainer.py`` runs to completion, its trainer
reporting through cloudml-hypertune's file as on Vertex."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gpusched.spec import parse_experiment

from .harness import running_daemon

VERTEX = """\
displayName: vertex digits
maxTrialCount: 4
parallelTrialCount: 1
studySpec:
  metrics: [{metricId: accuracy, goal: MAXIMIZE}]
  algorithm: RANDOM_SEARCH
  measurementSelectionType: BEST_MEASUREMENT
  parameters:
    - parameterId: learning_rate
      doubleValueSpec: {minValue: 0.001, maxValue: 0.1}
      scaleType: UNIT_LOG_SCALE
    - parameterId: optimizer
      categoricalValueSpec: {values: [sgd, adam]}
      conditionalParameterSpecs:
        - parameterSpec:
            parameterId: momentum
            discreteValueSpec: {values: [0.0, 0.9]}
          parentCategoricalValues: {values: [sgd]}
trialJobSpec:
  workerPoolSpecs:
    - machineSpec: {machineType: n1-standard-8, acceleratorType: NVIDIA_TESLA_T4,
                    acceleratorCount: 2}
      replicaCount: 1
      containerSpec:
        imageUri: us-docker.pkg.dev/my-project/trainers/digits:latest
        args: [--epochs=2]
"""

# A trainer as on Vertex: its flags in argv, its metric written as cloudml-hypertune writes it
# (one JSON line a report, values as text, under the tag the job gives it). It records what it
# was given, and reports its best value first: the objective is the best one, not the last.
TRAINER = """\
import json, os, sys, time
out = sys.argv[1]
trial = os.environ["CLOUD_ML_TRIAL_ID"]
flags = [a for a in sys.argv[2:] if a.startswith("--")]
with open(os.path.join(out, trial + ".json"), "w") as fh:
    json.dump({"flags": flags, "gpus": os.environ["CUDA_VISIBLE_DEVICES"]}, fh)
tag = os.environ["CLOUD_ML_HP_METRIC_TAG"]
with open(os.environ["CLOUD_ML_HP_METRIC_FILE"], "a") as fh:
    for step, value in ((1, "0.9"), (2, "0.5")):
        fh.write(json.dumps({tag: value, "global_step": str(step), "trial": trial,
                             "timestamp": time.time()}) + "\\n")
"""


def test_a_vertex_config_runs_to_completion(tmp_path: Path) -> None:
    config = tmp_path / "vertex.yaml"
    config.write_text(VERTEX)
    trainer = tmp_path / "trainer.py"
    trainer.write_text(TRAINER)
    out = tmp_path / "records"
    out.mkdir()
    with running_daemon(tmp_path / "d") as d:
        submitted = d.cli("submit", "--aip", str(config), "--", sys.executable, str(trainer),
                          str(out))
        assert submitted.returncode == 0, submitted.stderr
        exp = submitted.stdout.strip()
        view = d.wait_experiment(exp)
        trials = d.client.trials(exp)
    assert view["state"] == "completed", view
    assert (view["name"], view["metric"]) == ("vertex-digits", "accuracy")
    spec = parse_experiment(view["spec"], base_dir="/")
    assert (spec.search_algorithm, spec.objective.value, spec.gpus_per_trial) == ("random",
                                                                                  "best", 2)
    assert [t["state"] for t in trials] == ["completed"] * 4
    for t in trials:
        params = t["params"]
        assert 0.001 <= params["learning_rate"] <= 0.1
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        record = json.loads((out / f"{t['number']}.json").read_text())
        assert "--epochs=2" in record["flags"]  # the chief's containerSpec.args
        assert f"--optimizer={params['optimizer']}" in record["flags"]
        assert len(record["gpus"].split(",")) == 2  # its acceleratorCount
        assert t["objective"] == 0.9  # BEST_MEASUREMENT
