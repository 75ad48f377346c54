"""A fake ``pynvml`` module that mimics nvidia-ml-py (13.x) closely enough to test NvmlBackend.

Names, signatures, error classes and structures follow the real binding: the unversioned
process queries (compute, graphics, MPS compute) delegate to ``_v3`` and turn its
FunctionNotFound into ``NVMLLibraryMismatchError`` (``throwOnVersionMismatch``), memory v1
``used`` includes the driver's reserved memory while v2 reports it apart, strings come back as
``str`` (or ``bytes``, as in older bindings, with ``strings_as_bytes``), PCI ``busId`` is
``bytes`` (a ctypes ``c_char`` array), and ``usedGpuMemory`` is None where the driver cannot
say. Under MPS, the compute query lists the MPS server and the MPS query its clients.

A handle is the ``FakeGpu`` itself. Change a ``FakeGpu`` after discovery to change what the next
``read`` sees (``error=NVMLError_GpuIsLost`` loses the device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

__all__ = [
    "FakeGpu",
    "FakeProcess",
    "FakePynvml",
    "Memory",
    "MemoryV2",
    "PciInfo",
    "ProcessInfo",
    "NVMLError",
    "NVMLLibraryMismatchError",
    "NVMLError_Uninitialized",
    "NVMLError_InvalidArgument",
    "NVMLError_NotSupported",
    "NVMLError_NoPermission",
    "NVMLError_NotFound",
    "NVMLError_DriverNotLoaded",
    "NVMLError_LibraryNotFound",
    "NVMLError_FunctionNotFound",
    "NVMLError_GpuIsLost",
    "NVMLError_Unknown",
    "MIB",
]

MIB = 1024 * 1024


class NVMLError(Exception):
    """Base of NVML errors; ``value`` is the NVML return code (as in the real binding)."""

    code: ClassVar[int] = 999
    text: ClassVar[str] = "Unknown Error"

    def __init__(self, value: int | None = None) -> None:
        self.value = self.code if value is None else value
        super().__init__(self.value)

    def __str__(self) -> str:
        return self.text


class NVMLError_Uninitialized(NVMLError):
    """NVML_ERROR_UNINITIALIZED."""

    code, text = 1, "Uninitialized"


class NVMLError_InvalidArgument(NVMLError):
    """NVML_ERROR_INVALID_ARGUMENT."""

    code, text = 2, "Invalid Argument"


class NVMLError_NotSupported(NVMLError):
    """NVML_ERROR_NOT_SUPPORTED."""

    code, text = 3, "Not Supported"


class NVMLError_NoPermission(NVMLError):
    """NVML_ERROR_NO_PERMISSION."""

    code, text = 4, "Insufficient Permissions"


class NVMLError_NotFound(NVMLError):
    """NVML_ERROR_NOT_FOUND."""

    code, text = 6, "Not Found"


class NVMLError_DriverNotLoaded(NVMLError):
    """NVML_ERROR_DRIVER_NOT_LOADED."""

    code, text = 9, "Driver Not Loaded"


class NVMLError_LibraryNotFound(NVMLError):
    """NVML_ERROR_LIBRARY_NOT_FOUND."""

    code, text = 12, "NVML Shared Library Not Found"


class NVMLError_FunctionNotFound(NVMLError):
    """NVML_ERROR_FUNCTION_NOT_FOUND: the loaded libnvidia-ml lacks the C function."""

    code, text = 13, "Function Not Found"


class NVMLError_GpuIsLost(NVMLError):
    """NVML_ERROR_GPU_IS_LOST."""

    code, text = 15, "GPU is lost"


class NVMLError_Unknown(NVMLError):
    """NVML_ERROR_UNKNOWN."""

    code, text = 999, "Unknown Error"


# The module object re-exports the error classes as attributes, which shadows their names
# inside its class body; annotations there use this alias.
_Error = NVMLError


class NVMLLibraryMismatchError(Exception):
    """Raised by the real binding's unversioned functions when the driver lacks their version."""


@dataclass
class Memory:
    """``c_nvmlMemory_t``: ``used`` includes the driver's reserved memory."""

    total: int
    free: int
    used: int


@dataclass
class MemoryV2:
    """``c_nvmlMemory_v2_t``: ``reserved`` is reported apart from ``used``."""

    version: int
    total: int
    reserved: int
    free: int
    used: int


@dataclass
class PciInfo:
    """The part of ``nvmlPciInfo_t`` gpusched reads; ctypes gives ``c_char`` arrays as bytes."""

    busId: bytes
    domain: int = 0
    bus: int = 0
    device: int = 0


@dataclass
class ProcessInfo:
    """What ``nvmlStructToFriendlyObject(c_nvmlProcessInfo_v2_t)`` gives."""

    pid: int
    usedGpuMemory: int | None
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


@dataclass
class FakeProcess:
    """A process holding a context; ``used_bytes`` None where the driver cannot say."""

    pid: int
    used_bytes: int | None


@dataclass
class FakeGpu:
    """One GPU (or MIG device). ``mig_slots`` entries that are None are empty slots."""

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    total_bytes: int = 81559 * MIB
    used_bytes: int = 0
    reserved_bytes: int = 0
    compute: list[FakeProcess] = field(default_factory=list)
    graphics: list[FakeProcess] | None = field(default_factory=list)  # None: NotSupported
    # MPS clients (the MPS server itself is in ``compute``); None: NotSupported
    mps: list[FakeProcess] | None = field(default_factory=list)
    memory_v2: bool = True  # False: the v2 memory query answers NotSupported
    pci_bus_id: str = "00000000:01:00.0"
    mig_mode: int | None = None  # None: the GPU does not support MIG (NotSupported)
    mig_slots: list[FakeGpu | None] = field(default_factory=list)
    error: type[NVMLError] | None = None  # every query on this handle raises it


class FakePynvml(ModuleType):
    """A module object standing in for ``pynvml``; pass it as ``NvmlBackend(nvml=...)``."""

    NVML_DEVICE_MIG_DISABLE = 0x0
    NVML_DEVICE_MIG_ENABLE = 0x1
    nvmlMemory_v2 = 0x02000028

    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_NotFound = NVMLError_NotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Unknown = NVMLError_Unknown
    NVMLLibraryMismatchError = NVMLLibraryMismatchError

    def __init__(
        self,
        gpus: Sequence[FakeGpu] = (),
        *,
        init_error: type[Exception] | None = None,
        missing_functions: Sequence[str] = (),
        legacy_unversioned: bool = False,
        memory_version_kwarg: bool = True,
        strings_as_bytes: bool = False,
        shutdown_error: type[_Error] | None = None,
        absent_functions: Sequence[str] = (),
    ) -> None:
        """``missing_functions``: C function names the "driver" lacks (FunctionNotFound), e.g.
        ``nvmlDeviceGetMemoryInfo_v2`` or ``nvmlDeviceGetComputeRunningProcesses_v3``.
        ``legacy_unversioned``: unversioned process queries raise FunctionNotFound themselves,
        as bindings before ``throwOnVersionMismatch`` did. ``memory_version_kwarg=False``: an old
        binding whose ``nvmlDeviceGetMemoryInfo`` takes no ``version`` (a TypeError).
        ``absent_functions``: Python functions of the module that an older binding does not
        define at all (an AttributeError), e.g. ``nvmlDeviceGetMPSComputeRunningProcesses``.
        """
        self._absent = frozenset(absent_functions)
        super().__init__("pynvml")
        self.gpus = list(gpus)
        self.init_error = init_error
        self.missing_functions = set(missing_functions)
        self.legacy_unversioned = legacy_unversioned
        self.memory_version_kwarg = memory_version_kwarg
        self.strings_as_bytes = strings_as_bytes
        self.shutdown_error = shutdown_error
        self.initialized = 0  # refcount, as the real library keeps one
        self.calls: list[str] = []  # C function names called, in order

    # --- plumbing --------------------------------------------------------------------------

    def __getattribute__(self, name: str) -> Any:
        if name != "_absent" and name in object.__getattribute__(self, "_absent"):
            raise AttributeError(f"module 'pynvml' has no attribute '{name}'")
        return super().__getattribute__(name)

    def _c(self, name: str, handle: FakeGpu | None = None) -> None:
        """Account a call of the C function ``name``, raising what the fake is set to."""
        self.calls.append(name)
        if name in self.missing_functions:
            raise NVMLError_FunctionNotFound()
        if not self.initialized and name not in ("nvmlInitWithFlags", "nvmlShutdown"):
            raise NVMLError_Uninitialized()
        if handle is not None and handle.error is not None:
            raise handle.error()

    def _str(self, value: str) -> str | bytes:
        return value.encode() if self.strings_as_bytes else value

    # --- init ------------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        """``nvmlInit()``: loads the library and initializes it, or raises ``init_error``."""
        self.calls.append("nvmlInitWithFlags")
        if self.init_error is not None:
            raise self.init_error()
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        """``nvmlShutdown()``."""
        self._c("nvmlShutdown")
        if self.shutdown_error is not None:
            raise self.shutdown_error()
        if not self.initialized:
            raise NVMLError_Uninitialized()
        self.initialized -= 1

    # --- device queries --------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        """``nvmlDeviceGetCount()``."""
        self._c("nvmlDeviceGetCount_v2")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        """``nvmlDeviceGetHandleByIndex(index)``: the GPU itself is the handle."""
        self._c("nvmlDeviceGetHandleByIndex_v2")
        if not 0 <= index < len(self.gpus):
            raise NVMLError_InvalidArgument()
        gpu = self.gpus[index]
        if gpu.error is not None:
            raise gpu.error()
        return gpu

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str | bytes:
        """``nvmlDeviceGetUUID(handle)``."""
        self._c("nvmlDeviceGetUUID", handle)
        return self._str(handle.uuid)

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str | bytes:
        """``nvmlDeviceGetName(handle)``."""
        self._c("nvmlDeviceGetName", handle)
        return self._str(handle.name)

    def nvmlDeviceGetPciInfo(self, handle: FakeGpu) -> PciInfo:
        """``nvmlDeviceGetPciInfo(handle)`` (``_v3`` in the C library)."""
        self._c("nvmlDeviceGetPciInfo_v3", handle)
        return PciInfo(busId=handle.pci_bus_id.encode())

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu, version: int | None = None) -> object:
        """``nvmlDeviceGetMemoryInfo(handle, version=None)``: v1 without version, else v2."""
        if version and not self.memory_version_kwarg:
            raise TypeError("nvmlDeviceGetMemoryInfo() got an unexpected keyword 'version'")
        if not version:
            self._c("nvmlDeviceGetMemoryInfo", handle)
            used = handle.used_bytes + handle.reserved_bytes
            return Memory(total=handle.total_bytes, free=handle.total_bytes - used, used=used)
        self._c("nvmlDeviceGetMemoryInfo_v2", handle)
        if not handle.memory_v2:
            raise NVMLError_NotSupported()
        free = handle.total_bytes - handle.used_bytes - handle.reserved_bytes
        return MemoryV2(version, handle.total_bytes, handle.reserved_bytes, free, handle.used_bytes)

    def _processes(
        self, c_name: str, handle: FakeGpu, procs: list[FakeProcess] | None
    ) -> list[ProcessInfo]:
        self._c(c_name, handle)
        if procs is None:
            raise NVMLError_NotSupported()
        return [ProcessInfo(p.pid, p.used_bytes) for p in procs]

    def _unversioned(
        self, c_name: str, handle: FakeGpu, procs: list[FakeProcess] | None
    ) -> list[ProcessInfo]:
        try:
            return self._processes(c_name, handle, procs)
        except NVMLError_FunctionNotFound:
            if self.legacy_unversioned:
                raise
            raise NVMLLibraryMismatchError(
                "Unversioned function called and the pyNVML version does not match the NVML "
                "lib version."
            ) from None

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: FakeGpu) -> list[ProcessInfo]:
        """``nvmlDeviceGetComputeRunningProcesses_v2(handle)``."""
        return self._processes("nvmlDeviceGetComputeRunningProcesses_v2", handle, handle.compute)

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle: FakeGpu) -> list[ProcessInfo]:
        """``nvmlDeviceGetComputeRunningProcesses_v3(handle)``."""
        return self._processes("nvmlDeviceGetComputeRunningProcesses_v3", handle, handle.compute)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[ProcessInfo]:
        """``nvmlDeviceGetComputeRunningProcesses(handle)``: ``_v3`` behind a version check."""
        return self._unversioned("nvmlDeviceGetComputeRunningProcesses_v3", handle, handle.compute)

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: FakeGpu) -> list[ProcessInfo]:
        """``nvmlDeviceGetGraphicsRunningProcesses_v2(handle)``."""
        return self._processes("nvmlDeviceGetGraphicsRunningProcesses_v2", handle, handle.graphics)

    def nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle: FakeGpu) -> list[ProcessInfo]:
        """``nvmlDeviceGetGraphicsRunningProcesses_v3(handle)``."""
        return self._processes("nvmlDeviceGetGraphicsRunningProcesses_v3", handle, handle.graphics)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeGpu) -> list[ProcessInfo]:
        """``nvmlDeviceGetGraphicsRunningProcesses(handle)``: ``_v3`` behind a version check."""
        c_name = "nvmlDeviceGetGraphicsRunningProcesses_v3"
        return self._unversioned(c_name, handle, handle.graphics)

    def nvmlDeviceGetMPSComputeRunningProcesses_v2(self, handle: FakeGpu) -> list[ProcessInfo]:
        """``nvmlDeviceGetMPSComputeRunningProcesses_v2(handle)``."""
        return self._processes("nvmlDeviceGetMPSComputeRunningProcesses_v2", handle, handle.mps)

    def nvmlDeviceGetMPSComputeRunningProcesses_v3(self, handle: FakeGpu) -> list[ProcessInfo]:
        """``nvmlDeviceGetMPSComputeRunningProcesses_v3(handle)``."""
        return self._processes("nvmlDeviceGetMPSComputeRunningProcesses_v3", handle, handle.mps)

    def nvmlDeviceGetMPSComputeRunningProcesses(self, handle: FakeGpu) -> list[ProcessInfo]:
        """``nvmlDeviceGetMPSComputeRunningProcesses(handle)``: ``_v3`` behind a version check."""
        c_name = "nvmlDeviceGetMPSComputeRunningProcesses_v3"
        return self._unversioned(c_name, handle, handle.mps)

    # --- MIG -------------------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, device: FakeGpu) -> list[int]:
        """``nvmlDeviceGetMigMode(device)``: ``[current, pending]``; NotSupported without MIG."""
        self._c("nvmlDeviceGetMigMode", device)
        if device.mig_mode is None:
            raise NVMLError_NotSupported()
        return [device.mig_mode, device.mig_mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: FakeGpu) -> int:
        """``nvmlDeviceGetMaxMigDeviceCount(device)``."""
        self._c("nvmlDeviceGetMaxMigDeviceCount", device)
        return len(device.mig_slots)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: FakeGpu, index: int) -> FakeGpu:
        """``nvmlDeviceGetMigDeviceHandleByIndex(device, index)``: NotFound for an empty slot."""
        self._c("nvmlDeviceGetMigDeviceHandleByIndex", device)
        if not 0 <= index < len(device.mig_slots):
            raise NVMLError_InvalidArgument()
        slot = device.mig_slots[index]
        if slot is None:
            raise NVMLError_NotFound()
        return slot
