"""DeviceTable (SPEC 6): placement, the release barrier, quarantine, foreign and lost devices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from gpusched._daemon.devices import DeviceTable
from gpusched._daemon.gpu_backend import DeviceInfo, DeviceReading, GpuProcess
from gpusched.config import DaemonSettings
from gpusched.models import DeviceState

IDLE = 300.0
THRESHOLD = 512.0
TIMEOUT = 10.0
TOTAL = 80_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def uuid(i: int) -> str:
    return f"GPU-0000000{i}-0000-0000-0000-000000000000"


def info(i: int, total: float = TOTAL, *, fake: bool = False) -> DeviceInfo:
    return DeviceInfo(uuid=uuid(i), index=i, name=f"Test GPU {i}", memory_total_mib=total,
                      fake=fake)


def settings(**overrides: object) -> DaemonSettings:
    base = DaemonSettings(release_timeout_s=TIMEOUT, release_threshold_mib=THRESHOLD)
    return base.with_overrides(dict(overrides), "test")


def table(n: int = 2, clock: Clock | None = None, **overrides: object) -> DeviceTable:
    return DeviceTable([info(i) for i in range(n)], settings(**overrides),
                       clock=clock or Clock())


def reading(
    i: int, used: float = IDLE, pids: Sequence[int] = (), *, idle: float | None = IDLE,
    error: str | None = None,
) -> DeviceReading:
    return DeviceReading(uuid=uuid(i), memory_used_mib=used,
                         processes=tuple(GpuProcess(p, None) for p in pids),
                         idle_used_mib=idle, error=error)


def quiet(n: int) -> list[DeviceReading]:
    return [reading(i) for i in range(n)]


def state(t: DeviceTable, i: int) -> DeviceState:
    return t.slots[uuid(i)].state


def reason(t: DeviceTable, i: int) -> str | None:
    (row,) = [d for d in t.snapshot() if d["uuid"] == uuid(i)]
    value = row["reason"]
    assert value is None or isinstance(value, str)
    return value


TRIAL = "e1/0"
SID = 4242  # the trial's session (its leader's pid)
PID = 4242
NO_SESSIONS: Mapping[int, Sequence[int]] = {}


def run_trial_on(t: DeviceTable, i: int, trial: str = TRIAL, sid: int = SID,
                 share: float = 1.0) -> None:
    t.assign(trial, [uuid(i)], share)
    t.set_session(trial, [uuid(i)], sid)


# --- placement: whole GPUs -----------------------------------------------------------------


def test_whole_gpu_goes_to_the_lowest_index_first() -> None:
    infos = [info(2), info(0), info(1)]  # discovery order must not matter
    t = DeviceTable(infos, settings(), clock=Clock())
    assert t.pick(1, None) == [uuid(0)]


def test_a_held_device_is_never_picked_for_a_whole_gpu() -> None:
    t = table(3)
    t.assign("e1/0", [uuid(0)], 1.0)
    assert t.pick(1, None) == [uuid(1)]
    assert t.pick(2, None) == [uuid(1), uuid(2)]
    assert t.pick(3, None) is None


def test_a_device_holding_a_fraction_is_not_given_as_a_whole_gpu() -> None:
    t = table(2)
    t.assign("e1/0", [uuid(0)], 0.5)
    assert t.pick(1, None) == [uuid(1)]
    t.assign("e2/0", [uuid(1)], 0.25)
    assert t.pick(1, None) is None


def test_no_device_means_none_for_any_gpu_request() -> None:
    t = DeviceTable([], settings(), clock=Clock())
    assert t.pick(1, None) is None
    assert t.pick(0.5, None) is None


# --- placement: fractions ------------------------------------------------------------------


def test_a_fraction_goes_to_the_fullest_device_that_still_has_room() -> None:
    t = table(3)
    t.assign("e1/0", [uuid(0)], 0.25)
    t.assign("e1/1", [uuid(2)], 0.5)
    assert t.pick(0.25, None) == [uuid(2)]
    assert t.pick(0.5, None) == [uuid(2)]


def test_a_fraction_with_no_room_left_goes_elsewhere() -> None:
    t = table(2)
    t.assign("e1/0", [uuid(1)], 0.5)
    t.assign("e1/1", [uuid(1)], 0.5)
    assert t.pick(0.5, None) == [uuid(0)]


def test_fractions_on_empty_devices_start_at_the_lowest_index() -> None:
    t = DeviceTable([info(1), info(0)], settings(), clock=Clock())
    assert t.pick(0.5, None) == [uuid(0)]


def test_thirds_pack_three_to_a_device_despite_float_rounding() -> None:
    t = table(1)
    third = 1 / 3
    for n in range(3):
        assert t.pick(third, None) == [uuid(0)], n
        t.assign(f"e1/{n}", [uuid(0)], third)
    assert t.pick(third, None) is None


def test_a_fraction_never_shares_with_a_whole_gpu_holder() -> None:
    t = table(2)
    t.assign("e1/0", [uuid(0)], 1.0)
    assert t.pick(0.5, None) == [uuid(1)]
    t.assign("e2/0", [uuid(1)], 1.0)
    assert t.pick(0.5, None) is None
    assert t.pick(0.1, None) is None


# --- placement: gpu_memory ------------------------------------------------------------------


def test_gpu_memory_skips_devices_with_too_little_memory() -> None:
    t = DeviceTable([info(0, 16_000.0), info(1, 40_000.0)], settings(), clock=Clock())
    assert t.pick(1, 20_000.0) == [uuid(1)]
    assert t.pick(0.5, 20_000.0) == [uuid(1)]
    assert t.pick(2, 20_000.0) is None
    assert t.pick(1, 50_000.0) is None


def test_gpu_memory_counts_what_the_last_reading_shows_in_use() -> None:
    t = table(1)
    run_trial_on(t, 0, share=0.5)
    t.update([reading(0, used=70_000.0, pids=[PID])], {SID: [PID]})
    assert t.slots[uuid(0)].free_mib() == TOTAL - 70_000.0
    assert t.pick(0.5, 9_000.0) == [uuid(0)]
    assert t.pick(0.5, 11_000.0) is None


# --- the release barrier --------------------------------------------------------------------


def test_a_released_device_is_releasing_and_not_given_out() -> None:
    t = table(1)
    run_trial_on(t, 0)
    assert state(t, 0) is DeviceState.BUSY
    t.release(TRIAL, [uuid(0)])
    assert state(t, 0) is DeviceState.RELEASING
    assert t.any_releasing()
    assert t.pick(1, None) is None
    assert t.pick(0.5, None) is None


def test_releasing_lasts_while_a_process_of_the_trial_is_listed() -> None:
    t = table(1)
    run_trial_on(t, 0)
    t.release(TRIAL, [uuid(0)])
    # Its process is still listed by the driver (memory already back, even).
    assert t.update([reading(0, used=IDLE, pids=[PID])], {SID: [PID]}) is False
    assert state(t, 0) is DeviceState.RELEASING
    # A pid in no session we can see (it exited, or lives in another pid namespace) counts too.
    assert t.update([reading(0, used=IDLE, pids=[99999])], NO_SESSIONS) is False
    assert state(t, 0) is DeviceState.RELEASING


def test_releasing_lasts_until_memory_is_back_near_idle() -> None:
    t = table(1)
    run_trial_on(t, 0)
    t.release(TRIAL, [uuid(0)])
    assert t.update([reading(0, used=IDLE + THRESHOLD + 1)], NO_SESSIONS) is False
    assert state(t, 0) is DeviceState.RELEASING
    assert t.update([reading(0, used=IDLE + THRESHOLD)], NO_SESSIONS) is True
    assert state(t, 0) is DeviceState.FREE
    assert not t.any_releasing()
    assert t.pick(1, None) == [uuid(0)]


def test_the_idle_level_is_learned_from_quiet_readings_when_the_driver_does_not_say() -> None:
    t = table(1)
    t.update([reading(0, used=1000.0, idle=None)], NO_SESSIONS)
    t.update([reading(0, used=800.0, idle=None)], NO_SESSIONS)  # the lowest quiet level wins
    run_trial_on(t, 0)
    t.update([reading(0, used=9000.0, pids=[PID], idle=None)], {SID: [PID]})
    t.release(TRIAL, [uuid(0)])
    assert t.update([reading(0, used=800.0 + THRESHOLD + 1, idle=None)], NO_SESSIONS) is False
    assert state(t, 0) is DeviceState.RELEASING
    assert t.update([reading(0, used=800.0 + THRESHOLD, idle=None)], NO_SESSIONS) is True
    assert state(t, 0) is DeviceState.FREE


def test_past_the_timeout_a_releasing_device_is_quarantined_with_the_trial_named() -> None:
    clock = Clock()
    t = table(1, clock)
    run_trial_on(t, 0)
    t.release(TRIAL, [uuid(0)])
    clock.now += TIMEOUT - 1
    t.update([reading(0, used=5000.0)], NO_SESSIONS)
    assert state(t, 0) is DeviceState.RELEASING
    clock.now += 2
    assert t.update([reading(0, used=5000.0)], NO_SESSIONS) is False
    assert state(t, 0) is DeviceState.QUARANTINED
    why = reason(t, 0)
    assert why is not None
    assert TRIAL in why
    assert "memory not back" in why
    assert t.pick(1, None) is None
    assert t.any_releasing()
    assert repr(t) == "<DeviceTable gpus=1 quarantined=1>"


def test_a_quarantine_reason_names_the_process_that_still_holds_the_device() -> None:
    clock = Clock()
    t = table(1, clock)
    run_trial_on(t, 0)
    t.release(TRIAL, [uuid(0)])
    clock.now += TIMEOUT + 1
    t.update([reading(0, used=IDLE, pids=[PID])], {SID: [PID]})
    why = reason(t, 0)
    assert why is not None
    assert f"process {PID}" in why
    assert TRIAL in why


def test_a_quarantined_device_is_free_again_once_a_reading_shows_it_released() -> None:
    clock = Clock()
    t = table(1, clock)
    run_trial_on(t, 0)
    t.release(TRIAL, [uuid(0)])
    clock.now += TIMEOUT + 1
    t.update([reading(0, used=5000.0)], NO_SESSIONS)
    assert state(t, 0) is DeviceState.QUARANTINED
    clock.now += 100
    assert t.update([reading(0, used=5000.0)], NO_SESSIONS) is False  # still checked, still bad
    assert state(t, 0) is DeviceState.QUARANTINED
    assert t.update([reading(0, used=IDLE)], NO_SESSIONS) is True
    assert state(t, 0) is DeviceState.FREE
    assert reason(t, 0) is None
    assert t.pick(1, None) == [uuid(0)]


def test_a_shared_device_waits_only_for_the_ended_trials_processes() -> None:
    t = table(1)
    run_trial_on(t, 0, "e1/0", 100, share=0.5)
    run_trial_on(t, 0, "e1/1", 200, share=0.5)
    sessions = {100: [100], 200: [200]}
    t.update([reading(0, used=6000.0, pids=[100, 200])], sessions)
    t.release("e1/0", [uuid(0)])
    assert t.pick(0.5, None) is None  # its half is not back yet
    assert t.update([reading(0, used=6000.0, pids=[100, 200])], sessions) is False
    # e1/0's process is gone; e1/1 still runs and holds memory: that is no reason to wait.
    assert t.update([reading(0, used=4000.0, pids=[200])], {200: [200]}) is True
    assert state(t, 0) is DeviceState.BUSY
    assert t.pick(0.5, None) == [uuid(0)]


def test_releasing_a_device_not_held_still_waits_for_the_barrier() -> None:
    t = table(1)
    t.release(TRIAL, [uuid(0)])
    assert state(t, 0) is DeviceState.RELEASING
    assert t.update(quiet(1), NO_SESSIONS) is True


# --- foreign processes ----------------------------------------------------------------------


def test_a_listed_process_of_a_session_that_is_not_ours_makes_the_device_foreign() -> None:
    t = table(2)
    assert t.update([reading(0, used=3000.0, pids=[555]), reading(1)], {555: [555]}) is False
    assert state(t, 0) is DeviceState.FOREIGN
    why = reason(t, 0)
    assert why is not None
    assert "555" in why
    assert "not started by gpusched" in why
    assert t.pick(1, None) == [uuid(1)]
    assert t.pick(2, None) is None
    assert t.pick(0.5, None) == [uuid(1)]


def test_a_listed_pid_in_no_visible_session_is_foreign_on_an_idle_device() -> None:
    t = table(1)
    t.update([reading(0, used=IDLE, pids=[777])], NO_SESSIONS)
    assert state(t, 0) is DeviceState.FOREIGN
    assert "777" in (reason(t, 0) or "")


def test_memory_above_idle_with_no_holder_is_foreign() -> None:
    t = table(1)
    t.update([reading(0, used=IDLE + THRESHOLD + 1)], NO_SESSIONS)
    assert state(t, 0) is DeviceState.FOREIGN
    assert "MiB" in (reason(t, 0) or "")
    assert t.pick(1, None) is None
    t2 = table(1)
    t2.update([reading(0, used=IDLE + THRESHOLD)], NO_SESSIONS)
    assert state(t2, 0) is DeviceState.FREE


def test_a_device_is_free_again_when_the_foreign_process_leaves() -> None:
    t = table(1)
    t.update([reading(0, used=3000.0, pids=[555])], {555: [555]})
    assert t.update([reading(0)], NO_SESSIONS) is True
    assert state(t, 0) is DeviceState.FREE
    assert reason(t, 0) is None


def test_our_own_trials_processes_are_not_foreign() -> None:
    t = table(1)
    run_trial_on(t, 0, share=0.5)
    t.update([reading(0, used=3000.0, pids=[PID, PID + 1])], {SID: [PID, PID + 1]})
    assert state(t, 0) is DeviceState.BUSY
    assert reason(t, 0) is None
    assert t.pick(0.5, None) == [uuid(0)]


def test_a_foreign_process_beside_our_trial_blocks_sharing_the_device() -> None:
    t = table(1)
    run_trial_on(t, 0, share=0.5)
    t.update([reading(0, used=3000.0, pids=[PID, 555])], {SID: [PID], 555: [555]})
    assert state(t, 0) is DeviceState.BUSY  # busy wins the display, the reason stays
    assert "555" in (reason(t, 0) or "")
    assert t.pick(0.5, None) is None
    (row,) = t.snapshot()
    assert row["processes"] == [PID, 555] and row["foreign_processes"] == [555]
    t.update([reading(0, used=3000.0, pids=[PID])], {SID: [PID]})
    assert t.snapshot()[0]["foreign_processes"] == []  # it left


def test_allow_foreign_sharing_gives_out_a_foreign_device() -> None:
    t = table(1, allow_foreign_sharing=True)
    assert t.update([reading(0, used=3000.0, pids=[555])], {555: [555]}) is False
    assert state(t, 0) is DeviceState.FOREIGN  # still shown as foreign, with its reason
    assert "555" in (reason(t, 0) or "")
    assert t.pick(1, None) == [uuid(0)]
    assert t.pick(0.5, None) == [uuid(0)]


def test_memory_freed_on_a_shared_foreign_device_wakes_placement() -> None:
    # With sharing allowed the device is open all along: only the memory a trial's
    # gpu_memory waits for comes back. That once woke nothing, and the trial waited for an
    # unrelated event.
    t = table(1, allow_foreign_sharing=True)
    t.update([reading(0, used=TOTAL - 1000.0, pids=[555])], {555: [555]})
    assert t.pick(1, 4000.0) is None
    assert t.update([reading(0, used=TOTAL - 1500.0, pids=[555])], {555: [555]}) is True
    assert t.update([reading(0, used=TOTAL - 1500.0, pids=[555])], {555: [555]}) is False
    assert t.update([reading(0, used=IDLE)], NO_SESSIONS) is True
    assert t.pick(1, 4000.0) == [uuid(0)]


# --- lost devices ---------------------------------------------------------------------------


def test_a_reading_error_makes_the_device_lost_until_a_good_reading() -> None:
    t = table(2)
    t.update(quiet(2), NO_SESSIONS)
    assert t.update([reading(0, error="GPU is lost"), reading(1)], NO_SESSIONS) is False
    assert state(t, 0) is DeviceState.LOST
    assert reason(t, 0) == "GPU is lost"
    assert t.pick(1, None) == [uuid(1)]
    assert t.pick(2, None) is None
    assert t.update(quiet(2), NO_SESSIONS) is True
    assert state(t, 0) is DeviceState.FREE
    assert reason(t, 0) is None


def test_lost_wins_over_busy() -> None:
    t = table(1)
    run_trial_on(t, 0)
    t.update([reading(0, error="Unknown Error")], NO_SESSIONS)
    assert state(t, 0) is DeviceState.LOST
    assert t.snapshot()[0]["trials"] == [TRIAL]


# --- update's return value ------------------------------------------------------------------


def test_update_is_false_when_nothing_became_available() -> None:
    t = table(2)
    assert t.update(quiet(2), NO_SESSIONS) is False  # free before, free after
    run_trial_on(t, 0)
    assert t.update([reading(0, used=5000.0, pids=[PID]), reading(1)], {SID: [PID]}) is False
    assert t.update([], NO_SESSIONS) is False


def test_update_is_true_when_any_one_device_became_available() -> None:
    t = table(2)
    run_trial_on(t, 0)
    t.release(TRIAL, [uuid(0)])
    t.update([reading(1, used=3000.0, pids=[555])], {555: [555]})
    assert state(t, 1) is DeviceState.FOREIGN
    # Device 0 stays releasing; device 1's foreign process leaves.
    assert t.update([reading(0, used=5000.0), reading(1)], NO_SESSIONS) is True
    assert state(t, 0) is DeviceState.RELEASING


def test_update_ignores_readings_of_unknown_devices() -> None:
    t = table(1)
    assert t.update([reading(5, used=70_000.0, pids=[555])], {555: [555]}) is False
    assert state(t, 0) is DeviceState.FREE


# --- views ----------------------------------------------------------------------------------


def test_repr_counts_devices_by_state() -> None:
    t = table(4)
    run_trial_on(t, 0)
    run_trial_on(t, 1, "e1/1", SID + 1)
    t.release("e1/1", [uuid(1)])
    t.update([reading(2, used=3000.0, pids=[555])], {555: [555]})
    assert repr(t) == "<DeviceTable gpus=4 busy=1 foreign=1 free=1 releasing=1>"


def test_repr_of_an_empty_table() -> None:
    assert repr(DeviceTable([], settings(), clock=Clock())) == "<DeviceTable gpus=0>"


def test_snapshot_shape() -> None:
    t = DeviceTable([info(1, fake=True), info(0)], settings(), clock=Clock())
    run_trial_on(t, 1)
    t.update([reading(1, used=2300.0, pids=[PID])], {SID: [PID]})
    snap = t.snapshot()
    assert [d["index"] for d in snap] == [0, 1]
    assert snap[0] == {
        "uuid": uuid(0), "index": 0, "name": "Test GPU 0", "fake": False,
        "mig_parent_uuid": None, "memory_total_mib": TOTAL, "memory_used_mib": None,
        "state": "free", "reason": None, "trials": [], "releasing": [], "processes": [],
        "foreign_processes": [],
    }
    assert snap[1] == {
        "uuid": uuid(1), "index": 1, "name": "Test GPU 1", "fake": True,
        "mig_parent_uuid": None, "memory_total_mib": TOTAL, "memory_used_mib": 2300.0,
        "state": "busy", "reason": None, "trials": [TRIAL], "releasing": [],
        "processes": [PID], "foreign_processes": [],
    }
    t.release(TRIAL, [uuid(1)])
    assert t.snapshot()[1]["releasing"] == [TRIAL]
    assert t.snapshot()[1]["trials"] == []
    assert t.snapshot()[1]["state"] == "releasing"


@pytest.mark.parametrize("share", [0.5, 1.0])
def test_release_returns_the_share_after_the_barrier(share: float) -> None:
    t = table(1)
    run_trial_on(t, 0, share=share)
    assert t.slots[uuid(0)].used_share == pytest.approx(share)
    t.release(TRIAL, [uuid(0)])
    assert t.slots[uuid(0)].used_share == pytest.approx(share)  # still counted while releasing
    t.update(quiet(1), NO_SESSIONS)
    assert t.slots[uuid(0)].used_share == 0.0


def test_an_idle_level_of_zero_mib_is_kept_and_hidden_memory_is_foreign() -> None:
    # Idle data-centre GPUs read 0 MiB used (NVML v2): 0.0 is a level, not "unknown".
    t = table(1)
    t.update([reading(0, used=0.0, idle=None)], NO_SESSIONS)
    t.update([reading(0, used=5000.0, idle=None)], NO_SESSIONS)  # used by a hidden process
    assert t.slots[uuid(0)].idle_mib == 0.0
    assert state(t, 0) is DeviceState.FOREIGN
