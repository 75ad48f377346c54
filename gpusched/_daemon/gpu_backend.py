"""What the daemon needs from a GPU driver, behind one interface: NVML or the fake backend.

A backend answers two questions: which devices exist (``discover``, once at start) and what each
one holds right now (``read``, at every poll). Everything else (free, busy, releasing, foreign,
quarantined, lost) is the scheduler's reading of these facts, in ``devices.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DeviceInfo", "GpuProcess", "DeviceReading", "GpuBackend"]


@dataclass(frozen=True)
class DeviceInfo:
    """A schedulable device: a whole GPU, or a MIG device when MIG is on for its parent."""

    uuid: str  # "GPU-…" or "MIG-…": what CUDA_VISIBLE_DEVICES receives
    index: int  # NVML index of the GPU (of the parent GPU for a MIG device)
    name: str
    memory_total_mib: float
    fake: bool = False
    mig_parent_uuid: str | None = None  # set for MIG devices
    pci_bus_id: str = ""


@dataclass(frozen=True)
class GpuProcess:
    """A process that holds a context on a device, as the driver lists it."""

    pid: int
    used_mib: float | None = None  # None where the driver does not say


@dataclass(frozen=True)
class DeviceReading:
    """One poll of one device. ``error`` is set (and the rest meaningless) when it failed."""

    uuid: str
    memory_used_mib: float = 0.0
    processes: tuple[GpuProcess, ...] = ()
    error: str | None = None
    # What the device uses with nothing running, where the backend knows it (the fake does;
    # NVML does not, and the daemon then learns it from quiet readings).
    idle_used_mib: float | None = None


class GpuBackend(Protocol):
    """The driver edge. Implementations: ``NvmlBackend`` and ``FakeBackend``.

    Methods are blocking (NVML calls are); the daemon runs them in a worker thread, but for
    ``read`` where ``reads_block`` is False. They never raise for a single device's fault: that
    device's reading carries ``error`` instead.
    """

    #: "nvml" or "fake"; shown by `gpusched gpus`
    kind: str
    #: Whether ``read`` may block for long (an NVML call on a failing GPU may not return for
    #: seconds): the daemon then reads in its device-reader thread. A backend whose reads only
    #: look at local files says False, and is read on the event loop: the release barrier reads
    #: after every trial, and a hand-over to a sleeping thread costs more than such a read (the
    #: thread's wake-up can land behind a busy trial while the freed core idles).
    reads_block: bool

    def discover(self) -> Sequence[DeviceInfo]:
        """The devices to schedule. No driver: an empty list (the backend logs why, once)."""
        ...

    def read(self) -> Sequence[DeviceReading]:
        """Current memory use and processes of every discovered device."""
        ...

    def note_trial(self, session_id: int, uuids: Sequence[str]) -> None:
        """Tell the backend that the process session ``session_id`` was given ``uuids``.

        A real driver learns this by itself when the trial creates its CUDA context; the fake
        backend needs to be told, to account the trial's memory the way a driver would.
        """
        ...

    def close(self) -> None:
        """Release the driver (``nvmlShutdown``)."""
        ...
