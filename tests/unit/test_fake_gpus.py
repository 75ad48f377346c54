"""FakeBackend (SPEC 7): arguments, stable UUIDs, the live file, and trial memory accounting."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gpusched._daemon.fake_gpus import FakeBackend, fake_uuid
from gpusched._daemon.gpu_backend import DeviceReading, GpuBackend, GpuProcess
from gpusched._daemon.procfs import YOUNG_S
from gpusched.errors import ConfigError

UUID_RE = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, config: dict[str, Any]) -> None:
    path.write_text(json.dumps(config))


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process in a session of its own, as the launcher starts trials."""
    proc = subprocess.Popen(SLEEPER, start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def one(backend: FakeBackend) -> DeviceReading:
    (reading,) = backend.read()
    return reading


# --- arguments and discovery ---------------------------------------------------------------


def test_a_count_gives_that_many_default_devices() -> None:
    backend = FakeBackend.from_arg("3")
    devices = backend.discover()
    assert [d.index for d in devices] == [0, 1, 2]
    assert all(d.fake and d.memory_total_mib == 81559 for d in devices)
    assert all("fake" in d.name.lower() for d in devices)
    assert backend.kind == "fake"
    assert repr(backend) == "<FakeBackend gpus=3 trials=0 from=count>"
    readings = backend.read()
    assert [r.uuid for r in readings] == [d.uuid for d in devices]
    assert all(r.memory_used_mib == 300 and r.idle_used_mib == 300 for r in readings)
    assert all(r.processes == () and r.error is None for r in readings)


def test_it_satisfies_the_backend_protocol() -> None:
    backend: GpuBackend = FakeBackend.from_arg("1")
    assert backend.discover()


def test_uuids_are_stable_and_in_nvidia_format() -> None:
    first = [d.uuid for d in FakeBackend.from_arg("4").discover()]
    again = [d.uuid for d in FakeBackend.from_arg("4").discover()]
    assert first == again == [fake_uuid(i) for i in range(4)]
    assert len(set(first)) == 4
    assert all(UUID_RE.match(u) for u in first), first
    # pinned: a new gpusched version must not rename the devices of a running setup
    assert first[:2] == [
        "GPU-f9cd7aeb-776f-50b2-97e7-1c80adff0f7a",
        "GPU-b8ffdbdc-9aa7-5121-91f6-71b9490ba032",
    ]


def test_a_file_sets_names_memory_and_levels(tmp_path: Path) -> None:
    path = tmp_path / "gpus.json"
    devices = [
        {"name": "Fake H100", "memory_total_mib": 81559, "foreign_used_mib": 0},
        {"name": "A100", "memory_total_mib": 40960, "foreign_used_mib": 1000},
    ]
    write(path, {"devices": devices, "idle_used_mib": 10})
    backend = FakeBackend.from_arg(str(path))
    found = backend.discover()
    assert [d.name for d in found] == ["Fake H100", "Fake A100"]
    assert [d.memory_total_mib for d in found] == [81559, 40960]
    assert [r.memory_used_mib for r in backend.read()] == [10, 1010]
    # foreign memory is memory only: NVML in a container does not list foreign pids either
    assert all(r.processes == () for r in backend.read())


def test_defaults_fill_in_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "gpus.json"
    write(path, {"devices": [{}]})
    backend = FakeBackend.from_arg(str(path))
    (device,) = backend.discover()
    assert device.name == "Fake GPU"
    assert device.memory_total_mib == 81559
    assert one(backend).memory_used_mib == 300


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("-1", "cannot be negative"),
        ("257", "at most 256"),
        ("/no/such/file.json", "neither a count of GPUs nor an existing JSON file"),
        ("four", "neither a count"),
    ],
)
def test_bad_args_are_refused(arg: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FakeBackend.from_arg(arg)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", 'must be an object with a "devices" list'),
        ('{"devices": 2}', 'must be an object with a "devices" list'),
        ('{"devices": [3]}', r"devices\[0\]: must be an object"),
        ('{"devices": [{"memory_total_mib": "big"}]}', r"devices\[0\].memory_total_mib: must be"),
        ('{"devices": [{"memory_total_mib": 0}]}', "must be more than 0"),
        ('{"devices": [{"foreign_used_mib": -5}]}', "must be 0 or more"),
        ('{"devices": [{"lost": "yes"}]}', "must be true or false"),
        ('{"devices": [{"name": ""}]}', "non-empty string"),
        ('{"devices": [], "release_delay_s": true}', "release_delay_s: must be a number"),
        ('{"devices": [], "release_delay": 3}', "unknown key 'release_delay'"),
        ('{"devices": [{"nmae": "x"}]}', "unknown key 'nmae'"),
    ],
)
def test_bad_files_are_refused_with_what_to_fix(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "gpus.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        FakeBackend.from_arg(str(path))
    assert str(path) in str(info.value)


# --- the live file ---------------------------------------------------------------------------


def test_the_file_is_read_again_at_every_read(tmp_path: Path) -> None:
    path = tmp_path / "gpus.json"
    write(path, {"devices": [{"name": "Fake H100"}], "idle_used_mib": 300})
    backend = FakeBackend.from_arg(str(path))
    backend.discover()
    assert one(backend).memory_used_mib == 300
    write(path, {"devices": [{"name": "Fake H100", "foreign_used_mib": 5000}]})
    assert one(backend).memory_used_mib == 5300  # a foreign process appeared
    # the device count is fixed at discover: a new entry is not a new GPU
    write(path, {"devices": [{}, {}], "idle_used_mib": 100})
    assert [r.memory_used_mib for r in backend.read()] == [100]


def test_memory_is_capped_at_the_total(tmp_path: Path) -> None:
    path = tmp_path / "gpus.json"
    write(path, {"devices": [{"memory_total_mib": 1000, "foreign_used_mib": 5000}]})
    backend = FakeBackend.from_arg(str(path))
    backend.discover()
    assert one(backend).memory_used_mib == 1000


def test_an_unreadable_file_keeps_the_last_good_config(tmp_path: Path) -> None:
    path = tmp_path / "gpus.json"
    write(path, {"devices": [{"foreign_used_mib": 700}], "idle_used_mib": 0})
    backend = FakeBackend.from_arg(str(path))
    backend.discover()
    with capture_logs() as logs:
        path.write_text('{"devices": [{"foreign_')  # half written
        assert one(backend).memory_used_mib == 700
        assert one(backend).memory_used_mib == 700
        path.unlink()
        assert one(backend).memory_used_mib == 700
    events = [e for e in logs if e["event"] == "fake_gpus_config_unreadable"]
    assert len(events) == 1  # once, not at every poll
    assert events[0]["path"] == str(path)
    write(path, {"devices": [{"foreign_used_mib": 1}], "idle_used_mib": 0})
    assert one(backend).memory_used_mib == 1  # back to following the file


def test_a_lost_device_reads_as_an_error(tmp_path: Path) -> None:
    path = tmp_path / "gpus.json"
    write(path, {"devices": [{}, {}]})
    backend = FakeBackend.from_arg(str(path))
    backend.discover()
    write(path, {"devices": [{}, {"lost": True}]})
    healthy, lost = backend.read()
    assert healthy.error is None and healthy.memory_used_mib == 300
    assert lost.error == "GPU is lost (fake)"
    write(path, {"devices": [{}, {}]})
    assert backend.read()[1].error is None


# --- trial memory ----------------------------------------------------------------------------


def test_trial_memory_is_held_while_its_session_lives(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    path = tmp_path / "gpus.json"
    write(path, {"devices": [{}, {}], "trial_used_mib": 2000, "release_delay_s": 0})
    backend = FakeBackend.from_arg(str(path))
    first, second = (d.uuid for d in backend.discover())
    backend.note_trial(sleeper.pid, [second])
    idle, busy = backend.read()
    assert idle.memory_used_mib == 300 and idle.processes == ()
    assert busy.memory_used_mib == 2300
    assert busy.processes == (GpuProcess(sleeper.pid, 2000),)
    assert repr(backend) == f"<FakeBackend gpus=2 trials=1 from={path}>"
    sleeper.kill()
    sleeper.wait()
    idle, released = backend.read()  # no delay: released at the first empty reading
    assert released.memory_used_mib == 300 and released.processes == ()
    assert "trials=0" in repr(backend)
    assert first != second


def test_trial_memory_is_held_for_the_release_delay(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    path = tmp_path / "gpus.json"
    write(path, {"devices": [{}], "release_delay_s": 5})
    clock = Clock()
    backend = FakeBackend.from_arg(str(path), clock=clock)
    (device,) = backend.discover()
    backend.note_trial(sleeper.pid, [device.uuid])
    assert one(backend).memory_used_mib == 2300
    clock.now += 100  # time alone releases nothing while the process lives
    assert one(backend).memory_used_mib == 2300
    sleeper.kill()
    sleeper.wait()
    reading = one(backend)  # first seen empty now: the delay starts here
    assert reading.memory_used_mib == 2300 and reading.processes == ()
    clock.now += 4.9
    assert one(backend).memory_used_mib == 2300
    clock.now += 0.1
    assert one(backend).memory_used_mib == 300
    clock.now -= 1  # once released, the binding is gone for good
    assert one(backend).memory_used_mib == 300


def test_the_release_delay_is_read_from_the_current_file(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    path = tmp_path / "gpus.json"
    write(path, {"devices": [{}], "release_delay_s": 1})
    clock = Clock()
    backend = FakeBackend.from_arg(str(path), clock=clock)
    (device,) = backend.discover()
    backend.note_trial(sleeper.pid, [device.uuid])
    sleeper.kill()
    sleeper.wait()
    assert one(backend).memory_used_mib == 2300
    write(path, {"devices": [{}], "release_delay_s": 10})  # memory takes longer to come back
    clock.now += 2
    assert one(backend).memory_used_mib == 2300
    clock.now += 8
    assert one(backend).memory_used_mib == 300


def test_children_keep_the_trial_alive_after_the_leader_exits(tmp_path: Path) -> None:
    # the leader leaves a background child behind and exits, as a trainer's launcher might
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & exit 0"], start_new_session=True)
    proc.wait()
    backend = FakeBackend.from_arg("1")
    (device,) = backend.discover()
    backend.note_trial(proc.pid, [device.uuid])
    reading = one(backend)
    (child,) = reading.processes
    assert child.pid != proc.pid
    assert child.used_mib == 2000  # the survivor carries the trial's memory
    assert reading.memory_used_mib == 2300
    subprocess.run(["kill", "-9", str(child.pid)], check=True)
    deadline = time.monotonic() + 10
    while one(backend).memory_used_mib != 300:
        assert time.monotonic() < deadline, "memory never released"
        time.sleep(0.01)


def test_two_trials_sharing_a_device_add_up() -> None:
    sessions = {101: [101, 102], 202: [202]}
    backend = FakeBackend.from_arg("1", sessions=lambda _sids, **_: sessions)
    (device,) = backend.discover()
    backend.note_trial(101, [device.uuid])
    backend.note_trial(202, [device.uuid])
    reading = one(backend)
    assert reading.memory_used_mib == 300 + 2 * 2000
    # the leader owns its trial's memory; its child is listed with memory unknown
    assert set(reading.processes) == {
        GpuProcess(101, 2000),
        GpuProcess(102, None),
        GpuProcess(202, 2000),
    }
    del sessions[101]
    assert one(backend).memory_used_mib == 2300


def test_a_trial_on_no_known_device_changes_nothing() -> None:
    backend = FakeBackend.from_arg("1", sessions=lambda _sids, **_: {7: [7]})
    backend.discover()
    backend.note_trial(7, ["GPU-not-one-of-ours"])
    assert one(backend).memory_used_mib == 300


def test_young_trials_are_looked_for_among_the_pids_created_since_the_oldest() -> None:
    now = [1000.0]
    asked: list[int | None] = []

    def sessions(
        sids: Collection[int], *, created_since: int | None = None
    ) -> dict[int, list[int]]:
        asked.append(created_since)
        return {sid: [sid] for sid in sids}

    backend = FakeBackend.from_arg("1", sessions=sessions, clock=lambda: now[0])
    (device,) = backend.discover()
    backend.note_trial(500, [device.uuid])
    now[0] += 1.0
    backend.note_trial(400, [device.uuid])  # a later pid after the counter wrapped round
    one(backend)
    assert asked[-1] == 500  # the first bound session: every other one was created after it
    now[0] += YOUNG_S
    one(backend)
    assert asked[-1] is None  # the oldest is no longer young: the pids may have wrapped
