"""Plain-text tables for the CLI's read commands (``--json`` prints the data itself)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["table", "fmt_value", "fmt_duration", "fmt_age", "experiments_table",
           "trials_table", "gpus_table", "best_table", "key_values", "fmt_time", "events_lines"]


def fmt_value(value: Any) -> str:
    """A compact cell: floats to 4 significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def fmt_age(timestamp: float | None) -> str:
    """How long ago: ``5m05s ago``."""
    return "-" if timestamp is None else f"{fmt_duration(time.time() - timestamp)} ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces."""
    cells = [[fmt_value(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in cells]
    return "\n".join(lines)


def experiments_table(experiments: Sequence[dict[str, Any]]) -> str:
    """`gpusched ls`."""
    rows = []
    for e in experiments:
        t = e["trials"]
        done = t["completed"] + t["stopped"]
        best = e["best"]
        rows.append([
            e["id"], e["name"], e.get("owner") or "-", e["state"],
            f"{t['running']} running, {done} done, {t['failed']} failed / {e['max_trials'] or '?'}",
            f"{e['metric']} {'max' if e['goal'] == 'maximize' else 'min'}",
            "-" if best is None else f"{fmt_value(best['objective'])} ({best['trial']})",
            fmt_age(e["submitted_at"]),
        ])
    return table(["ID", "NAME", "OWNER", "STATE", "TRIALS", "METRIC", "BEST", "SUBMITTED"], rows)


def trials_table(trials: Sequence[dict[str, Any]], metric: str = "objective") -> str:
    """`gpusched ls EXP`: one row per trial, one column per hyperparameter."""
    names: list[str] = []
    for t in trials:
        names += [k for k in t["params"] if k not in names]
    rows = []
    for t in trials:
        gpus = ",".join(d[:12] for d in t["devices"]) or "-"
        rows.append([t["id"], t["state"], t["objective"],
                     *(t["params"].get(n) for n in names), t["attempts"], t["reports"], gpus,
                     fmt_duration(t["duration_s"]), t["reason"] or ""])
    headers = ["TRIAL", "STATE", metric.upper(), *names, "TRIES", "REPORTS", "GPUS", "TIME",
               "REASON"]
    return table(headers, rows)


def best_table(trials: Sequence[dict[str, Any]], metric: str = "objective") -> str:
    """`gpusched best`."""
    names: list[str] = []
    for t in trials:
        names += [k for k in t["params"] if k not in names]
    rows = [[i + 1, t["id"], t["objective"], *(t["params"].get(n) for n in names)]
            for i, t in enumerate(trials)]
    return table(["RANK", "TRIAL", metric.upper(), *names], rows)


def gpus_table(answer: dict[str, Any]) -> str:
    """`gpusched gpus`, like nvidia-smi's summary."""
    rows = []
    for d in answer["devices"]:
        used, total = d["memory_used_mib"], d["memory_total_mib"]
        memory = f"{fmt_value(used)} / {total:.0f} MiB" if used is not None else f"{total:.0f} MiB"
        holders = ", ".join(d["trials"] + [f"{r} (releasing)" for r in d["releasing"]])
        rows.append([d["index"], d["name"] + (" [fake]" if d["fake"] else ""), d["uuid"],
                     memory, d["state"], holders or "-", d["reason"] or ""])
    text = table(["IDX", "NAME", "UUID", "MEMORY", "STATE", "TRIALS", "WHY"], rows)
    if not rows:
        why = f": {answer['note']}" if answer.get("note") else ""
        text += f"\n(no GPU found{why}; only CPU-only trials (gpus_per_trial: 0) can run)"
    return f"backend: {answer['backend']}\n{text}"


def fmt_time(timestamp: float | None) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS``."""
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    """``key: value`` lines, keys aligned; ``*_at`` times shown as dates, ``*_s`` as durations."""
    width = max((len(k) for k, _ in pairs), default=0)

    def cell(key: str, value: Any) -> str:
        if key.endswith("_at") and isinstance(value, int | float):
            return fmt_time(value)
        if key.endswith("_s") and isinstance(value, int | float):
            return fmt_duration(value)
        return fmt_value(value)

    return "\n".join(f"{k.ljust(width)}  {cell(k, v)}" for k, v in pairs)


def events_lines(events: Sequence[dict[str, Any]]) -> str:
    """`gpusched show`'s event log: time, trial, kind, and the reason when there is one."""
    lines = []
    for e in events:
        who = "" if e.get("trial") is None else f"{e['experiment_id']}/{e['trial']}"
        data = e.get("data") or {}
        said = data.get("reason") or data.get("state") or ""
        lines.append(f"  {fmt_time(e['t'])}  {who:<8} {e['kind']}  {said}".rstrip())
    return "\n".join(["events:", *lines]) if lines else "events: -"
