"""Where the scheduler makes its device reads: in the device-reader thread for a backend whose
reads may block (NVML), on the event loop for one whose reads only look at local files (the
fake backend): a thread's wake-up costs the release barrier more than such a read."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from gpusched._daemon.fake_gpus import FakeBackend, FakeConfig, FakeDeviceSpec
from gpusched._daemon.gpu_backend import DeviceReading
from gpusched._daemon.nvml import NvmlBackend
from gpusched._daemon.scheduler import Scheduler
from gpusched._daemon.store import open_store
from gpusched.config import DaemonSettings


class RecordingBackend(FakeBackend):
    """Two fake GPUs that note the thread of each read."""

    def __init__(self, reads_block: bool) -> None:
        super().__init__(FakeConfig(devices=(FakeDeviceSpec(), FakeDeviceSpec())))
        self.reads_block = reads_block
        self.threads: list[int] = []

    def read(self) -> list[DeviceReading]:
        self.threads.append(threading.get_ident())
        return super().read()


@pytest.mark.parametrize("reads_block", [True, False])
async def test_reads_that_may_block_go_to_the_reader_thread(
    tmp_path: Path, reads_block: bool
) -> None:
    backend = RecordingBackend(reads_block)
    async with open_store(tmp_path / "log.db") as store:
        scheduler = Scheduler(store=store, backend=backend,
                              settings=DaemonSettings(poll_interval_s=0.01),
                              state_dir=tmp_path / "state")
        async with anyio.create_task_group() as tg:
            await tg.start(scheduler.run)
            with anyio.fail_after(10):
                while len(backend.threads) < 3:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    loop_thread = threading.get_ident()
    if reads_block:
        assert loop_thread not in backend.threads
    else:
        assert set(backend.threads) == {loop_thread}


def test_the_backends_say_whether_their_reads_may_block() -> None:
    assert NvmlBackend.reads_block is True  # the driver can hang on a failing GPU
    assert FakeBackend.reads_block is False
