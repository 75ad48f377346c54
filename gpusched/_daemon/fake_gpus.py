"""Fake GPUs (SPEC section 7): a backend for tests, demos and hosts without a GPU.

A fake device accounts memory the way a driver would: an idle level, memory held by processes
gpusched did not start ("foreign", from the file), and ``trial_used_mib`` for each trial bound
to it while any process of the trial's session lives and for ``release_delay_s`` after that.
The JSON file is read again at every ``read()``, so a test can change the world under a
running daemon.
"""

from __future__ import annotations

import functools
import json
import math
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from gpusched._daemon import procfs
from gpusched._daemon.gpu_backend import DeviceInfo, DeviceReading, GpuBackend, GpuProcess
from gpusched.errors import ConfigError

__all__ = ["FakeBackend", "FakeConfig", "FakeDeviceSpec", "fake_uuid", "load_fake_config"]

_MAX_COUNT = 256
# A fixed namespace: the same index gives the same UUID on every host and at every restart.
_NAMESPACE = uuidlib.UUID("5d6b7a2e-1f0c-4e8a-9c3b-67707573636b")
_EXAMPLE = '{"devices": [{"name": "Fake H100", "memory_total_mib": 81559}]}'


@dataclass(frozen=True)
class FakeDeviceSpec:
    """One entry of ``devices`` in the file."""

    name: str = "Fake GPU"
    memory_total_mib: float = 81559.0
    foreign_used_mib: float = 0.0  # memory of processes gpusched did not start
    lost: bool = False  # the device answers "GPU is lost" (tests of lost devices)


@dataclass(frozen=True)
class FakeConfig:
    """The whole file (or a count of default devices)."""

    devices: tuple[FakeDeviceSpec, ...] = ()
    idle_used_mib: float = 300.0
    trial_used_mib: float = 2000.0
    release_delay_s: float = 0.0


_TOP_KEYS = {"devices", "idle_used_mib", "trial_used_mib", "release_delay_s"}
_DEVICE_KEYS = {"name", "memory_total_mib", "foreign_used_mib", "lost"}


def load_fake_config(path: Path) -> FakeConfig:
    """Read and check a fake-GPU file; ``ConfigError`` says what to fix."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"--fake-gpus {path}: cannot read it ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--fake-gpus {path}: not valid JSON ({exc}); e.g. {_EXAMPLE}") from exc
    where = f"--fake-gpus {path}"
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise ConfigError(f'{where}: must be an object with a "devices" list, e.g. {_EXAMPLE}')
    _check_keys(data, _TOP_KEYS, where)
    entries = data["devices"]
    devices = tuple(_device(entry, f"{where}: devices[{i}]") for i, entry in enumerate(entries))
    defaults = FakeConfig()
    return FakeConfig(
        devices=devices,
        idle_used_mib=_number(data, "idle_used_mib", defaults.idle_used_mib, where),
        trial_used_mib=_number(data, "trial_used_mib", defaults.trial_used_mib, where),
        release_delay_s=_number(data, "release_delay_s", defaults.release_delay_s, where),
    )


def _device(entry: object, where: str) -> FakeDeviceSpec:
    if not isinstance(entry, dict):
        raise ConfigError(f'{where}: must be an object, e.g. {{"name": "Fake H100"}}')
    _check_keys(entry, _DEVICE_KEYS, where)
    defaults = FakeDeviceSpec()
    name = entry.get("name", defaults.name)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name: must be a non-empty string, not {name!r}")
    lost = entry.get("lost", False)
    if not isinstance(lost, bool):
        raise ConfigError(f"{where}.lost: must be true or false, not {lost!r}")
    total = _number(entry, "memory_total_mib", defaults.memory_total_mib, where)
    if total <= 0:
        raise ConfigError(f"{where}.memory_total_mib: must be more than 0")
    foreign = _number(entry, "foreign_used_mib", defaults.foreign_used_mib, where)
    return FakeDeviceSpec(name.strip(), total, foreign, lost)


def _check_keys(obj: Mapping[str, object], known: set[str], where: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:  # a typo would otherwise be silently ignored
        names = ", ".join(sorted(known))
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {names})")


def _number(obj: Mapping[str, object], key: str, default: float, where: str) -> float:
    value = obj.get(key, default)
    # bool is an int in Python, but `true` is no amount of memory
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}.{key}: must be a number, not {value!r}")
    if value < 0:
        raise ConfigError(f"{where}.{key}: must be 0 or more, not {value!r}")
    return float(value)


@functools.cache  # read() names every device at every poll: one SHA-1 each, once
def fake_uuid(index: int) -> str:
    """The stable UUID of fake device ``index``, in NVIDIA's ``GPU-…`` format."""
    return f"GPU-{uuidlib.uuid5(_NAMESPACE, f'gpusched-fake-gpu-{index}')}"


def _shown_name(name: str) -> str:
    """Fake devices say so wherever they are shown (SPEC 7)."""
    return name if "fake" in name.lower() else f"Fake {name}"


def _file_stamp(path: Path) -> tuple[int, int, int]:
    """(inode, mtime, size): changes whenever the file is rewritten or replaced."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class SessionReader(Protocol):
    """Reads live session members (:func:`procfs.session_members`; tests inject their own)."""

    def __call__(
        self, sids: Collection[int], *, created_since: int | None = None
    ) -> dict[int, list[int]]: ...


@dataclass
class _Binding:
    """A trial session bound to devices; ``empty_since`` is when it was first seen empty."""

    uuids: set[str] = field(default_factory=set)
    empty_since: float | None = None
    bound_at: float = 0.0  # when note_trial first saw the session (clock of the backend)


class FakeBackend(GpuBackend):
    """Fake devices from a count or a JSON file (see ``from_arg``)."""

    kind = "fake"
    reads_block = False  # a stat of its file (parsed again when it changed), a few /proc reads

    def __init__(
        self,
        config: FakeConfig,
        path: Path | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sessions: SessionReader = procfs.session_members,
        logger: Any = None,
    ) -> None:
        """``path``, when given, is re-read at every ``read()``; ``config`` is its first load."""
        self._config = config
        self._path = path
        self._clock = clock
        self._sessions = sessions
        # structlog's loggers are duck-typed; Any keeps an injected test logger simple.
        self._log: Any = logger if logger is not None else structlog.get_logger("gpusched.gpus")
        self._specs: list[FakeDeviceSpec] = []  # fixed at discover: the device count never changes
        self._bindings: dict[int, _Binding] = {}
        # note_trial runs on the event loop while read() runs in a worker thread.
        self._lock = threading.Lock()
        self._config_unreadable = False
        self._stamp: tuple[int, int, int] | None = None  # (inode, mtime, size) last parsed

    @classmethod
    def from_arg(cls, arg: str, **kwargs: Any) -> FakeBackend:
        """``--fake-gpus ARG``: a device count ("4") or the path of a JSON file."""
        text = arg.strip()
        if text.isdigit():
            count = int(text)
            if count > _MAX_COUNT:
                raise ConfigError(f"--fake-gpus {arg}: at most {_MAX_COUNT} fake GPUs")
            return cls(FakeConfig(devices=tuple(FakeDeviceSpec() for _ in range(count))), **kwargs)
        if text.lstrip("-").isdigit():
            raise ConfigError(f"--fake-gpus {arg}: the count of fake GPUs cannot be negative")
        path = Path(arg).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"--fake-gpus {arg!r}: neither a count of GPUs nor an existing JSON file "
                '(give e.g. `--fake-gpus 4`, or a file like {"devices": [{"name": "Fake H100"}]})'
            )
        return cls(load_fake_config(path), path, **kwargs)

    def __repr__(self) -> str:
        source = str(self._path) if self._path is not None else "count"
        return f"<FakeBackend gpus={len(self._specs)} trials={len(self._bindings)} from={source}>"

    def discover(self) -> list[DeviceInfo]:
        """The fake devices; their number is fixed from here on, even if the file changes."""
        self._specs = list(self._reload().devices)
        return [
            DeviceInfo(fake_uuid(i), i, _shown_name(s.name), s.memory_total_mib, fake=True)
            for i, s in enumerate(self._specs)
        ]

    def note_trial(self, session_id: int, uuids: Sequence[str]) -> None:
        """Account ``trial_used_mib`` on ``uuids`` for as long as session ``session_id`` lives."""
        with self._lock:
            binding = self._bindings.setdefault(session_id, _Binding(bound_at=self._clock()))
            binding.uuids.update(uuids)
            binding.empty_since = None

    def read(self) -> list[DeviceReading]:
        """Memory and processes of every fake device, from the file as it is now."""
        config = self._reload()
        held = self._held_sessions(config)
        readings = []
        for index, discovered in enumerate(self._specs):
            # The file may have lost or gained entries since discover; the count stays.
            spec = config.devices[index] if index < len(config.devices) else discovered
            readings.append(self._reading(fake_uuid(index), spec, config, held))
        return readings

    def close(self) -> None:
        """Nothing to release."""

    def _reload(self) -> FakeConfig:
        """The file's current content, or the last good one (logged once) if it is unreadable."""
        if self._path is None:
            return self._config
        try:
            # Parse again only when the file changed: a stat per poll, not a parse.
            stamp = _file_stamp(self._path)
            if stamp == self._stamp and not self._config_unreadable:
                return self._config
            self._config = load_fake_config(self._path)
            self._stamp = stamp
        except ConfigError as exc:
            # A test may be rewriting the file right now: keep going on what we knew.
            if not self._config_unreadable:
                self._log.warning(
                    "fake_gpus_config_unreadable", path=str(self._path), error=str(exc)
                )
            self._config_unreadable = True
        else:
            self._config_unreadable = False
        return self._config

    def _held_sessions(self, config: FakeConfig) -> dict[int, tuple[set[str], list[int]]]:
        """Sessions whose memory is still held: session id -> (device uuids, live pids)."""
        with self._lock:
            if not self._bindings:
                return {}  # nothing bound: no need to scan /proc
            bound = set(self._bindings)
            oldest = min(self._bindings.items(), key=lambda item: item[1].bound_at)
        now = self._clock()
        # Trials are bound right after they are spawned, so every process of a bound session
        # was created after the oldest bound leader: while that one is young, only pids handed
        # out since need a look (a few), not every process on the host.
        young = now - oldest[1].bound_at < procfs.YOUNG_S
        members = self._sessions(bound, created_since=oldest[0] if young else None)
        held: dict[int, tuple[set[str], list[int]]] = {}
        with self._lock:
            for sid, binding in list(self._bindings.items()):
                pids = members.get(sid, [])
                if pids:
                    binding.empty_since = None
                elif binding.empty_since is None:
                    binding.empty_since = now
                empty_for = 0.0 if binding.empty_since is None else now - binding.empty_since
                if pids or empty_for < config.release_delay_s:
                    held[sid] = (set(binding.uuids), pids)
                else:
                    del self._bindings[sid]  # released: the device forgets the trial
        return held

    @staticmethod
    def _reading(
        uuid: str,
        spec: FakeDeviceSpec,
        config: FakeConfig,
        held: dict[int, tuple[set[str], list[int]]],
    ) -> DeviceReading:
        if spec.lost:
            return DeviceReading(uuid, error="GPU is lost (fake)")
        used = config.idle_used_mib + spec.foreign_used_mib
        processes: list[GpuProcess] = []
        for sid, (uuids, pids) in held.items():
            if uuid not in uuids:
                continue
            used += config.trial_used_mib
            # The trial's memory is its leader's (or, once the leader is gone, its first live
            # member's), so the process list adds up to what the device shows; the others
            # are listed with memory unknown, as NVML does for processes it cannot measure.
            owner = sid if sid in pids else (pids[0] if pids else None)
            processes.extend(
                GpuProcess(pid, config.trial_used_mib if pid == owner else None) for pid in pids
            )
        return DeviceReading(
            uuid,
            memory_used_mib=min(used, spec.memory_total_mib),
            processes=tuple(processes),
            idle_used_mib=config.idle_used_mib,
        )
