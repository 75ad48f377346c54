"""Why an experiment waits (``waiting`` in docs/json.md), from the scheduler's memory alone.

The integration tests meet the common reasons through a real daemon; these reach the rest
(memory, fractions, CPU slots, a paused log, shutdown, a free slot about to be taken).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpusched._daemon.devices import DeviceTable
from gpusched._daemon.experiment import ExperimentRun
from gpusched._daemon.waiting import (
    WAIT_CODES,
    WaitContext,
    cpu_slots_for,
    pending_trials,
    why_waiting,
)
from gpusched.models import TrialState
from tests.unit.test_devices import quiet, run_trial_on, settings
from tests.unit.test_devices import table as device_table
from tests.unit.test_experiment import add, run


def ctx(devices: DeviceTable, order: list[ExperimentRun], **overrides: Any) -> WaitContext:
    base: dict[str, Any] = {"devices": devices, "order": order, "cpu_running": 0,
                            "cpu_slots": 2, "paused": False, "closing": False}
    return WaitContext(**{**base, **overrides})


def exp(tmp_path: Path, exp_id: str = "e1", **settings_: Any) -> ExperimentRun:
    e = run(tmp_path, max_trials=4, **settings_)
    e.id = exp_id
    return e


def test_nothing_left_to_start_is_no_wait(tmp_path: Path) -> None:
    e = exp(tmp_path)
    e.exhausted = True
    assert pending_trials(e) == 0 and why_waiting(e, ctx(device_table(1), [e])) is None
    e2 = exp(tmp_path)
    e2.cancelling = True
    assert why_waiting(e2, ctx(device_table(1), [e2])) is None


def test_the_daemon_itself_comes_first(tmp_path: Path) -> None:
    e = exp(tmp_path)
    got = why_waiting(e, ctx(device_table(1), [e], closing=True))
    assert got is not None and got["code"] == "shutting_down" and got["trials"] == 4
    got = why_waiting(e, ctx(device_table(1), [e], paused=True))
    assert got is not None and got["code"] == "paused"


def test_a_configured_limit_comes_after_the_experiments_own(tmp_path: Path) -> None:
    devices = device_table(1)
    devices.update(quiet(1), {})
    e = exp(tmp_path)
    limit = "per-user limit: alice holds 2 of 2 GPUs (max_gpus_per_user), a trial needs 1"
    got = why_waiting(e, ctx(devices, [e], user_limit=limit))
    assert got is not None and (got["code"], got["message"]) == ("user_limit", limit)
    capped = exp(tmp_path, max_parallel_trials=1)
    add(capped, TrialState.RUNNING)
    got = why_waiting(capped, ctx(devices, [], user_limit=limit))
    assert got is not None and got["code"] == "max_parallel_trials"


def test_not_enough_memory_on_any_gpu(tmp_path: Path) -> None:
    devices = device_table(2)
    devices.update(quiet(2), {})
    e = exp(tmp_path, gpu_memory="100GiB")
    got = why_waiting(e, ctx(devices, [e]))
    assert got is not None and got["code"] == "gpu_memory"
    assert got["message"].startswith("no GPU has 100 GiB free (gpu_memory; the most free is")


def test_a_fraction_waits_for_a_device_with_room(tmp_path: Path) -> None:
    devices = device_table(1)
    run_trial_on(devices, 0, "e9/0", share=1.0)
    e = exp(tmp_path, gpus_per_trial=0.5)
    got = why_waiting(e, ctx(devices, [e]))
    assert got is not None and got["code"] == "no_free_gpu"
    assert got["message"] == "no GPU with 0.5 of it free: 1 busy (e9/0)"


def test_cpu_only_trials_wait_for_a_cpu_slot(tmp_path: Path) -> None:
    e = exp(tmp_path, gpus_per_trial=0)
    got = why_waiting(e, ctx(DeviceTable([], settings()), [e], cpu_running=2))
    assert got is not None and got["code"] == "cpu_slots"
    assert got["message"] == "all 2 CPU slots are in use (2 CPU-only trials running, every" \
                             " experiment's)"
    one = why_waiting(e, ctx(DeviceTable([], settings()), [e], cpu_running=1, cpu_slots=1))
    assert one is not None and "(1 CPU-only trial running," in one["message"]


def test_a_cpu_only_experiments_max_parallel_trials_limits_it_not_the_others(
    tmp_path: Path
) -> None:
    # With max_parallel_trials 1, an experiment waited while any other experiment's CPU-only
    # trial ran, whatever the host's cores: "all 1 CPU slots are in use (1 CPU-only trials
    # running)" on a 2-core host. Its own limit holds its own trials; the host's, everyone's.
    e = exp(tmp_path, gpus_per_trial=0, max_parallel_trials=1)
    started = why_waiting(e, ctx(DeviceTable([], settings()), [e], cpu_running=1, cpu_slots=2))
    assert started is not None and started["code"] == "starting"
    full = why_waiting(e, ctx(DeviceTable([], settings()), [e], cpu_running=2, cpu_slots=2))
    assert full is not None and full["code"] == "cpu_slots"
    wide = exp(tmp_path, gpus_per_trial=0, max_parallel_trials=4)  # above the 2 cores: asked
    started = why_waiting(wide, ctx(DeviceTable([], settings()), [wide], cpu_running=3))
    assert started is not None and started["code"] == "starting"
    assert cpu_slots_for(e, 2) == 2 and cpu_slots_for(wide, 2) == 4


def test_free_room_taken_by_the_one_ahead_or_about_to_start(tmp_path: Path) -> None:
    devices = device_table(1)
    devices.update(quiet(1), {})
    first, second = exp(tmp_path, "e1"), exp(tmp_path, "e2")
    got = why_waiting(second, ctx(devices, [first, second]))
    assert got is not None and got["code"] == "behind" and got["ahead"] == ["e1"]
    assert got["message"] == "e1 goes first (submitted earlier)"
    alone = why_waiting(first, ctx(devices, [first, second]))
    assert alone is not None and alone["code"] == "starting"


def test_an_experiment_behind_another_users_says_its_owner_holds_fewer_gpus(
        tmp_path: Path) -> None:
    # Fair share is between owners first: bob's e2 goes before alice's e1, submitted earlier
    # and holding no more GPUs itself, because alice holds more in all. The note once said
    # "(submitted earlier)", which was not why.
    devices = device_table(1)
    devices.update(quiet(1), {})
    alice, bob = exp(tmp_path, "e1"), exp(tmp_path, "e2")
    alice.owner_uid, bob.owner_uid = 1001, 1002
    got = why_waiting(alice, ctx(devices, [bob, alice], owner_gpus={1001: 2.0}))
    assert got is not None and got["code"] == "behind"
    assert got["message"] == "e2 goes first (fair share: its owner holds fewer GPUs)"


def test_a_search_that_waits_for_results_says_so(tmp_path: Path) -> None:
    devices = device_table(1)
    devices.update(quiet(1), {})
    e = exp(tmp_path)
    e.waiting = True  # the plugin answered Wait
    got = why_waiting(e, ctx(devices, [e]))
    assert got is not None and got["code"] == "search_waits"
    assert got["message"] == ("the search plugin 'random' waits for running trials to end"
                              " before it suggests more")


def test_fair_share_is_named_when_it_decides(tmp_path: Path) -> None:
    devices = device_table(1)
    run_trial_on(devices, 0, "e2/0")
    first, second = exp(tmp_path, "e1"), exp(tmp_path, "e2")
    add(second, TrialState.RUNNING)  # e2 holds a GPU, e1 none
    got = why_waiting(second, ctx(devices, [first, second]))
    assert got is not None
    assert got["message"] == ("no free GPU: 1 busy (e2/0); e1 goes first (fair share: it holds"
                              " fewer GPUs)")


def test_every_code_is_documented() -> None:
    documented = (Path(__file__).parents[2] / "docs" / "json.md").read_text()
    assert all(f"`{code}`" in documented for code in WAIT_CODES)


def test_a_trial_of_several_gpus_gets_whole_gpus_never_mig_devices(tmp_path: Path) -> None:
    # CUDA shows a process only one MIG device: two MIG UUIDs in CUDA_VISIBLE_DEVICES once
    # held both devices for a trial that could use one.
    from gpusched._daemon.gpu_backend import DeviceInfo

    parent = "GPU-00000000-0000-0000-0000-00000000000a"
    migs = [DeviceInfo(uuid=f"MIG-0000000{i}-0000-0000-0000-000000000000", index=0,
                       name="MIG 3g.40gb", memory_total_mib=40_000.0, mig_parent_uuid=parent)
            for i in range(2)]
    whole = DeviceInfo(uuid="GPU-00000000-0000-0000-0000-00000000000b", index=1,
                       name="Test GPU", memory_total_mib=80_000.0)
    only_mig = DeviceTable(migs, settings())
    assert only_mig.pick(2, None) is None
    assert only_mig.pick(1, None) == [migs[0].uuid]
    e = exp(tmp_path, gpus_per_trial=2)
    got = why_waiting(e, ctx(only_mig, [e]))
    assert got is not None and got["code"] == "no_gpus"
    assert "only one MIG device" in got["message"] and "0 GPUs without MIG" in got["message"]
    mixed = DeviceTable([*migs, whole], settings())
    assert mixed.pick(2, None) is None  # one whole GPU is not two
    two_whole = DeviceTable([whole, DeviceInfo(uuid="GPU-00000000-0000-0000-0000-00000000000c",
                                               index=2, name="Test GPU",
                                               memory_total_mib=80_000.0), *migs], settings())
    assert two_whole.pick(2, None) == [whole.uuid, "GPU-00000000-0000-0000-0000-00000000000c"]
