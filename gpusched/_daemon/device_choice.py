"""Which of the discovered devices the daemon schedules: the ``gpus`` and ``exclude_gpus``
settings, each a list of UUIDs (``GPU-…``, ``MIG-…``) or NVML indices.

A GPU's UUID or index also names its MIG devices (the index of a MIG device is its parent's),
so ``exclude_gpus = [0]`` leaves out GPU 0 whether or not MIG is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpusched._daemon.gpu_backend import DeviceInfo

__all__ = ["DeviceChoice", "choose_devices"]


@dataclass(frozen=True)
class DeviceChoice:
    """The devices to schedule, those left out, and configured names that matched nothing."""

    kept: list[DeviceInfo]
    left_out: list[DeviceInfo]
    unmatched: list[str | int]


def _names(info: DeviceInfo) -> set[str | int]:
    names: set[str | int] = {info.uuid, info.index}
    if info.mig_parent_uuid:
        names.add(info.mig_parent_uuid)
    return names


def choose_devices(
    infos: Sequence[DeviceInfo], use: Sequence[str | int], exclude: Sequence[str | int]
) -> DeviceChoice:
    """Keep the devices ``use`` names (all when it is empty), minus those ``exclude`` names."""
    wanted, unwanted = set(use), set(exclude)
    kept, left_out = [], []
    seen: set[str | int] = set()
    for info in infos:
        names = _names(info)
        seen |= names
        if (wanted and not names & wanted) or names & unwanted:
            left_out.append(info)
        else:
            kept.append(info)
    unmatched = [name for name in (*use, *exclude) if name not in seen]
    return DeviceChoice(kept, left_out, unmatched)
