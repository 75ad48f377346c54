"""The PyTorch example (examples/digits/train_torch.py, torch.yaml) learns, checkpoints, saves
on SIGTERM and then dies of it, resumes exactly, and its experiment file matches its flags.

torch is an optional extra: the tests that train skip without it; the one that checks the
experiment file against the trainer's flags needs no torch and always runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon.launcher import trial_command
from gpusched._daemon.reports import ReportFileReader
from gpusched._daemon.trial_runner import describe_exit
from gpusched.plugins import make_search_plugin, make_stopping_plugin
from gpusched.spec import load_experiment_file

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
SCRIPT = "train_torch.py"
CHECKPOINT = "digits-torch.pt"  # train_torch.CHECKPOINT_NAME
# find_spec, not importorskip: the trainers run in subprocesses, so this process need not pay
# for importing torch; a torch that is installed but broken fails the tests instead.
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (pip install -e '.[torch]')")
GOOD = ["--learning_rate=0.01", "--optimizer=adam", "--hidden=64"]


def _start(flags: list[str], **env: str) -> subprocess.Popen[str]:
    """Start the trainer as the daemon would: from its folder, flags as ``--NAME=VALUE``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GPUSCHED_", "CLOUD_ML_"))}
    return subprocess.Popen(
        [sys.executable, str(DIGITS / SCRIPT), *flags],
        cwd=DIGITS,
        env=base | {"OMP_NUM_THREADS": "1"} | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 120, *, returncode: int = 0) -> str:
    """Its stderr, once it ended with ``returncode`` (negative: killed by that signal;
    ``timeout``: a guard against a hang, not a limit)."""
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == returncode, err
    return err


def _trial(flags: list[str], reports: Path, checkpoints: Path | None = None
           ) -> subprocess.Popen[str]:
    """The trainer as a trial: reporting to ``reports``, checkpointing in ``checkpoints``."""
    env = {"GPUSCHED_REPORT_FILE": str(reports)}
    if checkpoints is not None:
        env["GPUSCHED_CHECKPOINT_DIR"] = str(checkpoints)
    return _start(flags, **env)


def _reports(path: Path) -> list[dict[str, Any]]:
    """What the daemon reads from a report file, each report's values."""
    return [r.values for r in ReportFileReader(path).poll(final=True)]


# --- without torch ---------------------------------------------------------------------------

# Run in the trainer's folder, as a trial is: imports it, parses each argv read from stdin.
_PARSE = """
import json, sys
import train_torch
parsed = [vars(train_torch.parse_args(argv)) for argv in json.load(sys.stdin)]
json.dump({"parsed": parsed, "torch_imported": "torch" in sys.modules}, sys.stdout)
"""


def test_the_experiment_file_is_valid_and_its_params_are_the_trainers_flags() -> None:
    spec = load_experiment_file(DIGITS / "torch.yaml")
    assert spec.warnings() == ()
    assert spec.workdir == str(DIGITS)
    assert spec.command[:2] == ("python", SCRIPT)
    # The plugins it names exist and take its options, as the daemon checks at submit.
    search = make_search_plugin(spec.search_algorithm, spec.space(), goal=spec.goal, seed=0,
                                options=spec.search_options)
    assert spec.early_stopping_policy is not None
    make_stopping_plugin(spec.early_stopping_policy, metric=spec.metric, goal=spec.goal,
                         options=spec.early_stopping_options)
    suggested: list[dict[str, Any]] = []
    for number in range(8):
        params = search.suggest(number, [])
        assert isinstance(params, dict)
        suggested.append(params)
    # The flags exactly as the daemon writes them; the last argv adds hyperband's budget flag.
    argvs = [trial_command(spec.command, params)[2:] for params in suggested]
    argvs.append([*argvs[0], "--epochs=27"])
    out = subprocess.run([sys.executable, "-c", _PARSE], cwd=DIGITS, input=json.dumps(argvs),
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["torch_imported"] is False  # --help and this check stay fast, torch or not
    *parsed, budgeted = answer["parsed"]
    for params, flags in zip(suggested, parsed, strict=True):
        # The same values, of the same types (an integer parsed as 81.0 would break nn.Linear).
        assert {name: (flags[name], type(flags[name])) for name in params} == {
            name: (value, type(value)) for name, value in params.items()}
        assert flags["epochs"] == int(spec.command[3])
    assert budgeted == {**parsed[0], "epochs": 27}


# --- with torch ------------------------------------------------------------------------------


@needs_torch
def test_good_hyperparameters_learn_and_bad_ones_do_not(tmp_path: Path) -> None:
    runs = {
        "good": GOOD,
        "bad": ["--learning_rate=0.0001", "--optimizer=sgd", "--hidden=64.0"],
    }
    procs = {name: _trial(["--epochs=3", *flags], tmp_path / f"{name}.jsonl")
             for name, flags in runs.items()}
    accuracy = {}
    for name, proc in procs.items():
        err = _finish(proc)
        assert err.count("train_torch: training on ") == 1, err
        reports = _reports(tmp_path / f"{name}.jsonl")
        assert [r["step"] for r in reports] == [1, 2, 3]
        assert set(reports[-1]) == {"step", "val_accuracy", "val_loss", "train_loss"}
        accuracy[name] = float(reports[-1]["val_accuracy"])
    assert accuracy["good"] > 0.8
    assert accuracy["bad"] < 0.4


@needs_torch
def test_standalone_run_prints_its_progress_and_leaves_no_file() -> None:
    def files() -> set[str]:
        return {p.name for p in DIGITS.iterdir() if p.name != "__pycache__"}

    before = files()
    lines = _finish(_start(["--epochs=2", *GOOD])).splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("train_torch: training on ")
    assert lines[2].startswith("[gpusched] step=2 val_accuracy=")
    assert files() == before  # no ./checkpoints: trial.checkpoint_dir() is used under gpusched


@needs_torch
def test_sigterm_saves_a_checkpoint_then_kills_and_the_next_run_goes_on_exactly(
    tmp_path: Path
) -> None:
    # Small batches: an epoch has 375 of them, so the SIGTERM most likely lands mid-epoch.
    flags = [*GOOD, "--batch_size=8"]
    checkpoints = tmp_path / "stopped"
    report = tmp_path / "stopped.jsonl"
    proc = _trial([*flags, "--epochs=100000"], report, checkpoints)
    try:
        deadline = time.monotonic() + 60
        while not (report.exists() and report.stat().st_size):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no report within 60 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        # 10 s: gpusched's default grace period, after which it would SIGKILL. Killed by the
        # SIGTERM, not exit 0: a SIGTERM gpusched did not send must not make a run cut short
        # a completed trial.
        err = _finish(proc, timeout=10, returncode=-signal.SIGTERM)
    finally:
        if proc.poll() is None:  # a failed test leaves no trainer running
            proc.kill()
            proc.communicate()
    said = re.findall(r"SIGTERM (after epoch (\d+) and \d+ samples of the next): saved", err)
    assert len(said) == 1, err
    # Its last line: what the reason of a crash ends with, "killed by signal SIGTERM: ...".
    assert err.endswith(f"saved to {checkpoints / CHECKPOINT}\n")
    assert describe_exit(proc.returncode) == "killed by signal SIGTERM"  # gpusched's reason
    assert os.listdir(checkpoints) == [CHECKPOINT]  # saved, no temporary file left
    stopped = _reports(report)
    assert int(said[0][1]) == stopped[-1]["step"]  # every epoch it saved, it reported
    epochs = stopped[-1]["step"] + 2

    resumed = _trial([*flags, f"--epochs={epochs}"], tmp_path / "resumed.jsonl", checkpoints)
    straight = _trial([*flags, f"--epochs={epochs}"], tmp_path / "straight.jsonl",
                      tmp_path / "straight")
    assert f"train_torch: resuming {said[0][0]}\n" in _finish(resumed)  # saved where it stopped
    _finish(straight)
    after = _reports(tmp_path / "resumed.jsonl")
    assert [r["step"] for r in after] == [epochs - 1, epochs]  # the next epoch, then on
    # Weights, optimizer state, sample order and the epoch's loss so far were all kept.
    assert stopped + after == _reports(tmp_path / "straight.jsonl")


@needs_torch
def test_a_promoted_trial_trains_only_the_epochs_it_has_not_done(tmp_path: Path) -> None:
    def run(epochs: int, name: str, checkpoints: Path) -> subprocess.Popen[str]:
        return _trial([*GOOD, f"--epochs={epochs}"], tmp_path / f"{name}.jsonl", checkpoints)

    straight, first = run(4, "straight", tmp_path / "one"), run(2, "first", tmp_path / "two")
    _finish(straight)
    _finish(first)
    _finish(run(4, "promoted", tmp_path / "two"))  # hyperband: same folder, a larger budget
    promoted = _reports(tmp_path / "promoted.jsonl")
    assert [r["step"] for r in promoted] == [3, 4]
    assert _reports(tmp_path / "first.jsonl") + promoted == _reports(tmp_path / "straight.jsonl")
    _finish(run(4, "again", tmp_path / "two"))
    assert _reports(tmp_path / "again.jsonl") == []  # nothing left to train
