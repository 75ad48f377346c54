"""The ``gpus`` and ``exclude_gpus`` settings: which discovered devices are scheduled."""

from __future__ import annotations

from gpusched._daemon.device_choice import choose_devices
from gpusched._daemon.gpu_backend import DeviceInfo

GPU0, GPU1 = "GPU-00000000-0000-0000-0000-000000000000", "GPU-11111111-1111-1111-1111-111111111111"
MIG_A = "MIG-aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
MIG_B = "MIG-bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"
DEVICES = [
    DeviceInfo(GPU0, 0, "H100", 81559.0),
    DeviceInfo(MIG_A, 1, "H100 MIG 3g.40gb", 40000.0, mig_parent_uuid=GPU1),
    DeviceInfo(MIG_B, 1, "H100 MIG 3g.40gb", 40000.0, mig_parent_uuid=GPU1),
]


def uuids(infos: list[DeviceInfo]) -> list[str]:
    return [i.uuid for i in infos]


def test_without_settings_every_device_is_kept() -> None:
    choice = choose_devices(DEVICES, (), ())
    assert uuids(choice.kept) == [GPU0, MIG_A, MIG_B]
    assert choice.left_out == [] and choice.unmatched == []


def test_use_by_index_or_uuid() -> None:
    assert uuids(choose_devices(DEVICES, (0,), ()).kept) == [GPU0]
    assert uuids(choose_devices(DEVICES, (MIG_B,), ()).kept) == [MIG_B]


def test_a_parent_gpu_names_its_mig_devices() -> None:
    assert uuids(choose_devices(DEVICES, (GPU1,), ()).kept) == [MIG_A, MIG_B]
    assert uuids(choose_devices(DEVICES, (), (1,)).kept) == [GPU0]
    assert uuids(choose_devices(DEVICES, (), (GPU1,)).left_out) == [MIG_A, MIG_B]


def test_exclude_wins_over_use() -> None:
    choice = choose_devices(DEVICES, (0, 1), (MIG_A,))
    assert uuids(choice.kept) == [GPU0, MIG_B]
    assert uuids(choice.left_out) == [MIG_A]


def test_names_that_match_no_device_are_reported() -> None:
    choice = choose_devices(DEVICES, (7, GPU0), ("GPU-typo",))
    assert choice.unmatched == [7, "GPU-typo"]
    assert uuids(choice.kept) == [GPU0]
