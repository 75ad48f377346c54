"""Why an experiment's next trial does not start yet: the wait reason `ls` and `watch` show.

Computed on demand, when a client asks, from the scheduler's memory (no SQLite, no driver
call), so placement itself never pays for it. The answer names the first thing in the way,
in the order placement meets them: the daemon itself (shutting down, log not writable, short
of file descriptors or processes to start a trial), the experiment's own limit
(``max_parallel_trials``), a configured limit (per user), then the resource (no GPU, none free,
not enough memory, all CPU slots taken), then the search (a plugin that waits for results),
then the line (an experiment ahead of it goes first).
Codes are stable words (docs/json.md); messages are for people.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpusched._daemon.devices import DeviceTable
from gpusched._daemon.experiment import ExperimentRun
from gpusched.models import DeviceState

__all__ = ["WaitContext", "pending_trials", "why_waiting", "WAIT_CODES", "LOG_REFUSED"]

WAIT_CODES = frozenset({
    "shutting_down", "paused", "max_parallel_trials", "user_limit", "no_gpus", "no_free_gpu",
    "gpu_memory", "cpu_slots", "search_waits", "behind", "starting",
})
_MIB_PER_GIB = 1024.0
# Why placement is paused when the trial log refused a write.
LOG_REFUSED = ("the trial log cannot be written (disk full, or locked by another process):"
               " placement is paused until it can be (daemon log: placement_paused)")


@dataclass(frozen=True)
class WaitContext:
    """What the scheduler knows that the reason depends on, besides the experiment."""

    devices: DeviceTable
    order: Sequence[ExperimentRun]  # placement order of the experiments that want a trial
    cpu_running: int  # CPU-only trials running now
    cpu_slots: int  # how many CPU-only trials run at once without max_parallel_trials
    paused: bool  # placement is paused: the daemon cannot start trials for now
    closing: bool
    # Why it is paused: the trial log refused a write, or the daemon ran short of file
    # descriptors, processes or space to start a trial (what, and what to do).
    pause_reason: str = LOG_REFUSED
    # Why a limit of the daemon's configuration (per-user GPUs or trials) holds this
    # experiment back now, as the scheduler's limit check words it; None: none does.
    user_limit: str | None = None
    # Owner uid -> GPUs held over all of its experiments: fair share is between owners first.
    owner_gpus: Mapping[int | None, float] = field(default_factory=dict)


def pending_trials(exp: ExperimentRun) -> int:
    """Trials that still have to start: requeued ones, then the search's next ones."""
    if exp.cancelling or exp.failure or exp.budget_spent:
        return 0
    fresh = 0 if exp.exhausted else max(exp.max_trials - len(exp.trials), 0)
    return len(exp.requeued) + fresh


def why_waiting(exp: ExperimentRun, ctx: WaitContext) -> dict[str, Any] | None:
    """``{"code", "message", "trials", "ahead"}`` for an experiment with trials still to start,
    else None. ``trials``: how many wait; ``ahead``: experiments placed before it."""
    waiting = pending_trials(exp)
    if waiting == 0:
        return None
    ahead = _ahead_of(exp, ctx.order)
    code, message = _reason(exp, ctx, ahead)
    return {"code": code, "message": message, "trials": waiting, "ahead": [e.id for e in ahead]}


def _reason(exp: ExperimentRun, ctx: WaitContext,
            ahead: list[ExperimentRun]) -> tuple[str, str]:
    if ctx.closing:
        return "shutting_down", "the daemon is shutting down: no trial starts"
    if ctx.paused:
        return "paused", ctx.pause_reason
    limit = exp.spec.max_parallel_trials
    running = exp.running_count()
    if limit is not None and running >= limit:
        return "max_parallel_trials", f"max_parallel_trials reached ({running} of {limit} running)"
    if ctx.user_limit:
        return "user_limit", ctx.user_limit
    blocked = _resource_blocked(exp, ctx)
    if blocked is not None:
        code, message = blocked
        return code, message + _line_note(exp, ahead, ctx)
    if exp.waiting and not exp.requeued:
        return "search_waits", (f"the search plugin '{exp.spec.search_algorithm}' waits for"
                                " running trials to end before it suggests more")
    if ahead:
        return "behind", _line_note(exp, ahead, ctx).removeprefix("; ")
    return "starting", "starting now"


def _resource_blocked(exp: ExperimentRun, ctx: WaitContext) -> tuple[str, str] | None:
    share = exp.spec.gpus_per_trial
    if share == 0:
        return _cpu_blocked(exp, ctx)
    devices = ctx.devices
    need = round(share) if share >= 1 else 1
    total = len(devices.slots)
    if total < need:
        have = "no GPU" if total == 0 else f"{total} GPU{'s' if total > 1 else ''}"
        return "no_gpus", (f"needs {need} GPU{'s' if need > 1 else ''} (gpus_per_trial:"
                           f" {share:g}); the host has {have}")
    whole = sum(1 for s in devices.slots.values() if s.info.mig_parent_uuid is None)
    if need > 1 and whole < need:
        return "no_gpus", (f"needs {need} GPUs (gpus_per_trial: {share:g}), which must be whole"
                           f" GPUs: CUDA shows a process only one MIG device; the host has"
                           f" {whole} GPU{'s' if whole != 1 else ''} without MIG")
    memory = exp.spec.gpu_memory_mib
    if devices.pick(share, memory) is not None:
        return None
    if memory is not None and devices.pick(share, None) is not None:
        most = max(s.free_mib() for s in devices.slots.values())
        return "gpu_memory", (f"no GPU has {memory / _MIB_PER_GIB:.3g} GiB free (gpu_memory;"
                              f" the most free is {most / _MIB_PER_GIB:.3g} GiB)")
    if need > 1:
        return "no_free_gpu", f"needs {need} free GPUs: {_device_summary(devices)}"
    what = "free GPU" if share >= 1 else f"GPU with {share:g} of it free"
    return "no_free_gpu", f"no {what}: {_device_summary(devices)}"


def cpu_slots_for(exp: ExperimentRun, host_slots: int) -> int:
    """How many CPU-only trials, every experiment's counted, may run while ``exp`` starts one:
    the host's slots (its cores), or more when its ``max_parallel_trials`` asks for more (an
    oversubscription the user chose). Its own trials are held to max_parallel_trials apart."""
    return max(host_slots, exp.spec.max_parallel_trials or 0, 1)


def _cpu_blocked(exp: ExperimentRun, ctx: WaitContext) -> tuple[str, str] | None:
    """Why a CPU-only trial does not start, as placement decides it (:func:`cpu_slots_for`)."""
    slots = cpu_slots_for(exp, ctx.cpu_slots)
    running = ctx.cpu_running
    if running < slots:
        return None
    trials = f"{running} CPU-only trial{'s' if running != 1 else ''} running"
    return "cpu_slots", f"all {slots} CPU slots are in use ({trials}, every experiment's)"


def _device_summary(devices: DeviceTable) -> str:
    """``2 busy (e3/0, e4/1), 1 releasing (e3/2), 1 foreign``."""
    groups: dict[DeviceState, list[str]] = {}
    for slot in sorted(devices.slots.values(), key=lambda s: s.info.index):
        state = slot.state
        groups.setdefault(state, []).extend(
            slot.holders if state is DeviceState.BUSY
            else slot.releasing if state is DeviceState.RELEASING else [])
    counts: dict[DeviceState, int] = {}
    for slot in devices.slots.values():
        counts[slot.state] = counts.get(slot.state, 0) + 1
    parts = []
    for state in DeviceState:
        if state not in counts:
            continue
        who = sorted(set(groups.get(state, [])))
        parts.append(f"{counts[state]} {state.value}" + (f" ({', '.join(who)})" if who else ""))
    return ", ".join(parts)


def _ahead_of(exp: ExperimentRun, order: Sequence[ExperimentRun]) -> list[ExperimentRun]:
    """Experiments placed before ``exp`` that compete for the same kind of slot and wait too."""
    if not any(other is exp for other in order):
        return []  # held back by its own limit: no line to stand in
    gpu = exp.spec.gpus_per_trial > 0
    out = []
    for other in order:
        if other is exp:
            break
        if (other.spec.gpus_per_trial > 0) == gpu and pending_trials(other):
            out.append(other)
    return out


def _line_note(exp: ExperimentRun, ahead: list[ExperimentRun], ctx: WaitContext) -> str:
    if not ahead:
        return ""
    first = ahead[0]
    owners = ctx.owner_gpus
    if first.spec.priority > exp.spec.priority:
        why = f"lower priority than {first.id} ({exp.spec.priority} < {first.spec.priority})"
    elif owners.get(first.owner_uid, 0.0) < owners.get(exp.owner_uid, 0.0):
        why = f"{first.id} goes first (fair share: its owner holds fewer GPUs)"
    elif first.gpu_share_in_use() < exp.gpu_share_in_use():
        why = f"{first.id} goes first (fair share: it holds fewer GPUs)"
    else:
        why = f"{first.id} goes first (submitted earlier)"
    more = f" and {len(ahead) - 1} more" if len(ahead) > 1 else ""
    return f"; {why}{more}"
