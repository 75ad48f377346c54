"""Trials on fake GPUs: isolation, sharing, the release barrier, quarantine, foreign memory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import fake_config, running_daemon, trial_script, wait_for


def probe_experiment(out: Path, **overrides: Any) -> dict[str, Any]:
    """An experiment of probe.py trials that record what they saw into ``out``."""
    out.mkdir(exist_ok=True)
    experiment: dict[str, Any] = {
        "command": [sys.executable, trial_script("probe.py"), "--out", str(out)],
        "metric": "score", "goal": "maximize", "max_trials": 4, "max_failed_trials": 100,
        "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}],
    }
    experiment.update(overrides)
    return experiment


def records(out: Path) -> list[dict[str, Any]]:
    """The final record each probe trial wrote (one per trial run)."""
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["start"] < b["end"] and b["start"] < a["end"])


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The largest number of runs alive at one moment (a sweep over starts and ends; an end
    at the same moment as a start comes first)."""
    events = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    alive = most = 0
    for _, change in events:
        alive += change
        most = max(most, alive)
    return most


def test_trials_see_exactly_their_own_uuid_and_never_share_a_gpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d", fake=fake_config(2)) as d:
        uuids = {g["uuid"] for g in d.client.gpus()["devices"]}
        exp = d.submit(probe_experiment(out, max_trials=8, max_parallel_trials=4,
                                        params=[{"name": "sleep", "type": "discrete",
                                                 "values": [0.2, 0.3]}]))
        view = d.wait_experiment(exp)
    assert view["state"] == "completed", view
    runs = records(out)
    assert len(runs) == 8
    for run in runs:
        assert run["cuda"] in uuids  # exactly one UUID, one of the daemon's devices
        assert run["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a["cuda"] == b["cuda"]:
                assert not overlaps(a, b), (a, b)
    # Two GPUs, four allowed in parallel: the GPUs, not max_parallel_trials, were the limit.
    assert any(overlaps(a, b) for i, a in enumerate(runs) for b in runs[i + 1:])


def test_half_gpu_trials_share_one_gpu_two_at_a_time(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d", fake=fake_config(1)) as d:
        exp = d.submit(probe_experiment(out, max_trials=6, gpus_per_trial=0.5,
                                        params=[{"name": "sleep", "type": "discrete",
                                                 "values": [0.4]}]))
        assert d.wait_experiment(exp)["state"] == "completed"
    runs = records(out)
    assert len({r["cuda"] for r in runs}) == 1
    # Counting, for each run, the runs it overlaps would see three where a run overlapped one
    # neighbour at its start and another at its end: two at once, but three in its lifetime.
    assert most_at_once(runs) == 2


def test_cpu_only_trial_sees_no_gpu_and_only_allowed_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUSCHED_TEST_LEAK", "secret of the daemon's environment")
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d", fake=fake_config(1)) as d:
        exp = d.submit(probe_experiment(out, max_trials=1, gpus_per_trial=0,
                                        env={"MY_SETTING": "7"}))
        assert d.wait_experiment(exp)["state"] == "completed"
        trial = d.client.show(f"{exp}/0")
    (run,) = records(out)
    assert run["cuda"] == ""
    assert run["leaked"] is None
    assert run["has_home"]
    env = run["env"]
    assert env["GPUSCHED_EXPERIMENT"] == exp and env["GPUSCHED_TRIAL"] == "0"
    assert json.loads(env["GPUSCHED_PARAMS"]) == trial["params"]
    assert env["GPUSCHED_TRIAL_DIR"] == trial["dir"]
    assert env["GPUSCHED_REPORT_FILE"].startswith(trial["dir"])
    assert env["GPUSCHED_CHECKPOINT_DIR"].startswith(trial["dir"])
    assert env["CLOUD_ML_HP_METRIC_TAG"] == "score" and env["CLOUD_ML_TRIAL_ID"] == "0"
    assert "CLOUD_ML_HP_METRIC_FILE" in env
    assert f"--x={trial['params']['x']!r}" in run["argv"]


def test_next_trial_waits_until_the_gpu_memory_is_released(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d", fake=fake_config(1, release_delay_s=1.5)) as d:
        exp = d.submit(probe_experiment(out, max_trials=2))

        def releasing() -> bool:
            (gpu,) = d.client.gpus()["devices"]
            return bool(gpu["state"] == "releasing" and gpu["releasing"] == [f"{exp}/0"])

        wait_for(releasing, 20, "the GPU to be releasing after the first trial")
        assert d.wait_experiment(exp)["state"] == "completed"
        first, second = d.client.trials(exp)
    assert second["started_at"] - first["ended_at"] >= 1.4
    a, b = sorted(records(out), key=lambda r: r["start"])
    assert b["start"] - a["end"] >= 1.4


def test_unreleased_gpu_is_quarantined_then_checked_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fake = fake_config(1, release_delay_s=600)
    with running_daemon(tmp_path / "d", fake=fake, settings={"release_timeout_s": 0.5}) as d:
        exp = d.submit(probe_experiment(out, max_trials=2))

        def quarantined() -> dict[str, Any] | None:
            (gpu,) = d.client.gpus()["devices"]
            return gpu if gpu["state"] == "quarantined" else None

        gpu = wait_for(quarantined, 20, "the GPU to be quarantined")
        assert f"{exp}/0" in gpu["reason"] and "memory not back" in gpu["reason"]
        assert [t["state"] for t in d.client.trials(exp)] == ["completed"]  # second held back
        d.set_fake(fake_config(1, release_delay_s=0))
        assert d.wait_experiment(exp)["state"] == "completed"
        assert len(d.client.trials(exp)) == 2
        assert d.client.gpus()["devices"][0]["state"] == "free"


def test_gpu_with_foreign_memory_is_not_given_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fake = fake_config(2)
    fake["devices"][0]["foreign_used_mib"] = 5000
    with running_daemon(tmp_path / "d", fake=fake) as d:
        gpus = d.client.gpus()["devices"]
        assert gpus[0]["state"] == "foreign"
        assert "not start" in gpus[0]["reason"]
        exp = d.submit(probe_experiment(out, max_trials=4, max_parallel_trials=2))
        assert d.wait_experiment(exp)["state"] == "completed"
        assert {r["cuda"] for r in records(out)} == {gpus[1]["uuid"]}
        d.set_fake(fake_config(2))  # the foreign process went away
        wait_for(lambda: d.client.gpus()["devices"][0]["state"] == "free", 10,
                 "the GPU to be free again")


def host_has_gpus() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return bool(pynvml.nvmlDeviceGetCount())
    except Exception:
        return False


@pytest.mark.skipif(host_has_gpus(), reason="this host has GPUs: NVML is not unavailable here")
def test_without_a_driver_there_are_no_gpus_and_cpu_trials_still_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_daemon(tmp_path / "d", nvml=True) as d:
        gpus = d.client.gpus()
        assert gpus["backend"] == "nvml" and gpus["devices"] == []
        assert gpus["note"]  # why: e.g. the library is not found
        assert "no GPU found" in d.cli("gpus").stdout
        exp = d.submit(probe_experiment(out, max_trials=2, gpus_per_trial=0))
        assert d.wait_experiment(exp)["state"] == "completed"
        events = [e["event"] for e in d.log_events()]
    assert events.count("nvml_unavailable") == 1
    assert [r["cuda"] for r in records(out)] == ["", ""]


def test_a_lost_gpu_interrupts_its_trial_which_runs_again_on_another(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = fake_config(2)
    with running_daemon(tmp_path / "d", fake=config) as d:
        # max_failed_trials unset: were the interruption a failure, the experiment would fail.
        exp = d.submit(probe_experiment(out, max_trials=1, max_failed_trials=None, command=[
            sys.executable, trial_script("probe.py"), "--out", str(out), "--sleep", "1.0"]))
        first = wait_for(lambda: (d.client.trials(exp) or [{}])[0].get("devices"),
                         what="the trial to start")
        index = next(g["index"] for g in d.client.gpus()["devices"] if g["uuid"] == first[0])
        config["devices"][index]["lost"] = True
        d.set_fake(config)
        view = d.wait_experiment(exp)
        (trial,) = d.client.trials(exp)
        events = d.client.show(f"{exp}/0")["events"]
        gpus = {g["uuid"]: g for g in d.client.gpus()["devices"]}
    assert view["state"] == "completed", view
    assert trial["state"] == "completed" and trial["attempts"] == 2
    assert trial["devices"] != first  # it ran again elsewhere
    ended = [e["data"] for e in events if e["kind"] == "trial_ended"]
    assert ended[0]["state"] == "interrupted" and "was lost" in ended[0]["reason"]
    assert gpus[first[0]]["state"] == "lost" and "lost" in gpus[first[0]]["reason"]
