"""`gpusched gpus`: the devices as readable as nvidia-smi's summary, from the daemon's answer.

One row per device (index, name, shortened UUID, a memory bar, state, who holds it and why a
device is out), then, as nvidia-smi does, the processes the driver lists, each with the trial
it belongs to or ``foreign``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gpusched.render import table

__all__ = ["gpus_table", "short_uuids", "memory_cell", "device_indices"]

_BAR = 10
_UUID_HEX = 8  # as many hex digits as keep UUIDs apart, from this many up


def device_indices(answer: Mapping[str, Any]) -> dict[str, int]:
    """UUID -> NVML index, from a `gpus` answer: how tables name a trial's GPUs."""
    return {d["uuid"]: d["index"] for d in answer["devices"]}


def short_uuids(uuids: Sequence[str]) -> dict[str, str]:
    """Each UUID cut to ``GPU-1a2b3c4d`` (more digits where two would look the same)."""
    for width in range(_UUID_HEX, 64):
        short = {u: _cut(u, width) for u in uuids}
        if len(set(short.values())) == len(set(uuids)):
            return short
    return {u: u for u in uuids}


def _cut(uuid: str, width: int) -> str:
    head, sep, rest = uuid.partition("-")
    if not sep:
        return uuid
    return f"{head}-{rest[:width]}" + ("…" if len(rest) > width else "")


def memory_cell(used: float | None, total: float) -> str:
    """``[##--------]  2300 / 81559 MiB  3%``."""
    if used is None:
        return f"{'[' + '?' * _BAR + ']'}  ? / {total:.0f} MiB"
    fraction = min(max(used / total, 0.0), 1.0) if total > 0 else 0.0
    filled = round(fraction * _BAR)
    return (f"[{'#' * filled}{'-' * (_BAR - filled)}]  {used:.0f} / {total:.0f} MiB"
            f"  {fraction * 100:.0f}%")


def _holders(device: Mapping[str, Any], owners: Mapping[str, str]) -> str:
    def who(trial: str) -> str:
        owner = owners.get(trial.partition("/")[0])
        return f"{trial} ({owner})" if owner else trial

    held = [who(t) for t in device["trials"]]
    held += [f"{who(t)} releasing" for t in device.get("releasing", [])]
    return ", ".join(held) or "-"


def _process_rows(devices: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for d in devices:
        foreign = set(d.get("foreign_processes", []))
        ours = d["trials"] or d.get("releasing", [])
        for pid in d.get("processes", []):
            if pid in foreign:
                owner = "foreign (not started by gpusched)"
            else:
                owner = ", ".join(ours) if ours else "-"
            rows.append([d["index"], pid, owner])
    return rows


def gpus_table(answer: Mapping[str, Any], owners: Mapping[str, str] | None = None) -> str:
    """The whole `gpusched gpus` text. ``owners``: experiment id -> its owner's name."""
    devices = answer["devices"]
    owners = owners or {}
    short = short_uuids([d["uuid"] for d in devices])
    rows = []
    for d in devices:
        name = d["name"] + (" [fake]" if d["fake"] and "[fake]" not in d["name"] else "")
        rows.append([d["index"], name, short[d["uuid"]],
                     memory_cell(d["memory_used_mib"], d["memory_total_mib"]), d["state"],
                     _holders(d, owners), d["reason"] or ""])
    states: dict[str, int] = {}
    for d in devices:
        states[d["state"]] = states.get(d["state"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in states.items())
    lines = [f"backend: {answer['backend']}" + (f" ({len(devices)} devices: {summary})"
                                                if devices else "")]
    if not devices:
        why = f": {answer['note']}" if answer.get("note") else ""
        lines.append(f"no GPU found{why}; only CPU-only trials (gpus_per_trial: 0) can run")
        return "\n".join(lines)
    lines.append(table(["IDX", "NAME", "UUID", "MEMORY", "STATE", "HOLDERS", "WHY"], rows))
    processes = _process_rows(devices)
    if processes:
        lines += ["", "processes:", table(["GPU", "PID", "TRIAL"], processes)]
    return "\n".join(lines)
