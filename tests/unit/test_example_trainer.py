"""The digits example really learns, reports the way a trial must, and honours SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gpusched._daemon.reports import HypertuneFileReader, ReportFileReader

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"


def _start(script: str, flags: list[str], tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    """Start an example as the daemon would: from its folder, flags as ``--NAME=VALUE``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GPUSCHED_", "CLOUD_ML_"))}
    return subprocess.Popen(
        [sys.executable, str(DIGITS / script), *flags],
        cwd=DIGITS,
        env=base | {"OMP_NUM_THREADS": "1"} | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return err


def test_good_hyperparameters_learn_and_bad_ones_do_not(tmp_path: Path) -> None:
    runs = {
        "good": ["--learning_rate=0.01", "--optimizer=adam", "--hidden=64", "--layers=1"],
        "bad": ["--learning_rate=0.0001", "--optimizer=sgd", "--hidden=64", "--layers=1.0"],
    }
    procs = {
        name: _start(
            "train.py",
            ["--epochs", "3", *flags],
            tmp_path,
            GPUSCHED_REPORT_FILE=str(tmp_path / f"{name}.jsonl"),
        )
        for name, flags in runs.items()
    }
    accuracy = {}
    for name, proc in procs.items():
        _finish(proc)
        reports = ReportFileReader(tmp_path / f"{name}.jsonl").poll(final=True)
        assert [r.values["step"] for r in reports] == [1, 2, 3]
        assert set(reports[-1].values) == {"step", "val_accuracy", "val_loss", "train_loss"}
        assert all(r.time is not None for r in reports)
        accuracy[name] = float(reports[-1].values["val_accuracy"])
    assert accuracy["good"] > 0.8
    assert accuracy["bad"] < 0.4


def test_hypertune_variant_writes_what_the_hypertune_reader_reads(tmp_path: Path) -> None:
    metrics = tmp_path / "hypertune" / "output.metrics"
    proc = _start(
        "train_hypertune.py",
        ["--epochs=3", "--learning_rate=0.01"],
        tmp_path,
        CLOUD_ML_HP_METRIC_FILE=str(metrics),
        CLOUD_ML_HP_METRIC_TAG="val_accuracy",
        CLOUD_ML_TRIAL_ID="5",
    )
    _finish(proc)
    entries = [json.loads(line) for line in metrics.read_text().splitlines()]
    # cloudml-hypertune's format: keys sorted, values strings, a float timestamp.
    assert [list(e) for e in entries] == [["global_step", "timestamp", "trial", "val_accuracy"]] * 3
    assert [(e["global_step"], e["trial"]) for e in entries] == [("1", "5"), ("2", "5"), ("3", "5")]
    reports = HypertuneFileReader(metrics, "val_accuracy").poll(final=True)
    assert [r.values["step"] for r in reports] == [1, 2, 3]
    assert float(reports[-1].values["val_accuracy"]) > 0.8


def test_standalone_run_prints_its_progress(tmp_path: Path) -> None:
    err = _finish(_start("train.py", ["--epochs", "2"], tmp_path))
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("[gpusched] step=2 val_accuracy=")


def test_sigterm_ends_a_long_run_promptly(tmp_path: Path) -> None:
    report_file = tmp_path / "reports.jsonl"
    proc = _start("train.py", ["--epochs=100000"], tmp_path, GPUSCHED_REPORT_FILE=str(report_file))
    deadline = time.monotonic() + 30
    while not (report_file.exists() and report_file.stat().st_size):
        assert time.monotonic() < deadline, "no report within 30 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 2


def test_a_trial_goes_on_from_its_checkpoint_exactly_as_if_never_stopped(tmp_path: Path) -> None:
    flags = ["--learning_rate=0.01", "--optimizer=adam", "--hidden=32", "--layers=2"]

    def run(epochs: int, name: str, checkpoints: Path) -> list[dict[str, Any]]:
        report = tmp_path / f"{name}.jsonl"
        _finish(_start("train.py", [*flags, f"--epochs={epochs}"], tmp_path,
                       GPUSCHED_REPORT_FILE=str(report),
                       GPUSCHED_CHECKPOINT_DIR=str(checkpoints)))
        return [r.values for r in ReportFileReader(report).poll(final=True)]

    straight = run(4, "straight", tmp_path / "one")
    first = run(2, "first", tmp_path / "two")
    promoted = run(4, "promoted", tmp_path / "two")  # hyperband: same folder, a larger budget
    assert [r["step"] for r in first] == [1, 2]
    assert [r["step"] for r in promoted] == [3, 4]  # only the epochs not trained yet
    assert first + promoted == straight  # weights, optimizer state and batch order all kept
    assert run(4, "again", tmp_path / "two") == []  # nothing left to train
