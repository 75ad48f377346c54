"""A GPU backend that raises something other than its translated NVML errors (a bug, a driver
binding surprise) is logged and the poll goes on: no backend error ends the daemon (issue 3,
point 6)."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
from structlog.testing import capture_logs

from gpusched._daemon.devices import DeviceTable
from gpusched._daemon.fake_gpus import FakeBackend, FakeConfig, FakeDeviceSpec
from gpusched._daemon.gpu_backend import DeviceReading
from gpusched._daemon.scheduler import Scheduler
from gpusched._daemon.store import Store, open_store
from gpusched.config import DaemonSettings

TWO_GPUS = FakeConfig(devices=(FakeDeviceSpec(), FakeDeviceSpec()))


def scheduler_over(store: Store, backend: FakeBackend, tmp_path: Path,
                   settings: DaemonSettings) -> Scheduler:
    """A scheduler of ``backend``'s GPUs."""
    return Scheduler(store=store, backend=backend, settings=settings,
                     state_dir=tmp_path / "state")


class ExplodingBackend(FakeBackend):
    """Two fake GPUs whose readings work once (at start), then raise."""

    def __init__(self) -> None:
        super().__init__(TWO_GPUS)
        self.reads = 0
        self.failed_often = threading.Event()  # read() runs in a worker thread

    def read(self) -> list[DeviceReading]:
        self.reads += 1
        if self.reads >= 5:
            self.failed_often.set()
        if self.reads > 1:
            raise RuntimeError("the driver binding returned garbage")
        return super().read()


async def test_an_unexpected_backend_error_is_logged_and_polling_goes_on(
    tmp_path: Path,
) -> None:
    backend = ExplodingBackend()
    async with open_store(tmp_path / "log.db") as store:
        scheduler = scheduler_over(store, backend, tmp_path,
                                   DaemonSettings(poll_interval_s=0.01))
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                await tg.start(scheduler.run)
                # It keeps polling after each failure.
                assert await anyio.to_thread.run_sync(backend.failed_often.wait, 10)
                tg.cancel_scope.cancel()
    failures = [e for e in logs if e["event"] == "gpu_poll_failed"]
    assert len(failures) >= 3
    assert "the driver binding returned garbage" in failures[0]["error"]
    assert len(scheduler.devices.slots) == 2  # the devices it found are still there


class HangingBackend(FakeBackend):
    """Two fake GPUs whose reads block while ``hang`` is set, as NVML can on a failing GPU."""

    reads_block = True

    def __init__(self) -> None:
        super().__init__(TWO_GPUS)
        self.reads = 0
        self.hang = threading.Event()
        self.go_on = threading.Event()

    def read(self) -> list[DeviceReading]:
        self.reads += 1
        if self.hang.is_set():
            self.go_on.wait(30)
        return super().read()


async def test_a_read_the_driver_never_answers_quarantines_every_gpu_until_it_does(
    tmp_path: Path,
) -> None:
    # A hung read once froze the release barrier of every GPU, silently: no reason shown,
    # nothing logged, and each poll queued another read behind it.
    backend = HangingBackend()
    async with open_store(tmp_path / "log.db") as store:
        scheduler = scheduler_over(store, backend, tmp_path,
                                   DaemonSettings(device_read_timeout_s=0.2))
        scheduler.devices = DeviceTable(backend.discover(), scheduler.settings)
        await scheduler._poll_devices_once()
        assert [s["state"] for s in scheduler.devices.snapshot()] == ["free", "free"]
        backend.hang.set()
        with capture_logs() as logs:
            await scheduler._poll_devices_once()
            await scheduler._poll_devices_once()  # waits on the same read: none piles up
        assert backend.reads == 2
        assert [e["event"] for e in logs] == ["gpu_read_unanswered"]
        snapshot = scheduler.devices.snapshot()
        assert [s["state"] for s in snapshot] == ["quarantined", "quarantined"]
        assert "has not answered a read" in snapshot[0]["reason"]
        assert scheduler.devices.pick(1, None) is None
        backend.hang.clear()
        backend.go_on.set()  # the driver answers at last
        with capture_logs() as logs:
            await scheduler._poll_devices_once()
        assert [e["event"] for e in logs] == ["gpu_read_answered"]
        assert [s["state"] for s in scheduler.devices.snapshot()] == ["free", "free"]
        scheduler._reader.close()


def test_a_device_still_releasing_when_the_driver_answers_again_is_releasing_not_quarantined(
) -> None:
    # The "has not answered" reason once outlived the answer on a GPU whose memory was still
    # coming back: shown as quarantined, for the driver, up to release_timeout_s.
    from tests.unit.test_devices import reading, run_trial_on, state, table

    t = table(1)
    run_trial_on(t, 0)
    t.release("e1/0", [t.snapshot()[0]["uuid"]])
    t.unanswered("the GPU driver has not answered a read for 20s")
    assert t.snapshot()[0]["state"] == "quarantined"
    t.update([reading(0, used=5000.0)], {})  # it answers: memory not back yet
    assert state(t, 0).value == "releasing"
    assert "has not answered" not in (t.snapshot()[0]["reason"] or "")
