"""NvmlBackend against a fake pynvml: discovery, fallbacks, MIG, MPS, and errors kept inside."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gpusched._daemon import nvml as nvml_module
from gpusched._daemon.devices import DeviceTable
from gpusched._daemon.gpu_backend import DeviceInfo, GpuBackend, GpuProcess
from gpusched._daemon.nvml import NvmlBackend
from gpusched.config import DaemonSettings
from gpusched.models import DeviceState
from tests.fakes import fake_pynvml as fp
from tests.fakes.fake_pynvml import MIB, FakeGpu, FakeProcess, FakePynvml

GPU0 = "GPU-11111111-2222-3333-4444-555555555555"
GPU1 = "GPU-66666666-7777-8888-9999-000000000000"
MIG_A = "MIG-aaaaaaaa-0000-0000-0000-000000000001"
MIG_B = "MIG-bbbbbbbb-0000-0000-0000-000000000002"


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(GPU0, total_bytes=81559 * MIB, used_bytes=4 * MIB, reserved_bytes=500 * MIB),
        FakeGpu(
            GPU1,
            name="NVIDIA A100-SXM4-40GB",
            total_bytes=40960 * MIB,
            pci_bus_id="00000000:81:00.0",
        ),
    ]


def events(logs: Iterable[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --- discovery ---------------------------------------------------------------------------


def test_discovers_every_gpu_with_uuid_index_name_memory_and_pci() -> None:
    nvml = FakePynvml(two_gpus())
    backend = NvmlBackend(nvml)
    assert backend.discover() == [
        DeviceInfo(GPU0, 0, "NVIDIA H100 80GB HBM3", 81559, pci_bus_id="00000000:01:00.0"),
        DeviceInfo(GPU1, 1, "NVIDIA A100-SXM4-40GB", 40960, pci_bus_id="00000000:81:00.0"),
    ]
    assert backend.kind == "nvml"
    assert nvml.initialized == 1
    assert repr(backend) == "<NvmlBackend gpus=2 ready>"


def test_it_satisfies_the_backend_protocol() -> None:
    backend: GpuBackend = NvmlBackend(FakePynvml(two_gpus()))
    assert len(backend.discover()) == 2


def test_reads_memory_v2_which_leaves_reserved_memory_out() -> None:
    nvml = FakePynvml(two_gpus())
    backend = NvmlBackend(nvml)
    backend.discover()
    first, second = backend.read()
    assert (first.uuid, first.memory_used_mib, first.error) == (GPU0, 4, None)
    assert (second.uuid, second.memory_used_mib) == (GPU1, 0)
    assert first.idle_used_mib is None  # NVML cannot know it; the daemon learns it
    assert "nvmlDeviceGetMemoryInfo" not in nvml.calls  # v1 never needed


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param({"missing_functions": ["nvmlDeviceGetMemoryInfo_v2"]}, id="v2-missing"),
        pytest.param({"memory_version_kwarg": False}, id="old-binding-no-version-kwarg"),
        pytest.param({"v2_not_supported": True}, id="v2-not-supported"),
    ],
)
def test_memory_falls_back_to_v1(setup: dict[str, Any]) -> None:
    gpus = two_gpus()
    if setup.pop("v2_not_supported", False):
        for gpu in gpus:
            gpu.memory_v2 = False
    nvml = FakePynvml(gpus, **setup)
    backend = NvmlBackend(nvml)
    assert [d.memory_total_mib for d in backend.discover()] == [81559, 40960]
    first, _ = backend.read()
    assert first.error is None
    assert first.memory_used_mib == 504  # v1 counts the reserved memory as used
    v2_calls = nvml.calls.count("nvmlDeviceGetMemoryInfo_v2")
    backend.read()
    # once v2 failed for a device, it is not asked again at every poll
    assert nvml.calls.count("nvmlDeviceGetMemoryInfo_v2") == v2_calls


def test_strings_as_bytes_from_older_bindings_are_decoded() -> None:
    backend = NvmlBackend(FakePynvml(two_gpus(), strings_as_bytes=True))
    devices = backend.discover()
    assert [d.uuid for d in devices] == [GPU0, GPU1]
    assert devices[1].name == "NVIDIA A100-SXM4-40GB"
    assert [r.uuid for r in backend.read()] == [GPU0, GPU1]


def test_a_gpu_that_fails_during_discovery_is_skipped_alone() -> None:
    gpus = two_gpus()
    gpus[0].error = fp.NVMLError_GpuIsLost
    backend = NvmlBackend(FakePynvml(gpus))
    with capture_logs() as logs:
        devices = backend.discover()
    assert [(d.uuid, d.index) for d in devices] == [(GPU1, 1)]
    (event,) = events(logs, "gpu_discovery_failed")
    assert event["index"] == 0
    assert "GPU is lost" in event["error"]


# --- no driver ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (fp.NVMLError_LibraryNotFound, "libnvidia-ml.so.1 not found"),
        (fp.NVMLError_DriverNotLoaded, "driver not loaded"),
        (fp.NVMLError_NoPermission, "no permission"),
        (fp.NVMLError_Unknown, "NVML initialization failed (NVML: Unknown Error)"),
    ],
)
def test_no_driver_means_no_gpus_said_once(error: type[fp.NVMLError], reason: str) -> None:
    nvml = FakePynvml(two_gpus(), init_error=error)
    backend = NvmlBackend(nvml)
    with capture_logs() as logs:
        assert backend.discover() == []
        assert backend.discover() == []  # asked again: still said only once
        assert backend.read() == []
        backend.close()
    (event,) = events(logs, "nvml_unavailable")
    assert event["log_level"] == "warning"
    assert reason in event["reason"]
    assert backend.unavailable_reason == event["reason"]
    assert "nvmlShutdown" not in nvml.calls  # never initialized, nothing to shut down


def test_pynvml_not_installed_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    backend = NvmlBackend()
    with capture_logs() as logs:
        assert backend.discover() == []
    (event,) = events(logs, "nvml_unavailable")
    assert "pynvml is not installed" in event["reason"]


# --- processes ---------------------------------------------------------------------------


def test_compute_and_graphics_processes_are_merged_by_pid() -> None:
    gpus = two_gpus()
    gpus[0].compute = [FakeProcess(10, 1024 * MIB), FakeProcess(11, None)]
    gpus[0].graphics = [FakeProcess(11, 512 * MIB), FakeProcess(12, 2**64 - 1)]
    gpus[1].graphics = None  # a compute-only GPU: the graphics query is not supported
    gpus[1].compute = [FakeProcess(20, 3 * MIB)]
    backend = NvmlBackend(FakePynvml(gpus))
    backend.discover()
    first, second = backend.read()
    # 11 is listed by both queries: the entry that knows its memory wins; 12's memory is
    # NVML_VALUE_NOT_AVAILABLE, which means unknown, not 16 EiB
    assert first.processes == (GpuProcess(10, 1024), GpuProcess(11, 512), GpuProcess(12, None))
    assert second.processes == (GpuProcess(20, 3),)
    assert second.error is None


@pytest.mark.parametrize("legacy", [False, True], ids=["mismatch-error", "function-not-found"])
def test_process_queries_fall_back_to_older_versions(legacy: bool) -> None:
    gpus = two_gpus()
    gpus[0].compute = [FakeProcess(10, 100 * MIB)]
    gpus[0].graphics = [FakeProcess(30, 5 * MIB)]
    nvml = FakePynvml(
        gpus,
        missing_functions=[
            "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetGraphicsRunningProcesses_v3",
        ],
        legacy_unversioned=legacy,
    )
    backend = NvmlBackend(nvml)
    backend.discover()
    first, _ = backend.read()
    assert first.error is None
    assert first.processes == (GpuProcess(10, 100), GpuProcess(30, 5))
    assert "nvmlDeviceGetComputeRunningProcesses_v2" in nvml.calls
    v3_calls = nvml.calls.count("nvmlDeviceGetComputeRunningProcesses_v3")
    backend.read()
    # what the driver lacks is remembered, not asked again at every poll
    assert nvml.calls.count("nvmlDeviceGetComputeRunningProcesses_v3") == v3_calls


def test_readings_follow_the_gpu_between_polls() -> None:
    gpus = two_gpus()
    backend = NvmlBackend(FakePynvml(gpus))
    backend.discover()
    assert backend.read()[1].processes == ()
    gpus[1].compute = [FakeProcess(42, 2000 * MIB)]
    gpus[1].used_bytes = 2000 * MIB
    reading = backend.read()[1]
    assert reading.processes == (GpuProcess(42, 2000),)
    assert reading.memory_used_mib == 2000


# --- MPS ---------------------------------------------------------------------------------

MPS_SERVER, CLIENT, OTHER_CLIENT = 500, 501, 502


def proc_dir(tmp_path: Path, names: dict[int, str]) -> Path:
    """A stand-in for /proc: ``PID/comm`` for each process, as the kernel writes it, and
    ``PID/exe``, a link to a program file of that name (owned by whoever runs the tests)."""
    programs = tmp_path / "bin"
    programs.mkdir(exist_ok=True)
    for pid, name in names.items():
        (tmp_path / str(pid)).mkdir()
        # the kernel keeps 15 bytes of a name: nvidia-cuda-mps-server reads nvidia-cuda-mps
        (tmp_path / str(pid) / "comm").write_text(name[:15] + "\n")
        (programs / name).touch()
        (tmp_path / str(pid) / "exe").symlink_to(programs / name)
    return tmp_path


def mps_gpus() -> list[FakeGpu]:
    """GPU0 under MPS: the server in the compute list, the clients in the MPS list."""
    gpus = two_gpus()
    gpus[0].compute = [FakeProcess(MPS_SERVER, 30 * MIB)]
    gpus[0].mps = [FakeProcess(CLIENT, 2000 * MIB), FakeProcess(OTHER_CLIENT, None)]
    return gpus


@pytest.fixture
def mps_proc(tmp_path: Path) -> Path:
    return proc_dir(tmp_path, {MPS_SERVER: "nvidia-cuda-mps-server", CLIENT: "python",
                               OTHER_CLIENT: "python3"})


def test_mps_clients_are_listed_and_the_mps_server_is_not(mps_proc: Path) -> None:
    gpus = mps_gpus()
    gpus[0].compute.append(FakeProcess(CLIENT, None))  # a driver listing a client twice
    nvml = FakePynvml(gpus)
    backend = NvmlBackend(nvml, proc=mps_proc)
    backend.discover()
    with capture_logs() as logs:
        first, second = backend.read()
        backend.read()
    assert first.error is None
    # deduplicated by pid, the entry that knows the memory kept; the server left out
    assert first.processes == (GpuProcess(CLIENT, 2000), GpuProcess(OTHER_CLIENT, None))
    assert second.processes == ()
    assert "nvmlDeviceGetMPSComputeRunningProcesses_v3" in nvml.calls
    # said once, not at every poll
    (event,) = events(logs, "mps_server_not_listed")
    assert (event["gpu"], event["pid"], event["log_level"]) == (GPU0, MPS_SERVER, "info")


def test_a_new_mps_server_is_said_again(mps_proc: Path) -> None:
    gpus = mps_gpus()
    backend = NvmlBackend(FakePynvml(gpus), proc=mps_proc)
    backend.discover()
    with capture_logs() as logs:
        backend.read()
        gpus[0].compute = []  # the server exits ...
        backend.read()
        gpus[0].compute = [FakeProcess(MPS_SERVER, 30 * MIB)]  # ... and starts again
        backend.read()
    assert len(events(logs, "mps_server_not_listed")) == 2


def test_a_process_whose_name_cannot_be_read_stays_listed(tmp_path: Path) -> None:
    # Gone between the query and the look, or in another PID namespace than NVML's pids: not
    # taken for an MPS server, so it still counts against the GPU.
    gpus = mps_gpus()
    backend = NvmlBackend(FakePynvml(gpus), proc=proc_dir(tmp_path, {CLIENT: "python"}))
    backend.discover()
    assert [p.pid for p in backend.read()[0].processes] == [MPS_SERVER, CLIENT, OTHER_CLIENT]


def test_a_process_that_only_calls_itself_the_mps_server_stays_listed(tmp_path: Path) -> None:
    # Its name is anyone's to set (/proc/self/comm): a process of another user named so once
    # hid from the release barrier and the foreign check. The program it runs must be
    # nvidia-cuda-mps-server, from a file root (or the daemon's own user) owns.
    gpus = mps_gpus()
    folder = proc_dir(tmp_path, {MPS_SERVER: "python3"})
    (folder / str(MPS_SERVER) / "comm").write_text("nvidia-cuda-mps\n")  # renamed itself
    backend = NvmlBackend(FakePynvml(gpus), proc=folder)
    backend.discover()
    assert MPS_SERVER in [p.pid for p in backend.read()[0].processes]
    if os.geteuid() == 0:  # a file of that name, but another user's
        (folder / str(MPS_SERVER) / "exe").unlink()
        fake = folder / "bin" / "nvidia-cuda-mps-server"
        fake.touch()
        os.chown(fake, 4242, 4242)
        (folder / str(MPS_SERVER) / "exe").symlink_to(fake)
        assert MPS_SERVER in [p.pid for p in backend.read()[0].processes]


def test_an_mps_client_named_like_the_server_is_still_listed(tmp_path: Path) -> None:
    # Only the compute list's server is left out: whatever the MPS query lists is a client.
    gpus = mps_gpus()
    names = {MPS_SERVER: "nvidia-cuda-mps-server", CLIENT: "nvidia-cuda-mps-server"}
    backend = NvmlBackend(FakePynvml(gpus), proc=proc_dir(tmp_path, names))
    backend.discover()
    assert [p.pid for p in backend.read()[0].processes] == [CLIENT, OTHER_CLIENT]


@pytest.mark.parametrize(
    ("setup", "clients"),
    [
        pytest.param({"not_supported": True}, [], id="not-supported-on-this-gpu"),
        pytest.param(
            {"missing_functions": ["nvmlDeviceGetMPSComputeRunningProcesses_v3"]},
            [CLIENT, OTHER_CLIENT],
            id="driver-without-v3-falls-back-to-v2",
        ),
        pytest.param(
            {
                "missing_functions": ["nvmlDeviceGetMPSComputeRunningProcesses_v3"],
                "legacy_unversioned": True,
            },
            [CLIENT, OTHER_CLIENT],
            id="legacy-binding-without-v3-falls-back-to-v2",
        ),
        pytest.param(
            {
                "missing_functions": [
                    "nvmlDeviceGetMPSComputeRunningProcesses_v3",
                    "nvmlDeviceGetMPSComputeRunningProcesses_v2",
                ]
            },
            [],
            id="driver-without-any",
        ),
        pytest.param(
            {
                "absent_functions": [
                    "nvmlDeviceGetMPSComputeRunningProcesses",
                    "nvmlDeviceGetMPSComputeRunningProcesses_v3",
                    "nvmlDeviceGetMPSComputeRunningProcesses_v2",
                ]
            },
            [],
            id="binding-older-than-the-query",
        ),
    ],
)
def test_the_mps_query_missing_or_unsupported_is_not_an_error(
    mps_proc: Path, setup: dict[str, Any], clients: list[int]
) -> None:
    gpus = mps_gpus()
    gpus[0].compute.append(FakeProcess(10, 100 * MIB))  # a process outside MPS
    gpus[0].graphics = [FakeProcess(30, 5 * MIB)]
    if setup.pop("not_supported", False):
        gpus[0].mps = None
    nvml = FakePynvml(gpus, **setup)
    backend = NvmlBackend(nvml, proc=mps_proc)
    backend.discover()
    first, second = backend.read()
    assert (first.error, second.error) == (None, None)
    # the others are listed as before, and the server is left out all the same
    assert [p.pid for p in first.processes] == [10, *clients, 30]
    asked = nvml.calls.count("nvmlDeviceGetMPSComputeRunningProcesses_v3")
    backend.read()
    if "missing_functions" in setup:  # what the driver lacks is not asked again
        assert nvml.calls.count("nvmlDeviceGetMPSComputeRunningProcesses_v3") == asked


def test_mps_clients_on_a_mig_device_come_from_its_handle(mps_proc: Path) -> None:
    parent = mig_gpu()
    mig_a, _, mig_b, _ = parent.mig_slots
    assert mig_a is not None and mig_b is not None
    mig_a.compute = [FakeProcess(MPS_SERVER, 30 * MIB)]
    mig_a.mps = [FakeProcess(CLIENT, 100 * MIB)]
    mig_b.mps = None  # not supported there
    backend = NvmlBackend(FakePynvml([parent]), proc=mps_proc)
    backend.discover()
    first, second = backend.read()
    assert (first.uuid, first.processes) == (MIG_A, (GpuProcess(CLIENT, 100),))
    assert (second.uuid, second.processes, second.error) == (MIG_B, (), None)


def test_under_mps_a_gpu_is_free_with_the_server_and_released_when_the_clients_exit(
    mps_proc: Path,
) -> None:
    """What the scheduler makes of these readings: the server alone is not foreign, the
    release barrier waits for the trial's client, a stranger's client is foreign."""
    gpus = mps_gpus()
    gpus[0].mps = []
    gpus[0].used_bytes = 30 * MIB  # the server's context
    backend = NvmlBackend(FakePynvml(gpus), proc=mps_proc)
    table = DeviceTable(backend.discover(), DaemonSettings(), clock=lambda: 1000.0)
    table.update(backend.read(), {})
    assert table.slots[GPU0].state is DeviceState.FREE
    table.assign("e1/0", [GPU0], 1.0)
    table.set_session("e1/0", [GPU0], CLIENT)
    gpus[0].mps = [FakeProcess(CLIENT, 2000 * MIB)]
    gpus[0].used_bytes = 2030 * MIB
    table.update(backend.read(), {CLIENT: [CLIENT]})
    assert table.slots[GPU0].state is DeviceState.BUSY
    table.release("e1/0", [GPU0])
    table.update(backend.read(), {})  # its client is still listed
    assert table.slots[GPU0].state is DeviceState.RELEASING
    gpus[0].mps = []  # the client exits; the server stays, as MPS servers do
    gpus[0].used_bytes = 30 * MIB
    table.update(backend.read(), {})
    assert table.slots[GPU0].state is DeviceState.FREE
    gpus[0].mps = [FakeProcess(OTHER_CLIENT, 500 * MIB)]  # someone else's MPS client
    table.update(backend.read(), {})
    assert table.slots[GPU0].state is DeviceState.FOREIGN
    assert table.slots[GPU0].foreign_pids == [OTHER_CLIENT]


def test_every_process_query_is_named_as_in_the_real_binding() -> None:
    """The names asked for exist in the installed nvidia-ml-py, and the fake has each of them
    (no driver needed: the binding defines its functions whatever the host has)."""
    pynvml = pytest.importorskip("pynvml")
    names = [*nvml_module._COMPUTE_QUERIES, *nvml_module._GRAPHICS_QUERIES,
             *nvml_module._MPS_QUERIES]
    assert [n for n in names if not callable(getattr(pynvml, n, None))] == []
    assert [n for n in names if not callable(getattr(FakePynvml(), n, None))] == []


# --- errors while reading -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (fp.NVMLError_GpuIsLost, "GPU is lost (NVML: GPU is lost)"),
        (fp.NVMLError_Unknown, "NVML query failed (NVML: Unknown Error)"),
    ],
)
def test_one_failing_device_does_not_affect_the_others(
    error: type[fp.NVMLError], message: str
) -> None:
    gpus = two_gpus()
    gpus[1].compute = [FakeProcess(7, MIB)]
    backend = NvmlBackend(FakePynvml(gpus))
    backend.discover()
    gpus[0].error = error
    broken, fine = backend.read()  # must not raise
    assert (broken.uuid, broken.error) == (GPU0, message)
    assert (fine.uuid, fine.error, fine.processes) == (GPU1, None, (GpuProcess(7, 1),))
    gpus[0].error = None
    assert backend.read()[0].error is None  # a device that comes back reads normally


def test_a_driver_without_any_process_query_is_not_an_error() -> None:
    gpus = two_gpus()
    nvml = FakePynvml(
        gpus,
        # neither the newest nor the older version exists: not an error, just nothing to list
        missing_functions=[
            "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetComputeRunningProcesses_v2",
        ],
    )
    backend = NvmlBackend(nvml)
    backend.discover()
    assert [r.error for r in backend.read()] == [None, None]


# --- MIG ---------------------------------------------------------------------------------


def mig_gpu() -> FakeGpu:
    mig_a = FakeGpu(MIG_A, name="NVIDIA H100 80GB HBM3 MIG 1g.10gb", total_bytes=9984 * MIB)
    mig_b = FakeGpu(MIG_B, name="NVIDIA H100 80GB HBM3 MIG 3g.40gb", total_bytes=40192 * MIB)
    return FakeGpu(GPU0, mig_mode=1, mig_slots=[mig_a, None, mig_b, None])


def test_with_mig_on_the_mig_devices_are_scheduled_not_the_parent() -> None:
    gpus = [mig_gpu(), two_gpus()[1]]
    backend = NvmlBackend(FakePynvml(gpus))
    bus = "00000000:01:00.0"  # the parent's
    assert backend.discover() == [
        DeviceInfo(MIG_A, 0, "NVIDIA H100 80GB HBM3 MIG 1g.10gb", 9984, False, GPU0, bus),
        DeviceInfo(MIG_B, 0, "NVIDIA H100 80GB HBM3 MIG 3g.40gb", 40192, False, GPU0, bus),
        DeviceInfo(GPU1, 1, "NVIDIA A100-SXM4-40GB", 40960, pci_bus_id="00000000:81:00.0"),
    ]


def test_mig_device_processes_come_from_the_mig_handle() -> None:
    parent = mig_gpu()
    parent.compute = [FakeProcess(1, MIB), FakeProcess(2, MIB)]  # the parent sees all of them
    mig_a, _, mig_b, _ = parent.mig_slots
    assert mig_a is not None and mig_b is not None
    mig_a.compute = [FakeProcess(1, 100 * MIB)]
    mig_a.used_bytes = 100 * MIB
    mig_b.compute = [FakeProcess(2, 300 * MIB)]
    backend = NvmlBackend(FakePynvml([parent]))
    backend.discover()
    first, second = backend.read()
    assert (first.uuid, first.processes, first.memory_used_mib) == (
        MIG_A,
        (GpuProcess(1, 100),),
        100,
    )
    assert (second.uuid, second.processes) == (MIG_B, (GpuProcess(2, 300),))


def test_mig_mode_disabled_schedules_the_whole_gpu() -> None:
    gpu = mig_gpu()
    gpu.mig_mode = 0
    backend = NvmlBackend(FakePynvml([gpu]))
    assert [(d.uuid, d.mig_parent_uuid) for d in backend.discover()] == [(GPU0, None)]


def test_mig_on_without_any_mig_device_gives_nothing_and_says_so() -> None:
    gpu = FakeGpu(GPU0, mig_mode=1, mig_slots=[None] * 7)
    backend = NvmlBackend(FakePynvml([gpu, two_gpus()[1]]))
    with capture_logs() as logs:
        assert [d.uuid for d in backend.discover()] == [GPU1]
    (event,) = events(logs, "mig_without_devices")
    assert event["gpu"] == GPU0


def test_a_failing_mig_device_is_skipped_alone() -> None:
    gpu = mig_gpu()
    broken = gpu.mig_slots[0]
    assert broken is not None
    broken.error = fp.NVMLError_Unknown
    backend = NvmlBackend(FakePynvml([gpu]))
    with capture_logs() as logs:
        assert [d.uuid for d in backend.discover()] == [MIG_B]
    (event,) = events(logs, "mig_discovery_failed")
    assert (event["parent"], event["slot"]) == (GPU0, 0)


# --- shutdown ----------------------------------------------------------------------------


def test_close_shuts_nvml_down_once() -> None:
    nvml = FakePynvml(two_gpus())
    backend = NvmlBackend(nvml)
    backend.discover()
    backend.note_trial(123, [GPU0])  # a no-op: the driver sees trials by itself
    backend.close()
    backend.close()
    assert nvml.initialized == 0
    assert nvml.calls.count("nvmlShutdown") == 1
    assert backend.read() == []
    assert repr(backend) == "<NvmlBackend gpus=0 closed>"


def test_close_tolerates_a_failing_shutdown() -> None:
    nvml = FakePynvml(two_gpus(), shutdown_error=fp.NVMLError_Unknown)
    backend = NvmlBackend(nvml)
    backend.discover()
    with capture_logs() as logs:
        backend.close()  # must not raise
    assert events(logs, "nvml_shutdown_failed")
