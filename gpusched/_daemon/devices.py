"""The scheduler's view of its GPUs: who holds each one, and whether it may be given out.

Each poll of the backend is read against what the daemon knows (which trial holds which share
of which device, which process sessions are trials). The release barrier lives here: after a
trial ends its devices are ``releasing`` until the driver lists none of its processes and, where
no other trial shares the device, memory is back within ``release_threshold_mib`` of the idle
level; past ``release_timeout_s`` the device is ``quarantined`` with the reason and is checked
again at every later poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpusched._daemon.gpu_backend import DeviceInfo, DeviceReading
from gpusched.config import DaemonSettings
from gpusched.models import DeviceState

__all__ = ["DeviceTable", "DeviceSlot", "Release"]

_FULL = 1.0 - 1e-9  # shares are fractions like 1/3: compare with a little slack


@dataclass
class Release:
    """A trial that ended on a device whose memory is not confirmed back yet."""

    trial: str
    session_id: int | None
    share: float
    since: float


@dataclass
class DeviceSlot:
    """One schedulable device and what the daemon knows about it."""

    info: DeviceInfo
    holders: dict[str, float] = field(default_factory=dict)  # trial -> share of the device
    sessions: dict[str, int] = field(default_factory=dict)  # trial -> its process session
    releasing: dict[str, Release] = field(default_factory=dict)
    reading: DeviceReading | None = None
    idle_mib: float | None = None
    foreign_reason: str | None = None
    foreign_pids: list[int] = field(default_factory=list)  # listed pids that are not ours
    quarantine_reason: str | None = None
    # The driver has not answered a read (shown as quarantined); cleared by any reading.
    unanswered_reason: str | None = None
    lost_reason: str | None = None

    @property
    def state(self) -> DeviceState:
        """The state `gpusched gpus` shows (the most serious condition wins)."""
        if self.lost_reason:
            return DeviceState.LOST
        if self.quarantine_reason or self.unanswered_reason:
            return DeviceState.QUARANTINED
        if self.holders:
            return DeviceState.BUSY
        if self.releasing:
            return DeviceState.RELEASING
        if self.foreign_reason:
            return DeviceState.FOREIGN
        return DeviceState.FREE

    @property
    def used_share(self) -> float:
        """The share held by running and releasing trials."""
        return sum(self.holders.values()) + sum(r.share for r in self.releasing.values())

    def free_mib(self) -> float:
        """Memory free on the device at the last reading."""
        used = self.reading.memory_used_mib if self.reading else 0.0
        return self.info.memory_total_mib - used


class DeviceTable:
    """Every device, with placement (:meth:`pick`) and the release barrier (:meth:`update`)."""

    def __init__(
        self,
        infos: Sequence[DeviceInfo],
        settings: DaemonSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = {i.uuid: DeviceSlot(i) for i in infos}
        self._settings = settings
        self._clock = clock

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for slot in self.slots.values():
            counts[slot.state.value] = counts.get(slot.state.value, 0) + 1
        parts = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        return f"<DeviceTable gpus={len(self.slots)} {parts}>".replace(" >", ">")

    # -- placement ----------------------------------------------------------------------------

    def _usable(self, slot: DeviceSlot, gpu_memory_mib: float | None) -> bool:
        if slot.lost_reason or slot.quarantine_reason or slot.unanswered_reason or slot.releasing:
            return False
        if slot.foreign_reason and not self._settings.allow_foreign_sharing:
            return False
        return gpu_memory_mib is None or slot.free_mib() >= gpu_memory_mib

    def pick(self, gpus_per_trial: float, gpu_memory_mib: float | None) -> list[str] | None:
        """Devices for a trial needing ``gpus_per_trial``, or None if it cannot start now.

        Whole GPUs go only to devices nobody holds, lowest NVML index first. A fraction goes to
        the fullest device that still has room, so that whole GPUs stay whole for others.
        """
        slots = sorted(self.slots.values(), key=lambda s: (s.info.index, s.info.uuid))
        if gpus_per_trial >= 1:
            need = round(gpus_per_trial)
            if need > 1:
                # CUDA shows a process one MIG device only, whatever CUDA_VISIBLE_DEVICES
                # lists: a trial of several GPUs gets whole GPUs (the waiting reason says so).
                slots = [s for s in slots if s.info.mig_parent_uuid is None]
            free = [s for s in slots if not s.holders and self._usable(s, gpu_memory_mib)]
            return [s.info.uuid for s in free[:need]] if len(free) >= need else None
        fits = [
            s for s in slots
            if self._usable(s, gpu_memory_mib)
            and all(share < _FULL for share in s.holders.values())
            and s.used_share + gpus_per_trial <= 1.0 + 1e-9
        ]
        if not fits:
            return None
        best = max(fits, key=lambda s: (s.used_share, -s.info.index))
        return [best.info.uuid]

    def assign(self, trial: str, uuids: Sequence[str], share: float) -> None:
        """``trial`` now holds ``share`` of each device in ``uuids``."""
        for uuid in uuids:
            self.slots[uuid].holders[trial] = share

    def set_session(self, trial: str, uuids: Sequence[str], session_id: int) -> None:
        """Record the process session of ``trial`` (its processes are ours, not foreign)."""
        for uuid in uuids:
            self.slots[uuid].sessions[trial] = session_id

    def release(self, trial: str, uuids: Sequence[str]) -> None:
        """``trial`` ended: its devices are releasing until the barrier says otherwise."""
        now = self._clock()
        for uuid in uuids:
            slot = self.slots[uuid]
            share = slot.holders.pop(trial, 0.0)
            sid = slot.sessions.pop(trial, None)
            slot.releasing[trial] = Release(trial, sid, share, now)

    def holds(self, trial: str) -> bool:
        """True while ``trial`` holds some device (it has not been released)."""
        return any(trial in s.holders for s in self.slots.values())

    def any_releasing(self) -> bool:
        """True while some device waits for memory to come back (polls go faster then)."""
        return any(s.releasing or s.quarantine_reason for s in self.slots.values())

    # -- readings -----------------------------------------------------------------------------

    def unanswered(self, reason: str) -> None:
        """The driver has not answered a read for too long (NVML can hang on a failing GPU):
        no device is given out until a reading comes; the reason says why. A device's first
        reading after that clears it (a release still in progress stays releasing)."""
        for slot in self.slots.values():
            slot.unanswered_reason = reason

    def update(
        self, readings: Sequence[DeviceReading], live_sessions: Mapping[int, Sequence[int]]
    ) -> bool:
        """Apply one poll. ``live_sessions``: session id -> live pids (from /proc).

        Returns True when some device became available for new trials.
        """
        pid_session = {pid: sid for sid, pids in live_sessions.items() for pid in pids}
        became_free = False
        for reading in readings:
            slot = self.slots.get(reading.uuid)
            if slot is None:
                continue
            was_open = self._open_for_work(slot)
            free_before = slot.free_mib()
            self._apply(slot, reading, pid_session)
            # Memory freed on a device open all along (a foreign process shared with, or a
            # fraction of ours) may let a trial that waits for its gpu_memory start.
            became_free |= self._open_for_work(slot) and (
                not was_open or slot.free_mib() > free_before)
        return became_free

    def _open_for_work(self, slot: DeviceSlot) -> bool:
        return self._usable(slot, None) and slot.used_share < _FULL

    def _apply(
        self, slot: DeviceSlot, reading: DeviceReading, pid_session: Mapping[int, int]
    ) -> None:
        slot.unanswered_reason = None  # the driver answered
        if reading.error:
            slot.lost_reason = reading.error
            return
        slot.lost_reason = None
        slot.reading = reading
        ours = set(slot.sessions.values())
        listed = [p.pid for p in reading.processes]
        quiet = not listed and not slot.holders and not slot.releasing
        if reading.idle_used_mib is not None:
            slot.idle_mib = reading.idle_used_mib
        elif quiet and not slot.quarantine_reason:
            # Learn the idle level from quiet readings (NVML does not tell it).
            used = reading.memory_used_mib
            slot.idle_mib = used if slot.idle_mib is None else min(slot.idle_mib, used)
        idle = slot.idle_mib if slot.idle_mib is not None else reading.memory_used_mib
        self._check_release(slot, reading, listed, pid_session, idle)
        self._check_foreign(slot, reading, listed, pid_session=pid_session, ours=ours, idle=idle)

    def _check_release(
        self, slot: DeviceSlot, reading: DeviceReading, listed: list[int],
        pid_session: Mapping[int, int], idle: float,
    ) -> None:
        if not slot.releasing:
            slot.quarantine_reason = None
            return
        threshold = self._settings.release_threshold_mib
        waiting: list[str] = []
        for trial, rel in slot.releasing.items():
            mine = [p for p in listed if pid_session.get(p) == rel.session_id
                    or (p not in pid_session)]
            if mine:
                waiting.append(f"process {mine[0]} of {trial} still holds the device")
        if not slot.holders and reading.memory_used_mib > idle + threshold:
            waiting.append(
                f"memory not back: {reading.memory_used_mib:.0f} MiB used, idle is {idle:.0f}"
            )
        if not waiting:
            slot.releasing.clear()
            slot.quarantine_reason = None
            return
        oldest = min(r.since for r in slot.releasing.values())
        if self._clock() - oldest > self._settings.release_timeout_s:
            trials = ", ".join(sorted(slot.releasing))
            slot.quarantine_reason = (
                f"not released {self._settings.release_timeout_s:g}s after {trials} ended: "
                + "; ".join(waiting)
            )

    def _check_foreign(
        self, slot: DeviceSlot, reading: DeviceReading, listed: list[int], *,
        pid_session: Mapping[int, int], ours: set[int], idle: float,
    ) -> None:
        known = ours | {r.session_id for r in slot.releasing.values()}
        strangers = [
            p for p in listed
            if (p in pid_session and pid_session[p] not in known)
            or (p not in pid_session and not slot.releasing)
        ]
        slot.foreign_pids = strangers
        if strangers:
            slot.foreign_reason = f"process {strangers[0]} was not started by gpusched"
        elif not slot.holders and not slot.releasing and (
            reading.memory_used_mib > idle + self._settings.release_threshold_mib
        ):
            extra = reading.memory_used_mib - idle
            slot.foreign_reason = f"{extra:.0f} MiB used by processes gpusched did not start"
        else:
            slot.foreign_reason = None

    # -- views --------------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Every device for `gpusched gpus --json`."""
        out = []
        for slot in sorted(self.slots.values(), key=lambda s: (s.info.index, s.info.uuid)):
            reading = slot.reading
            out.append({
                "uuid": slot.info.uuid,
                "index": slot.info.index,
                "name": slot.info.name,
                "fake": slot.info.fake,
                "mig_parent_uuid": slot.info.mig_parent_uuid,
                "memory_total_mib": slot.info.memory_total_mib,
                "memory_used_mib": reading.memory_used_mib if reading else None,
                "state": slot.state.value,
                "reason": (slot.lost_reason or slot.unanswered_reason or slot.quarantine_reason
                           or slot.foreign_reason),
                "trials": sorted(slot.holders),
                "releasing": sorted(slot.releasing),
                "processes": [p.pid for p in reading.processes] if reading else [],
                "foreign_processes": list(slot.foreign_pids),
            })
        return out
