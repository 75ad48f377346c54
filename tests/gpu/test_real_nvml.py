"""NvmlBackend against the real ``pynvml`` and driver; skipped on a host without a GPU."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from gpusched._daemon.gpu_backend import DeviceInfo
from gpusched._daemon.nvml import NvmlBackend

pytestmark = pytest.mark.gpu

UUID_RE = re.compile(r"^(GPU|MIG)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def backend() -> Iterator[NvmlBackend]:
    nvml = NvmlBackend()
    yield nvml
    nvml.close()


@pytest.fixture
def devices(backend: NvmlBackend) -> list[DeviceInfo]:
    found = list(backend.discover())
    if not found:
        pytest.skip(f"no NVIDIA GPU here ({backend.unavailable_reason or 'NVML lists none'})")
    return found


def test_discovers_real_devices(devices: list[DeviceInfo]) -> None:
    for device in devices:
        assert UUID_RE.match(device.uuid), device.uuid
        assert device.name and not device.fake
        assert device.memory_total_mib > 1000
        assert device.index >= 0
        assert device.pci_bus_id


def test_reads_every_device_without_error(backend: NvmlBackend, devices: list[DeviceInfo]) -> None:
    readings = backend.read()
    assert [r.uuid for r in readings] == [d.uuid for d in devices]
    for reading, device in zip(readings, devices, strict=True):
        assert reading.error is None, reading.error
        assert 0 <= reading.memory_used_mib <= device.memory_total_mib
        assert all(p.pid > 0 for p in reading.processes)


def test_close_then_discover_again_works(backend: NvmlBackend, devices: list[DeviceInfo]) -> None:
    backend.close()
    assert [d.uuid for d in backend.discover()] == [d.uuid for d in devices]
