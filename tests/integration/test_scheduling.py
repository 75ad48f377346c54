"""Several experiments share the GPUs: priority, then fair share, then first come."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import fake_config, running_daemon, trial_script, wait_for
from tests.integration.test_gpus import probe_experiment


def sleepy(out: Path, trials: int, **overrides: Any) -> dict[str, Any]:
    return probe_experiment(out, max_trials=trials, command=[
        sys.executable, trial_script("probe.py"), "--out", str(out), "--sleep", "0.4"],
        **overrides)


def gated(out: Path, gate: Path, trials: int) -> dict[str, Any]:
    """An experiment whose trials run until the file ``gate`` exists."""
    return probe_experiment(out, max_trials=trials, command=[
        sys.executable, trial_script("gate.py"), "--gate", str(gate)])


def starts(d: Any, exp: str) -> list[float]:
    return [t["started_at"] for t in d.client.trials(exp)]


def test_higher_priority_experiment_goes_first(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    with running_daemon(tmp_path / "d", fake=fake_config(1)) as d:
        # low's trials wait for the gate file: low/0 holds the only GPU until high is queued,
        # however long the submit takes on a busy machine.
        low = d.submit(gated(tmp_path / "a", gate, 3), name="low")
        wait_for(lambda: d.client.show(low)["trials"]["running"] == 1, 20, "low's first trial")
        high = d.submit(sleepy(tmp_path / "b", 2, priority=5), name="high")
        gate.touch()
        d.wait_experiment(low)
        d.wait_experiment(high)
        low_starts, high_starts = starts(d, low), starts(d, high)
    # low/0 was already running; after it, both of high's trials ran before low's others.
    assert max(high_starts) < sorted(low_starts)[1]


def test_equal_priorities_share_fairly_then_first_come(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    with running_daemon(tmp_path / "d", fake=fake_config(2)) as d:
        first = d.submit(gated(tmp_path / "a", gate, 4), name="first")
        wait_for(lambda: d.client.show(first)["trials"]["running"] == 2, 20, "both GPUs busy")
        second = d.submit(sleepy(tmp_path / "b", 4), name="second")
        gate.touch()
        assert d.wait_experiment(first)["state"] == "completed"
        assert d.wait_experiment(second)["state"] == "completed"
        a, b = sorted(starts(d, first)), sorted(starts(d, second))
    # `first` held both GPUs, and the gate freed both at once. Then the two experiments held
    # none: first come, `first` got one GPU (its third trial), and fair share gave the other
    # to `second` (fewer GPUs in use), not to `first`'s fourth trial. (Which of the two
    # starts a fraction of a millisecond earlier depends on which end is seen first.)
    assert b[0] < a[3]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores: 2 CPU slots")
def test_a_cpu_only_experiments_own_limit_does_not_hold_it_behind_another(
    tmp_path: Path,
) -> None:
    # With max_parallel_trials 1, a CPU-only experiment waited for every other experiment's
    # CPU-only trial to end, though the host had a free core for it.
    gate = tmp_path / "go"
    with running_daemon(tmp_path / "d", fake=fake_config(0)) as d:
        first = d.submit({**gated(tmp_path / "a", gate, 1), "gpus_per_trial": 0,
                          "max_parallel_trials": 1}, name="first")
        wait_for(lambda: d.client.show(first)["trials"]["running"] == 1, 20, "first's trial")
        second = d.submit({**sleepy(tmp_path / "b", 1), "gpus_per_trial": 0,
                           "max_parallel_trials": 1}, name="second")
        # It runs while first's trial still holds the other core.
        assert d.wait_experiment(second, timeout=20)["state"] == "completed"
        assert d.client.show(first)["trials"]["running"] == 1
        gate.touch()
        assert d.wait_experiment(first)["state"] == "completed"
