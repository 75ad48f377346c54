"""The NVML backend: real NVIDIA GPUs through ``pynvml`` (the ``nvidia-ml-py`` distribution).

This is the only module of gpusched that imports ``pynvml``. Every ``NVMLError`` is translated
here: ``discover`` answers an empty list when there is no usable driver, and ``read`` turns one
device's failure into that device's ``DeviceReading.error``; neither lets an NVML error out.

Under NVIDIA's Multi-Process Service (MPS), the CUDA context on the GPU is the MPS server's
(``nvidia-cuda-mps-server``): the compute query lists the server, and the client processes (a
trial's) are listed by the MPS query. A reading lists the clients, and leaves the server out:
it is started by ``nvidia-cuda-mps-control`` on behalf of whichever client came first, outlives
its clients, and is nobody's trial, so listing it would make the GPU ``foreign`` and hold every
release barrier for as long as MPS runs. Its memory still counts in ``memory_used_mib``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import structlog

from gpusched._daemon.gpu_backend import DeviceInfo, DeviceReading, GpuBackend, GpuProcess
from gpusched.errors import GpuError

__all__ = ["NvmlBackend"]

_MIB = 1024 * 1024
# What NVML puts in ``usedGpuMemory`` when it cannot say (unsigned long long -1).
_NOT_AVAILABLE = 2**64 - 1
# Newest first: the unversioned name is the binding's preferred version; when the installed
# driver lacks it, the binding raises FunctionNotFound (old bindings) or NVMLLibraryMismatchError.
_COMPUTE_QUERIES = (
    "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetComputeRunningProcesses_v2",
)
_GRAPHICS_QUERIES = (
    "nvmlDeviceGetGraphicsRunningProcesses",
    "nvmlDeviceGetGraphicsRunningProcesses_v3",
    "nvmlDeviceGetGraphicsRunningProcesses_v2",
)
# The clients of an MPS server (each with its own memory since Volta); NotSupported or missing
# where the driver or GPU has no MPS listing, which then means no clients listed.
_MPS_QUERIES = (
    "nvmlDeviceGetMPSComputeRunningProcesses",
    "nvmlDeviceGetMPSComputeRunningProcesses_v3",
    "nvmlDeviceGetMPSComputeRunningProcesses_v2",
)
# /proc/PID/comm of the MPS server: the kernel keeps 15 bytes of a process name (TASK_COMM_LEN),
# so "nvidia-cuda-mps-server" reads back as this. nvidia-cuda-mps-control has the same comm
# but holds no context on a GPU, so NVML never lists it.
_MPS_SERVER_COMM = "nvidia-cuda-mps"
_MPS_SERVER_PROGRAM = "nvidia-cuda-mps-server"


class _NeverRaised(Exception):
    """Stands in for an error class that the loaded binding does not define."""


@dataclass
class _Device:
    """A discovered device: what the scheduler sees, and how to ask NVML about it."""

    info: DeviceInfo
    handle: Any  # an opaque ctypes pointer from pynvml
    memory_v1: bool = False  # the v2 memory query failed once for it: use v1 from then on


def _text(value: str | bytes) -> str:
    """Old bindings answer ``bytes`` for strings; new ones decode them already."""
    return value.decode() if isinstance(value, bytes) else value


class NvmlBackend(GpuBackend):
    """Schedules the GPUs (or, with MIG on, the MIG devices) that NVML lists.

    ``nvml`` is the ``pynvml`` module; tests inject a fake. Left out, ``pynvml`` is imported at
    the first ``discover``, so a host without it (or without a driver) still starts.
    """

    kind = "nvml"
    reads_block = True  # a call into the driver can hang on a failing GPU

    def __init__(
        self, nvml: ModuleType | None = None, logger: Any = None, proc: Path = Path("/proc")
    ) -> None:
        self._nvml = nvml
        self._proc = proc  # where process names are read (tests give a folder of their own)
        self._mps_servers: dict[str, set[int]] = {}  # device -> MPS servers left out last read
        # structlog's loggers are duck-typed; Any keeps the injected test logger simple.
        self._log: Any = logger if logger is not None else structlog.get_logger("gpusched.gpus")
        self._initialized = False
        self._devices: list[_Device] = []
        self._missing: set[str] = set()  # process queries this driver lacks
        self._said_unavailable = False
        #: Why there are no GPUs, for `gpusched gpus`; None while NVML works.
        self.unavailable_reason: str | None = None

    def __repr__(self) -> str:
        state = "ready" if self._initialized else "closed"
        return f"<NvmlBackend gpus={len(self._devices)} {state}>"

    # --- discovery ---------------------------------------------------------------------------

    def discover(self) -> list[DeviceInfo]:
        """Initialize NVML and list the schedulable devices; [] (logged once) without a driver."""
        nvml = self._load()
        if nvml is None:
            return []
        try:
            if not self._initialized:
                nvml.nvmlInit()
                self._initialized = True
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            self._unavailable(_init_reason(nvml, exc))
            self.close()
            return []
        self.unavailable_reason = None
        self._devices = []
        for index in range(count):
            try:
                self._devices.extend(self._discover_gpu(nvml, index))
            except GpuError as exc:
                self._log.warning("gpu_discovery_failed", index=index, error=str(exc))
        return [device.info for device in self._devices]

    def _load(self) -> ModuleType | None:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError as exc:
                self._unavailable(f"pynvml is not installed ({exc})")
                return None
            self._nvml = pynvml
        return self._nvml

    def _unavailable(self, reason: str) -> None:
        self.unavailable_reason = reason
        if not self._said_unavailable:  # SPEC 6: said once in the log
            self._said_unavailable = True
            self._log.warning("nvml_unavailable", reason=reason)

    def _discover_gpu(self, nvml: ModuleType, index: int) -> list[_Device]:
        """The device(s) of the GPU at NVML ``index``: itself, or its MIG devices."""
        with self._translated():
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            pci_bus_id = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
            if self._mig_enabled(nvml, handle):
                return self._discover_mig(nvml, handle, index, uuid, pci_bus_id)
            device = _Device(DeviceInfo(uuid, index, "", 0.0), handle)
            total = self._memory(device).total / _MIB
            name = _text(nvml.nvmlDeviceGetName(handle))
        device.info = DeviceInfo(uuid, index, name, total, pci_bus_id=pci_bus_id)
        return [device]

    def _mig_enabled(self, nvml: ModuleType, handle: Any) -> bool:
        if not hasattr(nvml, "nvmlDeviceGetMigMode"):  # a binding older than MIG
            return False
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        except (nvml.NVMLError_NotSupported, nvml.NVMLError_FunctionNotFound):
            return False  # a GPU without MIG, or a driver older than MIG
        return bool(current == nvml.NVML_DEVICE_MIG_ENABLE)

    def _discover_mig(
        self, nvml: ModuleType, parent: Any, index: int, parent_uuid: str, pci_bus_id: str
    ) -> list[_Device]:
        """The MIG devices of a GPU in MIG mode: these, not the parent, take CUDA contexts."""
        devices: list[_Device] = []
        for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(parent))):
            try:
                with self._translated():
                    try:
                        handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
                    except nvml.NVMLError_NotFound:
                        continue  # an empty slot: no GPU/compute instance created there
                    uuid = _text(nvml.nvmlDeviceGetUUID(handle))
                    device = _Device(DeviceInfo(uuid, index, "", 0.0), handle)
                    total = self._memory(device).total / _MIB
                    name = _text(nvml.nvmlDeviceGetName(handle))
            except GpuError as exc:
                self._log.warning(
                    "mig_discovery_failed", parent=parent_uuid, slot=slot, error=str(exc)
                )
                continue
            device.info = DeviceInfo(
                uuid, index, name, total, mig_parent_uuid=parent_uuid, pci_bus_id=pci_bus_id
            )
            devices.append(device)
        if not devices:
            self._log.warning("mig_without_devices", gpu=parent_uuid, index=index)
        return devices

    # --- reading -----------------------------------------------------------------------------

    def read(self) -> list[DeviceReading]:
        """Memory used and processes of every discovered device; a failing one carries ``error``."""
        readings = []
        for device in self._devices:
            try:
                with self._translated():
                    used = self._memory(device).used / _MIB
                    processes = self._processes(device)
            except GpuError as exc:
                readings.append(DeviceReading(device.info.uuid, error=str(exc)))
                continue
            readings.append(DeviceReading(device.info.uuid, used, processes))
        return readings

    def _memory(self, device: _Device) -> Any:
        """The memory structure of a device: v2 where the driver has it, else v1.

        v2 reports ``used`` without the driver's reserved memory, so an idle GPU reads near 0
        instead of several hundred MiB; v1 is the fallback for older drivers and bindings.
        """
        nvml = self._nvml
        assert nvml is not None  # only called after _load
        version = getattr(nvml, "nvmlMemory_v2", None)
        if not device.memory_v1 and version is not None:
            try:
                return nvml.nvmlDeviceGetMemoryInfo(device.handle, version=version)
            except (nvml.NVMLError_FunctionNotFound, nvml.NVMLError_NotSupported, TypeError):
                # TypeError: a binding whose nvmlDeviceGetMemoryInfo takes no ``version``
                device.memory_v1 = True
        return nvml.nvmlDeviceGetMemoryInfo(device.handle)

    def _processes(self, device: _Device) -> tuple[GpuProcess, ...]:
        """Compute, MPS client, then graphics processes, one entry per pid; no MPS server."""
        handle = device.handle
        compute = self._query(handle, _COMPUTE_QUERIES)
        clients = self._query(handle, _MPS_QUERIES)
        client_pids = {int(info.pid) for info in clients}
        server: dict[int, bool] = {}  # pid -> is an MPS server, asked once per pid
        by_pid: dict[int, GpuProcess] = {}
        for info in compute + clients + self._query(handle, _GRAPHICS_QUERIES):
            pid = int(info.pid)
            if pid not in client_pids:
                if pid not in server:
                    server[pid] = self._is_mps_server(pid)
                if server[pid]:
                    continue
            raw = info.usedGpuMemory
            used = None if raw is None or raw == _NOT_AVAILABLE else raw / _MIB
            known = by_pid.get(pid)
            # A process with both kinds of context is listed twice; keep the entry that knows
            # its memory.
            if known is None or known.used_mib is None:
                by_pid[pid] = GpuProcess(pid, used)
        self._note_mps_servers(device.info.uuid, {pid for pid, yes in server.items() if yes})
        return tuple(by_pid.values())

    def _note_mps_servers(self, uuid: str, servers: set[int]) -> None:
        """Log an MPS server the first time a reading of ``uuid`` leaves it out."""
        for pid in sorted(servers - self._mps_servers.get(uuid, set())):
            self._log.info("mps_server_not_listed", gpu=uuid, pid=pid)
        if servers:
            self._mps_servers[uuid] = servers
        else:
            self._mps_servers.pop(uuid, None)

    def _is_mps_server(self, pid: int) -> bool:
        """Whether ``pid`` is an MPS server: named so, and running the program
        ``nvidia-cuda-mps-server`` from a file root (or this daemon's own user) owns.

        The name alone is anyone's to set (``/proc/self/comm``): a process of another user
        would have hidden from the release barrier and the foreign check. Nor can a user make a
        root-owned file of that name. A process whose name or program cannot be read (gone, in
        another PID namespace than NVML's pids, another user's to a per-user daemon) is not
        taken for one: it stays listed, and counts as any unknown process does.
        """
        folder = self._proc / str(pid)
        try:
            if (folder / "comm").read_text().rstrip("\n") != _MPS_SERVER_COMM:
                return False
            program = os.readlink(folder / "exe")
            owner = os.stat(folder / "exe").st_uid  # the running file, even if replaced since
        except (OSError, UnicodeDecodeError):
            return False
        return os.path.basename(program) == _MPS_SERVER_PROGRAM and owner in (0, os.geteuid())

    def _query(self, handle: Any, names: Sequence[str]) -> list[Any]:
        """The first of ``names`` that this driver has, called; [] when none is supported."""
        nvml = self._nvml
        assert nvml is not None
        missing = (nvml.NVMLError_FunctionNotFound, self._mismatch_error())
        for name in names:
            function = getattr(nvml, name, None)
            if function is None or name in self._missing:
                continue
            try:
                return list(function(handle))
            except missing:
                self._missing.add(name)  # library-wide: do not ask again at every poll
            except nvml.NVMLError_NotSupported:
                return []  # e.g. graphics processes on a compute-only GPU or a MIG device
        return []

    # --- errors and shutdown -------------------------------------------------------------------

    def _mismatch_error(self) -> type[Exception]:
        error = getattr(self._nvml, "NVMLLibraryMismatchError", None)
        return error if isinstance(error, type) else _NeverRaised

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """NVML's exceptions become ``GpuError`` with a short message (the httpcore way)."""
        nvml = self._nvml
        assert nvml is not None
        try:
            yield
        except nvml.NVMLError as exc:
            if isinstance(exc, nvml.NVMLError_GpuIsLost):
                raise GpuError(f"GPU is lost (NVML: {exc})") from exc
            raise GpuError(f"NVML query failed (NVML: {exc})") from exc
        except self._mismatch_error() as exc:
            raise GpuError(f"NVML binding and driver do not match ({exc})") from exc

    def note_trial(self, session_id: int, uuids: Sequence[str]) -> None:
        """Nothing to do: the driver sees a trial's processes by itself."""

    def close(self) -> None:
        """Shut NVML down; errors are logged, not raised (the daemon is going away anyway)."""
        self._devices = []
        if not self._initialized or self._nvml is None:
            return
        self._initialized = False
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            self._log.warning("nvml_shutdown_failed", error=str(exc))


def _init_reason(nvml: ModuleType, exc: BaseException) -> str:
    """A short, readable reason why NVML cannot be used on this host."""
    reasons: list[tuple[str, str]] = [
        ("NVMLError_LibraryNotFound", "NVIDIA driver library libnvidia-ml.so.1 not found"),
        ("NVMLError_DriverNotLoaded", "NVIDIA driver not loaded"),
        ("NVMLError_NoPermission", "no permission to use NVML"),
    ]
    for class_name, reason in reasons:
        error = getattr(nvml, class_name, None)
        if isinstance(error, type) and isinstance(exc, error):
            return f"{reason} (NVML: {exc})"
    return f"NVML initialization failed (NVML: {exc})"
