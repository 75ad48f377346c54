"""The scheduling loop: which experiment's next trial goes on which GPUs, and when.

Event-driven: a submit, a trial's end, a device coming back from ``releasing``, a cancel, each
wakes the loop, which places as many trials as fit. Experiments are served by priority, then
fair share (fewest GPUs in use), then first come. The device poller reads the driver every
``poll_interval_s``, and every ``release_poll_s`` while something is releasing, and at once when
a trial ends, so that a freed GPU gets its next trial without waiting for a slow poll.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from gpusched._daemon import procfs
from gpusched._daemon.child import EXIT_WAITERS
from gpusched._daemon.device_choice import choose_devices
from gpusched._daemon.devices import DeviceTable
from gpusched._daemon.experiment import (
    ExperimentRun,
    PointsPlan,
    TrialRun,
    plan_points,
    points_problem,
    resume_from_warning,
)
from gpusched._daemon.gpu_backend import GpuBackend
from gpusched._daemon.identity import trial_identity
from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.reader_thread import ReaderThread
from gpusched._daemon.recovery import stop_leftovers
from gpusched._daemon.restore import RUN_STARTS, ended_experiment, prior_trials, restore_trials
from gpusched._daemon.store import Store
from gpusched._daemon.trial_runner import DaemonShortOf, TrialRunner
from gpusched._daemon.user_limits import UserLimits
from gpusched._daemon.waiting import LOG_REFUSED, WaitContext, cpu_slots_for, why_waiting
from gpusched._spec_check import Problems
from gpusched._spec_partial import PartialRead, PluginRead
from gpusched.config import DaemonSettings
from gpusched.errors import (
    NotFoundError,
    PluginError,
    Problem,
    RequestError,
    SpecError,
    StoreError,
)
from gpusched.log import get_logger
from gpusched.models import ExperimentState, Goal, TrialState
from gpusched.plugin_api import (
    SearchPlugin,
    StoppingPlugin,
    Suggestion,
    TrialView,
    Wait,
    as_suggestion,
)
from gpusched.plugins import (
    PluginKind,
    construct_plugin,
    load_search_plugin,
    load_stopping_plugin,
)
from gpusched.spec import ExperimentSpec

__all__ = ["Scheduler"]

log = get_logger("gpusched.scheduler")
# Placement waits this long after the trial log refused a write, or the daemon ran short of
# file descriptors, processes or space to start a trial (DaemonShortOf).
STORE_RETRY_S = 2.0
_Reading = tuple[Any, dict[int, list[int]]]  # the devices' readings; session -> live pids
# A search whose last suggestion took longer than this is asked in a worker thread (see _ask).
SUGGEST_INLINE_S = 0.01
_P = TypeVar("_P", SearchPlugin, StoppingPlugin)


class Scheduler:
    """Owns the devices, the experiments in progress and their running trials."""

    def __init__(
        self, *, store: Store, backend: GpuBackend, settings: DaemonSettings, state_dir: Path,
        daemon_env: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.settings = settings
        self.state_dir = state_dir
        self._experiment_dirs: dict[str, Path] = {}  # experiment id -> its trials' folder
        self.devices = DeviceTable([], settings)
        self.active: dict[str, ExperimentRun] = {}
        self.runners: dict[str, TrialRunner] = {}
        self.limits = UserLimits(settings)
        self._daemon_env = dict(os.environ if daemon_env is None else daemon_env)
        # asyncio's events, not anyio's, for these two: a new one is made at every kick and
        # every poll (a few per trial), and anyio's looks up the running library each time.
        # The daemon runs on asyncio only (cli.cmd_daemon).
        self._kick = asyncio.Event()
        self._poll_now = asyncio.Event()
        self._ended: dict[str, anyio.Event] = {}  # experiment id -> set when it ends
        self._closing = False
        self._resuming: set[str] = set()  # experiment ids a `resume` is restoring now
        # The resume_from of submits under way (not yet in `active`): a resume of one now
        # would change the history their search was given.
        self._learning_from: Counter[str] = Counter()
        # The device read in the reader thread, and when it was asked (see
        # _read_devices_in_thread); whether one has gone unanswered too long.
        self._device_read: tuple[asyncio.Future[_Reading], float] | None = None
        self._device_read_stalled = False
        self._tg: TaskGroup | None = None
        self._cpu_slots = os.cpu_count() or 1
        self._paused_until = 0.0  # monotonic: no placement before (see _pause_placement)
        # The log's last refusal, until a write of its own goes through (see _probe_the_log).
        self._log_refused: StoreError | None = None
        self._pause_reason = LOG_REFUSED  # why placement is paused, for the wait reason
        self._reader = ReaderThread()  # the device reads, which may block

    def __repr__(self) -> str:
        states = [s.state.value for s in self.devices.slots.values()]
        busy, releasing = states.count("busy"), states.count("releasing")
        return (f"<Scheduler gpus={len(states)} busy={busy} releasing={releasing}"
                f" running={len(self.runners)} queued={self._queued()}>")

    def _queued(self) -> int:
        return sum(max(e.max_trials - len(e.trials), 0) + len(e.requeued)
                   for e in self.active.values() if not e.exhausted and e.wants_more())

    def status_line(self) -> str:
        """One line for ``systemctl status``: "4 GPUs, 3 busy, 2 trials running, 12 queued"."""
        states = [s.state.value for s in self.devices.slots.values()]
        line = (f"{len(states)} GPUs, {states.count('busy')} busy, {len(self.runners)} trials"
                f" running, {self._queued()} queued")
        out = [f"{states.count(s)} {s}" for s in ("releasing", "quarantined", "foreign", "lost")
               if states.count(s)]
        return ", ".join([line, *out])

    @property
    def closing(self) -> bool:
        """True once shutdown has begun."""
        return self._closing

    def kick(self) -> None:
        """Wake the placement loop."""
        self._kick.set()

    # -- life cycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Discover GPUs, restore the log's experiments, then place trials until shutdown."""
        found = await anyio.to_thread.run_sync(self.backend.discover)
        choice = choose_devices(found, self.settings.gpus, self.settings.exclude_gpus)
        infos = choice.kept
        self.devices = DeviceTable(infos, self.settings)
        log.info("gpus_found", backend=self.backend.kind, count=len(infos),
                 uuids=[i.uuid for i in infos])
        if choice.left_out:
            log.info("gpus_left_out", uuids=[i.uuid for i in choice.left_out],
                     why="the gpus / exclude_gpus settings")
        if choice.unmatched:
            log.warning("configured_gpus_not_found", names=choice.unmatched,
                        found=[i.uuid for i in found])
        # As many threads to wait for trials' exits as trials can run on whole GPUs at once.
        EXIT_WAITERS.reserve(max(1, len(infos)))
        try:
            await self._poll_devices_once()
            await self._restore()
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._poll_loop)
                for exp in self.active.values():
                    self._watch_budget(exp)
                task_status.started()
                await self._placement_loop()
                tg.cancel_scope.cancel()
        finally:
            self._reader.close()

    async def shutdown(self) -> None:
        """Admit no new trial; stop running ones (recorded ``interrupted``); return when done."""
        if self._closing:
            return
        self._closing = True
        log.info("shutdown_started", running=len(self.runners))
        for runner in list(self.runners.values()):
            runner.request_stop(TrialState.INTERRUPTED, "the daemon stopped while it ran",
                                self.settings.shutdown_grace_s)
        self.kick()

    async def _placement_loop(self) -> None:
        while True:
            if self._closing:
                if not self.runners:
                    return
            else:
                await self._place_all()
            await self._kick.wait()
            self._kick = asyncio.Event()

    # -- GPUs ---------------------------------------------------------------------------------

    def _read_devices(self) -> _Reading:
        readings = self.backend.read()
        # Only the pids the driver lists need a session: one /proc/PID/stat read each, rather
        # than a scan of every process on the host at every poll.
        sessions: dict[int, list[int]] = {}
        for pid in {p.pid for r in readings for p in r.processes}:
            sid = procfs.session_of(pid)
            if sid is not None:
                sessions.setdefault(sid, []).append(pid)
        return readings, sessions

    async def _poll_devices_once(self) -> None:
        if not self.devices.slots:
            return
        if self.backend.reads_block:
            got = await self._read_devices_in_thread()
            if got is None:
                return
            readings, sessions = got
        else:
            readings, sessions = self._read_devices()
        if self.devices.update(readings, sessions):
            self.kick()
        self._interrupt_trials_on_lost_gpus()

    async def _read_devices_in_thread(self) -> _Reading | None:
        """A reading from the reader thread; None while the driver has not answered within
        ``device_read_timeout_s`` (then every device is quarantined, saying so).

        A read that hangs (NVML on a failing GPU) is not asked again behind itself: later
        polls wait on the same one, so that reads do not pile up in the thread.
        """
        if self._device_read is None:
            self._device_read = (asyncio.ensure_future(self._reader.run(self._read_devices)),
                                 time.monotonic())
        read, started = self._device_read
        try:
            with anyio.move_on_after(self.settings.device_read_timeout_s):
                got = await asyncio.shield(read)
                if self._device_read_stalled:
                    self._device_read_stalled = False
                    log.warning("gpu_read_answered", after_s=round(time.monotonic() - started))
                return got
        finally:
            if read.done():
                self._device_read = None
        waited = time.monotonic() - started
        if not self._device_read_stalled:
            self._device_read_stalled = True
            log.error("gpu_read_unanswered", after_s=round(waited))
        self.devices.unanswered(
            f"the GPU driver has not answered a read for {waited:.0f}s (NVML can hang on a"
            " failing GPU: see nvidia-smi and the kernel log); nothing new starts on a GPU"
            " until it answers")
        return None

    def _interrupt_trials_on_lost_gpus(self) -> None:
        """A trial on a GPU that the driver lost cannot go on there: interrupt it, to be
        requeued on another GPU (an interruption, not a trial failure)."""
        lost = {uuid: slot.lost_reason for uuid, slot in self.devices.slots.items()
                if slot.lost_reason}
        if not lost:
            return
        for runner in list(self.runners.values()):
            gone = [u for u in runner.uuids if u in lost]
            if gone and not runner.trial.processes_gone:
                reason = f"GPU {gone[0]} was lost ({lost[gone[0]]}): requeued"
                if runner.request_stop(TrialState.INTERRUPTED, reason):
                    log.warning("trial_interrupted_gpu_lost", trial=runner.key, gpu=gone[0],
                                error=lost[gone[0]])

    async def _poll_loop(self) -> None:
        while True:
            try:
                await self._poll_devices_once()
            except Exception as exc:  # the driver edge must never take the daemon down
                log.error("gpu_poll_failed", error=repr(exc))
            fast = self.devices.any_releasing()
            interval = self.settings.release_poll_s if fast else self.settings.poll_interval_s
            with anyio.move_on_after(interval):
                await self._poll_now.wait()
            self._poll_now = asyncio.Event()

    # -- placement ----------------------------------------------------------------------------

    def _order(self) -> list[ExperimentRun]:
        """The experiments that want a trial, in placement order: higher ``priority`` first;
        at equal priority, fair share between owners (the one whose owner's experiments hold
        fewer GPUs goes first, so that splitting a search into several experiments gains its
        user nothing), then between experiments (the one that holds fewer), then submit order.
        With one owner (a per-user daemon) the owner's share ties: experiments' shares decide,
        as they always did. Placement asks again after each trial it starts: each sees the
        holdings the one before changed."""
        wanting = [e for e in self.active.values() if e.wants_more()]
        if len(wanting) < 2:
            return wanting  # nothing to order: the dispatch path of a lone experiment
        by_owner = self._gpus_held_by_owner()
        return sorted(wanting, key=lambda e: (
            -e.spec.priority, by_owner.get(e.owner_uid, 0.0), e.gpu_share_in_use(), e.seq))

    def _gpus_held_by_owner(self) -> dict[int | None, float]:
        """Owner uid -> GPUs its running trials hold, over all of its experiments (those that
        want no more trials too), counted as :meth:`ExperimentRun.gpu_share_in_use` counts.
        From memory: placement calls this once per trial it starts."""
        held: dict[int | None, float] = {}
        for exp in self.active.values():
            share = exp.gpu_share_in_use()
            if share:
                held[exp.owner_uid] = held.get(exp.owner_uid, 0.0) + share
        # Rounded: fractions summed in another order (0.1 + 0.2, 0.3) must still tie.
        return {owner: round(gpus, 9) for owner, gpus in held.items()}

    def _pick(self, exp: ExperimentRun) -> list[str] | None:
        share = exp.spec.gpus_per_trial
        if share == 0:
            return [] if self._cpu_running() < cpu_slots_for(exp, self._cpu_slots) else None
        return self.devices.pick(share, exp.spec.gpu_memory_mib)

    def _cpu_running(self) -> int:
        return sum(1 for r in self.runners.values() if not r.uuids and not r.trial.processes_gone)

    def waiting(self, exp_id: str) -> dict[str, Any] | None:
        """Why ``exp_id``'s next trial has not started (``waiting`` in docs/json.md), or None
        when it has none waiting (or is not in progress)."""
        exp = self.active.get(exp_id)
        if exp is None:
            return None
        usage = self.limits.usage(self.runners.values()) if self.limits.enabled else None

        def held_back(e: ExperimentRun) -> str | None:  # by its owner's limit, as placement does
            return None if usage is None else self.limits.blocked(e, usage)

        order = [e for e in self._order() if e is exp or not held_back(e)]
        return why_waiting(exp, WaitContext(
            devices=self.devices, order=order, cpu_running=self._cpu_running(),
            cpu_slots=self._cpu_slots, paused=self._placement_paused(),
            pause_reason=self._pause_reason, closing=self._closing, user_limit=held_back(exp),
            owner_gpus=self._gpus_held_by_owner(),
        ))

    def trial_waits(self, exp_id: str) -> dict[int, dict[str, Any]]:
        """Trial number -> wait reason, for ``exp_id``'s trials that wait to run again (their
        rows may still say ``interrupted``): they wait for what their experiment waits for."""
        exp = self.active.get(exp_id)
        waiting = self.waiting(exp_id) if exp is not None and exp.requeued else None
        return {} if exp is None or waiting is None else dict.fromkeys(exp.requeued, waiting)

    async def _place_all(self) -> None:
        if time.monotonic() < self._paused_until:
            return  # a kick is due when the pause ends
        try:
            if self._log_refused is not None:  # one test per kick: nothing per trial
                await self._probe_the_log()
            await self._place_what_fits()
        except StoreError as exc:
            self._pause_placement(exc)

    def _placement_paused(self) -> bool:
        """Whether placement is paused: the log has refused a write and taken none since, or
        the daemon ran short of a resource to start a trial a moment ago."""
        return self._log_refused is not None or time.monotonic() < self._paused_until

    def _pause_placement(self, exc: StoreError | DaemonShortOf, trial: str | None = None
                         ) -> None:
        """No trial may start for now: the trial log cannot be written (disk full, file locked
        past busy_timeout), so it would start unrecorded; or the daemon ran short of file
        descriptors, processes or space to start one (DaemonShortOf, met starting ``trial``).
        Running trials go on; placement is tried again in STORE_RETRY_S, once the log takes a
        write again (_probe_the_log) if it refused one. Said once per pause: the trials
        started together meet the same lack (dozens, out of file descriptors)."""
        if isinstance(exc, StoreError):
            self._log_refused, self._pause_reason = exc, LOG_REFUSED
        else:
            self._pause_reason = str(exc)
        now = time.monotonic()
        if now < self._paused_until:
            return  # the same pause: its kick is due
        log.error("placement_paused", error=str(exc), retry_in_s=STORE_RETRY_S,
                  **({} if trial is None else {"trial": trial}))
        self._paused_until = now + STORE_RETRY_S
        assert self._tg is not None
        self._tg.start_soon(self._kick_later, STORE_RETRY_S)

    async def _probe_the_log(self) -> None:
        """After the log refused a write, one write of placement's own before any trial starts
        (event ``placement_resumed``); StoreError while the log still refuses. A new trial's
        row is written before its start, but a trial to run again has nothing to write before
        its trainer is started: with a log still refusing writes, its start would fail to be
        recorded and the trainer (a CUDA start, on a GPU host) be killed at once, at every
        retry."""
        refused = self._log_refused
        await self.store.add_event("placement_resumed", after=str(refused))
        self._log_refused = None
        log.info("placement_resumed", after=str(refused))

    async def _kick_later(self, delay_s: float) -> None:
        await anyio.sleep(delay_s)
        self.kick()

    async def _place_what_fits(self) -> None:
        placed = True
        while placed and not self._closing:
            placed = False
            usage = self.limits.usage(self.runners.values()) if self.limits.enabled else None
            for exp in self._order():
                if self._closing:
                    return  # shutdown began during an await below: nothing more starts
                if usage is not None and self.limits.blocked(exp, usage):
                    continue
                uuids = self._pick(exp)
                if uuids is None:
                    continue
                if not exp.can_start_now():
                    # Its next trial waits for the end of another to be recorded (a matter of
                    # milliseconds; that kicks the loop). The GPUs wait for it too, rather
                    # than go to an experiment that comes after it.
                    return
                trial = await self._next_trial(exp)
                if trial is None:
                    continue
                if self._closing:
                    exp.requeued.insert(0, trial.number)  # recorded, queued: the next start's
                    return
                # Asked in a thread, the search took a while: the GPUs may have changed.
                uuids = self._pick(exp)
                if uuids is None:
                    exp.requeued.insert(0, trial.number)  # recorded, queued: first in line
                    continue
                self._launch(exp, trial, uuids)
                placed = True
                break

    async def _next_trial(self, exp: ExperimentRun) -> TrialRun | None:
        if exp.requeued:
            return exp.trials[exp.requeued.pop(0)]
        number = len(exp.trials)
        try:
            suggestion = await self._ask(exp, number)
            # Only the active parameters reach the trial and the log, even from a plugin that
            # ignores conditions (``when:``) and proposes a value for every parameter.
            trial = None if suggestion is None else TrialRun(
                number=number, params=exp.spec.space().restrict(dict(suggestion.params)),
                budget=suggestion.budget, continues=suggestion.continues)
        except Exception as exc:  # a plugin's bug ends its experiment, not the daemon
            detail = str(exc) if isinstance(exc, PluginError) else repr(exc)
            exp.failure = f"search plugin '{exp.spec.search_algorithm}' failed: {detail}"
            await self._note_failing(exp)
            await self._maybe_finish(exp)
            return None
        if self._closing or self._ending(exp):
            return None  # it ended, or began to, while the search was asked: nothing to run
        if trial is None:
            if not exp.live or not exp.waiting:
                exp.exhausted = True
                await self._maybe_finish(exp)
            return None
        # In the log first: if it refuses the row, the trial does not exist in memory either.
        await self.store.create_trial(exp.id, number, trial.params,
                                      str(self._trial_dir(exp, number)),
                                      budget=trial.budget, continues=trial.continues)
        exp.trials[number] = trial
        if self._closing:
            # Shutdown began while the row was written: the running trials were asked to
            # stop, this one would not be. Its row says queued: the next start runs it.
            exp.requeued.insert(0, number)
            return None
        if self._ending(exp):
            # While the row was written, the experiment ended or began to (a trial that had
            # already freed its slot was recorded failed and a failure rule fired, a cancel, a
            # time_budget): a trial started now would outlive its experiment.
            trial.state = TrialState.CANCELLED
            await self.store.update_trial(exp.id, number, state="cancelled",
                                          reason="the experiment ended before it started")
            return None
        return trial

    def _ending(self, exp: ExperimentRun) -> bool:
        """Whether ``exp`` has ended or begun to (a failure rule, a cancel, its time_budget):
        none of its trials may start any more."""
        return (exp.id not in self.active or bool(exp.failure) or exp.cancelling
                or exp.budget_spent)

    async def _ask(self, exp: ExperimentRun, number: int) -> Suggestion | None:
        """The search plugin's answer for trial ``number``: None when it has none now
        (``exp.waiting`` says whether it may have one later). A suggestion that would share a
        checkpoint folder wrongly is the plugin's error: PluginError. While points of
        ``points_to_evaluate`` are left, the next one takes the place of a new configuration
        (:meth:`ExperimentRun.next_point`).

        A search that took longer than SUGGEST_INLINE_S last time (``gp`` with hundreds of
        results: up to a second) is asked in a worker thread, with the history as it is now,
        so that the daemon goes on watching trials and answering meanwhile. Only the
        placement loop asks, one question at a time, so the plugin never runs twice at once.
        """
        answer = await _suggest(exp, number, in_thread=exp.suggest_s > SUGGEST_INLINE_S)
        exp.waiting = isinstance(answer, Wait)
        if exp.waiting and not exp.live:
            # Nothing runs, so the history, and with it the answer, cannot change.
            log.warning("search_waits_with_nothing_running", experiment=exp.id)
        if isinstance(answer, Wait):
            return None
        point = exp.next_point()
        if answer is None:
            # A search that has run out (a grid whose every point was given) still leaves
            # the points not taken yet: they run as they are; with the top budget the search
            # gave, if it gave budgets (refused at submit where that could be worked out:
            # see points_problem), so that a trainer that needs one gets one.
            return None if point is None else Suggestion(params=point,
                                                         budget=exp.top_budget())
        suggestion = as_suggestion(answer)
        # Checked here, as the plugin's answer: a value the log cannot store (a numpy integer)
        # or outside the space fails this experiment, not the daemon, nor reaches a trial.
        if (problem := exp.spec.space().problem_with(suggestion.params)) is not None:
            raise PluginError(problem)
        if suggestion.continues is not None:
            problem = exp.continues_problem(suggestion.continues)
            if problem is not None:
                raise PluginError(problem)
        elif point is not None:
            # A new configuration: the next of points_to_evaluate takes its place, with the
            # budget the search gave it (hyperband's first rung). The search was asked all
            # the same, for that budget and for a promotion that may come first.
            suggestion = Suggestion(params=point, budget=suggestion.budget)
        return suggestion

    def _trial_dir(self, exp: ExperimentRun, number: int) -> Path:
        # The experiment's folder is joined once: pathlib's joins cost, every trial.
        folder = self._experiment_dirs.get(exp.id)
        if folder is None:
            folder = self._experiment_dirs[exp.id] = self.state_dir / "trials" / exp.id
        return folder / str(number)

    def _launch(self, exp: ExperimentRun, trial: TrialRun, uuids: list[str]) -> None:
        key = f"{exp.id}/{trial.number}"
        share = 1.0 if exp.spec.gpus_per_trial >= 1 else exp.spec.gpus_per_trial
        self.devices.assign(key, uuids, share)
        trial.state, trial.devices = TrialState.RUNNING, list(uuids)
        trial.processes_gone = False
        exp.live[trial.number] = trial
        owner = exp.checkpoint_owner(trial.number)
        runner = TrialRunner(
            experiment=exp, trial=trial, uuids=uuids, store=self.store, backend=self.backend,
            devices=self.devices, settings=self.settings,
            trial_dir=self._trial_dir(exp, trial.number), daemon_env=self._daemon_env,
            on_end=self._trial_ended, on_release=self._trial_released,
            on_result=self._trial_has_result, other_sessions=self._trial_sessions,
            # None: its own folder's (TrialFiles' default), as for most trials.
            checkpoint_dir=None if owner == trial.number
            else TrialFiles(self._trial_dir(exp, owner)).checkpoints,
        )
        self.runners[key] = runner
        assert self._tg is not None
        if exp.state is ExperimentState.QUEUED:
            exp.state = ExperimentState.RUNNING
            self._tg.start_soon(self._mark_running, exp)
        self._tg.start_soon(self._run_guarded, runner)

    async def _run_guarded(self, runner: TrialRunner) -> None:
        """Run a trial; a bug or a store failure in it is logged and ends only that trial; a
        trial the daemon was short of a resource to start waits to start again."""
        try:
            await runner.run()
        except DaemonShortOf as exc:
            # Not the trial's fault, nor did it run: no attempt, no failure. It waits, as
            # when the log refuses its start, and nothing starts for a while.
            self._forget_runner(runner)
            await self._run_again(runner, TrialState.QUEUED)
            self._pause_placement(exc, runner.key)
            self.kick()
        except Exception as exc:
            log.exception("trial_runner_failed", trial=runner.key, error=repr(exc))
            self._forget_runner(runner)
            refused = _store_error_in(exc)
            if refused is not None:
                # Not the trial's fault: the log could not record it. Its row still says it
                # is queued or running, so it runs again, now or after a restart.
                await self._run_again(runner, TrialState.INTERRUPTED)
                self._pause_placement(refused)
            else:
                await self._record_runner_failure(runner, exc)
            self.kick()

    def _forget_runner(self, runner: TrialRunner) -> None:
        """Take out a runner that failed (its processes are gone): its devices are free."""
        self.runners.pop(runner.key, None)
        runner.exp.live.pop(runner.trial.number, None)
        if self.devices.holds(runner.key):
            self.devices.release(runner.key, runner.uuids)

    async def _run_again(self, runner: TrialRunner, state: TrialState) -> None:
        """Queue ``runner``'s trial again (``state``: how it waits), its end unrecorded: its row
        still says it is queued or running. Unless its experiment has ended or begun to (a
        cancel while it was being started): it is cancelled with it then, as at a trial's end
        (_trial_ended), or its experiment would never end."""
        exp = runner.exp
        runner.trial.state = state
        exp.requeued.append(runner.trial.number)
        if not self._ending(exp):
            return
        try:
            await self._drop_requeued(exp, self._ending_reason(exp))
            await self._maybe_finish(exp)
        except StoreError as exc:  # a restart ends it (the log has its cancel or failure)
            log.error("trial_end_not_recorded", trial=runner.key, error=str(exc))

    async def _record_runner_failure(self, runner: TrialRunner, exc: Exception) -> None:
        """A bug ended a trial's runner (its processes are gone: the runner's clean-up saw to
        that): the trial is recorded failed with the error, not left `running` in the log,
        and its experiment may end. The failure rules do not judge it: not the trial's fault."""
        exp, trial = runner.exp, runner.trial
        trial.state, trial.objective = TrialState.FAILED, None
        reason = f"the daemon failed while it ran (a gpusched bug, please report): {exc!r}"
        try:
            await self.store.record_trial(
                exp.id, trial.number,
                {"state": trial.state.value, "reason": reason, "objective": None,
                 "ended_at": _now(), "attempts": trial.attempts},
                "trial_ended", state=trial.state.value, reason=reason, attempt=trial.attempts,
            )
        except StoreError as refused:
            # Its row still says running: a restart runs it again.
            log.error("trial_end_not_recorded", trial=runner.key, error=str(refused))
            return
        await self._maybe_finish(exp)

    async def _mark_running(self, exp: ExperimentRun) -> None:
        exp.started_at = _now()
        self._watch_budget(exp)
        await self.store.update_experiment(exp.id, state=exp.state.value,
                                           started_at=exp.started_at)
        await self.store.add_event("experiment_started", exp.id)

    # -- time budget --------------------------------------------------------------------------

    def _watch_budget(self, exp: ExperimentRun) -> None:
        """Arm the experiment's time_budget, counted in wall time from its start (so time the
        daemon was down counts too, as it does for whoever waits for the result)."""
        budget = exp.spec.time_budget_s
        if budget is None or exp.started_at is None or self._tg is None:
            return
        deadline = exp.started_at + budget
        if _now() >= deadline:
            exp.budget_spent = True  # spent while the daemon was down: place nothing first
        self._tg.start_soon(self._spend_budget, exp, deadline)

    async def _spend_budget(self, exp: ExperimentRun, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - _now()))
        if self.active.get(exp.id) is not exp:
            # It ended first, and may have been resumed since: a resumed run is another
            # ExperimentRun, with a budget of its own counted from the resume.
            return
        exp.budget_spent = True
        reason = _budget_reason(exp)
        log.info("time_budget_used_up", experiment=exp.id)
        await self.store.add_event("time_budget_used_up", exp.id)
        # Running trials stop with what they reported so far (Ray Tune's time_budget_s);
        # trials waiting to run again will not.
        for key, runner in list(self.runners.items()):
            if key.startswith(f"{exp.id}/"):
                runner.request_stop(TrialState.STOPPED, reason)
        await self._drop_requeued(exp, reason)
        await self._maybe_finish(exp)

    async def _drop_requeued(self, exp: ExperimentRun, reason: str) -> None:
        """Trials waiting to run again (a retry, an interruption) will not: they are cancelled
        with ``reason`` (`gpusched resume` runs them again)."""
        for number in exp.requeued:
            exp.trials[number].state = TrialState.CANCELLED
            await self.store.update_trial(exp.id, number, state="cancelled", reason=reason)
        exp.requeued.clear()

    # -- endings ------------------------------------------------------------------------------

    def _trial_sessions(self) -> list[int]:
        """The sessions of the trials started (each trial's leader leads its own)."""
        return [r.pid for r in self.runners.values() if r.pid is not None]

    def _trial_released(self) -> None:
        self._poll_now.set()  # the release barrier starts now, not at the next slow poll
        self.kick()  # a CPU-only trial's slot, or a parallel slot, may be open already

    def _trial_has_result(self, exp: ExperimentRun, trial: TrialRun) -> None:
        """A trial completed or was stopped, its end being written: it no longer holds back
        its experiment's next trial (see ExperimentRun.can_start_now)."""
        exp.live.pop(trial.number, None)
        self.kick()

    async def _trial_ended(self, exp: ExperimentRun, trial: TrialRun, fatal: str | None,
                           failing: str | Literal[False] | None = False) -> None:
        """A trial's end is recorded. ``failing``: the failure rule's decision, which its runner
        made and recorded with the end (see TrialRunner._finish); False: not made yet (a
        direct call), so it is made and recorded here."""
        self.runners.pop(f"{exp.id}/{trial.number}", None)
        exp.live.pop(trial.number, None)
        if trial.state in (TrialState.INTERRUPTED, TrialState.QUEUED) and not self._closing:
            exp.requeued.append(trial.number)  # interrupted, or failed with retries left
        reason = exp.failing_after(trial, fatal) if failing is False else failing
        if failing is False and reason is not None:
            exp.failure = reason
            await self._note_failing(exp)
        if reason is not None:
            for key, runner in list(self.runners.items()):
                if key.startswith(f"{exp.id}/"):
                    runner.request_stop(TrialState.CANCELLED, f"experiment failed: {reason}")
            # Else a retry waiting for a GPU would keep the experiment from ever ending.
            await self._drop_requeued(exp, f"experiment failed: {reason}")
        if exp.requeued and self._ending(exp):
            # Requeued as its experiment ends for another reason (a search plugin's failure,
            # a cancel or time_budget that came while it was being stopped for something
            # else): it would wait for a start that never comes, the experiment with it.
            await self._drop_requeued(exp, self._ending_reason(exp))
        await self._maybe_finish(exp)
        self.kick()

    async def _note_failing(self, exp: ExperimentRun) -> None:
        """Put the decision that ``exp`` fails in the log at once: its end is written only
        once its running trials have stopped, and a daemon killed meanwhile must not take the
        experiment up again on restart (see ``_restore_experiment``). A log that refuses it
        changes nothing here: the decision stands in memory, and its end is written later."""
        try:
            await self.store.add_event("experiment_failing", exp.id, reason=exp.failure)
        except StoreError as exc:
            log.error("experiment_failing_not_recorded", experiment=exp.id, error=str(exc))

    def _ending_reason(self, exp: ExperimentRun) -> str:
        """Why ``exp`` is ending (see ``_ending``), as its cancelled trials say it."""
        if exp.failure:
            return f"experiment failed: {exp.failure}"
        if exp.cancelling:
            return "cancelled"
        if exp.budget_spent:
            return _budget_reason(exp)
        return "the experiment ended"

    async def _maybe_finish(self, exp: ExperimentRun) -> None:
        if exp.id not in self.active or not exp.all_ended():
            return
        if exp.failure:
            state, reason = ExperimentState.FAILED, exp.failure
        elif exp.cancelling:
            state, reason = ExperimentState.CANCELLED, "cancelled"
        elif exp.wants_more() or self._closing:
            return
        elif self._results(exp) or not exp.trials:
            # With no trial at all, its search had nothing to suggest (a grid whose points the
            # resume_from history used): nothing failed, nothing is left to search.
            state, reason = ExperimentState.COMPLETED, self._summary(exp)
        else:
            # Nothing to show for it (every trial failed, say): `completed` would have `wait`
            # exit 0 on a search that found nothing, and `resume` refuse it. Vertex AI fails
            # such a study, Ray Tune raises "Trials did not complete".
            state, reason = ExperimentState.FAILED, await self._no_result_reason(exp)
        exp.state = state
        del self.active[exp.id]
        await self.store.update_experiment(exp.id, state=state.value, reason=reason,
                                           ended_at=_now())
        await self.store.add_event("experiment_ended", exp.id, state=state.value, reason=reason)
        log.info("experiment_ended", experiment=exp.id, state=state.value, reason=reason)
        if (ended := self._ended.pop(exp.id, None)) is not None:
            ended.set()

    @staticmethod
    def _results(exp: ExperimentRun) -> list[TrialRun]:
        """``exp``'s trials that have a result (an objective)."""
        return [t for t in exp.trials.values() if t.objective is not None]

    def _summary(self, exp: ExperimentRun) -> str:
        """The reason of an experiment that ends `completed`: why it ended, its best result."""
        done = self._results(exp)
        count = len(exp.trials)
        why = ("search space exhausted" if exp.exhausted
               else f"{count} trial{'' if count == 1 else 's'} run")
        if exp.budget_spent:
            why = f"time_budget of {exp.spec.time_budget_s:g}s used up; {why}"
        if not done:  # no trial ran: the search had nothing to suggest
            return ("search space exhausted" if exp.exhausted
                    else "the search suggested no trial") + " before any trial ran"
        sign = -1.0 if exp.spec.goal is Goal.MAXIMIZE else 1.0
        best = min(done, key=lambda t: sign * (t.objective or 0.0))
        return f"{why}; best {exp.spec.metric} = {best.objective:g} (trial {exp.id}/{best.number})"

    async def _no_result_reason(self, exp: ExperimentRun) -> str:
        """The reason of an experiment that ends `failed` because none of its trials has a
        result: how many ended how, with the last failed one's own reason (read from the log:
        a crash's stderr line, a metric never reported), which says what to fix."""
        budget = f"{_budget_reason(exp)}; " if exp.budget_spent else ""
        failed = [n for n, t in exp.trials.items() if t.state is TrialState.FAILED]
        row = await self.store.trial(exp.id, max(failed)) if failed else None
        said = f"{exp.id}/{max(failed)}: {row['reason']}" if row and row["reason"] else ""
        ended = Counter(t.state for t in exp.trials.values())
        if len(exp.trials) == 1:
            (state,) = ended
            return f"{budget}its only trial has no result: {_ended_how(state, 'it', said)}"
        parts = [_ended_how(state, str(ended[state]), said and f"the last, {said}")
                 for state in sorted(ended, key=_NO_RESULT_ORDER.index)]
        return f"{budget}none of its {len(exp.trials)} trials has a result: {', '.join(parts)}"

    # -- requests -----------------------------------------------------------------------------

    def _plugins(self, spec: ExperimentSpec, seed: int
                 ) -> tuple[SearchPlugin, list[StoppingPlugin]]:
        """The plugins of a stored experiment (a resume, a restart); PluginError says every
        problem with them on one line (a plugin uninstalled since the submit, say)."""
        p = Problems()
        search, stoppers = _make_plugins(p, spec, seed)
        if p.items:
            raise PluginError("; ".join(str(problem) for problem in p.items))
        assert search is not None  # else a problem says why
        return search, stoppers

    async def submit(self, spec: ExperimentSpec, owner_uid: int | None, *,
                     source: str = "", warnings: list[str] | None = None,
                     umask: int | None = None) -> str:
        """Record and queue an experiment; return its id.

        What the daemon alone can judge in the file (its plugins and their options, the
        per-user GPU limit, ``resume_from``; once those are right, whether its search can take
        all of its ``points_to_evaluate``: :func:`points_problem`) is a :class:`SpecError`
        that lists every such problem at its place, as the parser's are (``source``: the
        file's name, for the message); other refusals are RequestErrors. What looks wrong but
        is accepted (a ``resume_from`` with nothing to learn from) is added to ``warnings``,
        the submit answer's. In a file that the parser refuses, :meth:`judge_refused` judges
        what of these it can. ``umask``: the submitter's, which its trials get (None: the
        daemon's).
        """
        if self._closing:
            raise RequestError("shutting_down", "the daemon is shutting down; submit again later")
        seed = spec.search_seed if spec.search_seed is not None else secrets.randbelow(2**31)
        p = Problems()
        # In the order of the file's settings (the daemon does not know the file's own order).
        if (over := self.limits.submit_problem(spec.gpus_per_trial)) is not None:
            p.add(spec.place("gpus_per_trial"), over)
        # Made once, here: the experiment keeps these (a wrong one is a problem, not an error).
        search, stoppers = _make_plugins(p, spec, seed)
        if spec.resume_from:
            # Pinned to the id: a name means the newest experiment with that name *now*.
            pinned = await ended_experiment(self.store, spec.resume_from,
                                            spec.place("resume_from"), p,
                                            submitter_uid=owner_uid)
            spec = spec if pinned is None else replace(spec, resume_from=pinned)
        if p.items:
            raise SpecError(p.items, source)
        assert search is not None  # else a problem says why
        # Who its trials run as (a root daemon's): refuses nobody and uids without a passwd
        # entry. In a worker thread: the user database may be LDAP, slow to answer.
        run_as = await anyio.to_thread.run_sync(trial_identity, owner_uid) if (
            os.geteuid() == 0) else None
        if spec.resume_from is not None and spec.resume_from in self._resuming:
            raise RequestError("not_ended", f"{spec.resume_from} is being resumed: its trials"
                               " would change under this search; submit once it has ended")
        learns = spec.resume_from or ""
        self._learning_from[learns] += 1  # until it is in `active` (see _resume)
        try:
            prior = await prior_trials(self.store, spec)
            plan = await _plan(spec, search, prior)
            if (problem := points_problem(spec, plan)) is not None:
                raise SpecError([Problem("points_to_evaluate", problem)], source)
            if warnings is not None and (warning := resume_from_warning(spec, prior)):
                warnings.append(warning)
            exp_id = await self.store.create_experiment(
                name=spec.name, spec=spec.to_dict(), seed=seed, priority=spec.priority,
                owner_uid=owner_uid, umask=umask,
            )
            seq = int(exp_id[1:])
            self.active[exp_id] = ExperimentRun(exp_id, seq, spec, seed, search, stoppers,
                                                prior=prior, owner_uid=owner_uid, run_as=run_as,
                                                umask=umask, plan=plan)
        finally:
            self._learning_from[learns] -= 1
            if not self._learning_from[learns]:
                del self._learning_from[learns]
        await self.store.add_event("experiment_submitted", exp_id, owner_uid=owner_uid)
        log.info("experiment_submitted", experiment=exp_id, name=spec.name)
        self.kick()
        return exp_id

    async def judge_refused(self, read: PartialRead, owner_uid: int | None = None
                            ) -> list[Problem]:
        """What :meth:`submit` would refuse in a file that the parser refused already, as far
        as ``read`` (what of the file parsed) allows: the per-user GPU limit, whether the
        plugins it names are installed (and, for a stopping plugin whose options, metric and
        goal parsed, whether it takes its options) and ``resume_from``. So that one submit
        lists every problem that can be known; the rest needs a file that parses: a search
        plugin's options (its constructor takes the search space) and ``points_to_evaluate``.
        ``owner_uid``: the submitter, for whom a name in ``resume_from`` means theirs first.
        """
        p = Problems()
        if read.gpus_per_trial is not None and (
                over := self.limits.submit_problem(read.gpus_per_trial)) is not None:
            p.add(read.place("gpus_per_trial"), over)
        if read.search is not None:
            _load_plugin(p, read.search.name, load_search_plugin, name_at=read.search.name_at)
        for plugin in read.stopping:
            _judge_stopping(p, plugin, read.metric, read.goal)
        if read.resume_from:
            await ended_experiment(self.store, read.resume_from, read.place("resume_from"), p,
                                   submitter_uid=owner_uid)
        return p.items

    async def wait_ended(self, exp_id: str, timeout_s: float) -> None:
        """Return when experiment ``exp_id`` has ended (at once if it is not in progress), or
        after ``timeout_s``, whichever comes first; its end is in the log before this returns."""
        if exp_id not in self.active:
            return
        ended = self._ended.setdefault(exp_id, anyio.Event())
        with anyio.move_on_after(timeout_s):
            await ended.wait()

    async def resume(self, exp_id: str) -> str:
        """Go on with a failed or cancelled experiment, keeping its trials (``gpusched resume``).

        Its trials that never ran to an end (queued, interrupted, cancelled without a result)
        run again with their params and checkpoint folders; finished ones stay as they are,
        and the search continues from all of them. The failure rules count the earlier
        failures too; a time_budget counts afresh from the resume.
        """
        if exp_id in self.active:
            raise RequestError("not_ended", f"{exp_id} is still {self.active[exp_id].state.value}"
                                            ": only an ended experiment can be resumed")
        if exp_id in self._resuming:
            # Two resumes at once would each requeue its trials: one would run twice.
            raise RequestError("not_ended", f"{exp_id} is being resumed already")
        self._resuming.add(exp_id)
        try:
            return await self._resume(exp_id)
        finally:
            self._resuming.discard(exp_id)

    async def _nothing_left(self, exp: ExperimentRun) -> str | None:
        """Why a resumed ``exp`` would run no new trial (its max_trials all run, or its search
        has nothing more to suggest), or None when it would. The search is asked as placement
        would ask it (a pure function of the log), in a worker thread: gp may think a while."""
        if len(exp.trials) >= exp.max_trials:
            return f"all of its max_trials ({exp.max_trials}) have run"
        if exp.next_point() is not None:
            return None  # a point of points_to_evaluate runs, whatever the search says
        try:
            answer = await _suggest(exp, len(exp.trials), in_thread=True)
        except Exception:  # the run will fail on it, and say so
            return None
        if answer is None:
            return "its search has nothing more to suggest"
        if isinstance(answer, Wait):  # with nothing running, placement ends it as exhausted
            return "its search waits, with none of its trials running"
        return None

    def _search_further(self, exp: ExperimentRun) -> str:
        """How to go on from ``exp`` when it cannot be resumed: a new experiment that learns
        from its results, or, when it has none (every trial failed), one run afresh."""
        if exp.trials and not self._results(exp):
            return (f"None of its trials has a result to learn from (`gpusched show {exp.id}`"
                    " says how they ended): fix the cause, then submit the file again")
        return (f"To search further, submit a new experiment (`gpusched submit FILE --set"
                f" resume_from={exp.id}`: its search learns from these trials' results)")

    async def _resume(self, exp_id: str) -> str:
        row = await self.store.experiment(exp_id)
        if row is None:
            raise NotFoundError(f"no experiment '{exp_id}'")
        if row["state"] not in (ExperimentState.FAILED.value, ExperimentState.CANCELLED.value):
            raise RequestError("bad_request", f"{exp_id} has {row['state']}: only a failed or"
                               " cancelled one can be resumed (to search further, submit a new"
                               f" experiment with resume_from: {exp_id})")
        learning = sorted(e.id for e in self.active.values() if e.spec.resume_from == exp_id)
        if exp_id in self._learning_from:
            learning.append("an experiment being submitted")
        if learning:
            # Its trials are their history (resume_from): it must not change under their search.
            raise RequestError("bad_request", f"{exp_id} cannot be resumed while"
                               f" {', '.join(learning)} (resume_from: {exp_id}) is in progress:"
                               " wait for it to end, or cancel it first")
        spec = ExperimentSpec.from_dict(row["spec"])
        try:
            search, stoppers = self._plugins(spec, row["seed"])
        except PluginError as exc:
            raise RequestError("invalid_experiment", str(exc)) from None
        prior = await prior_trials(self.store, spec)
        exp = ExperimentRun(row["id"], row["seq"], spec, row["seed"], search, stoppers,
                            prior=prior, owner_uid=row["owner_uid"],
                            run_as=trial_identity(row["owner_uid"]), umask=row["umask"],
                            plan=await _plan_for_max_trials(spec, search, prior))
        await restore_trials(self.store, exp)
        cut_short = [t for t in exp.trials.values()
                     if t.state is TrialState.CANCELLED and t.objective is None]
        # Asked even with trials to run again, so that the answer says whether new ones follow.
        why = await self._nothing_left(exp)
        if not exp.requeued and not cut_short and why:
            # Resumed, it would end at once with nothing run: `completed` where a trial has a
            # result (a failed one too: a CI script would see success where its trials
            # failed), or `failed` again with another reason. It stays as it ended.
            raise RequestError(
                "bad_request", f"{exp.id} has nothing left to run: {why} and no trial was cut"
                f" short, so it stays {row['state']}. {self._search_further(exp)}")
        for trial in cut_short:
            # Cut short by the cancel: it runs again. The log says so, so that a restart
            # before it runs (or before its start is recorded) runs it again too.
            trial.state = TrialState.QUEUED
            await self.store.update_trial(exp.id, trial.number, state="queued",
                                          reason="queued again by resume")
            exp.requeued.append(trial.number)
        exp.requeued.sort()
        # Its start is its first trial's again: a restart before then must not count the
        # time_budget from the run that ended.
        await self.store.update_experiment(exp.id, state=ExperimentState.QUEUED.value,
                                           reason=None, started_at=None, ended_at=None)
        await self.store.add_event("experiment_resumed", exp.id, requeued=exp.requeued,
                                   was=row["state"])
        self.active[exp.id] = exp
        log.info("experiment_resumed", experiment=exp.id, requeued=exp.requeued)
        await self._maybe_finish(exp)  # something is left to run (see above): ends nothing
        self.kick()
        return _resume_message(exp, nothing_new=why)

    async def cancel(self, exp_id: str, number: int | None) -> str:
        """Cancel an experiment (all its trials) or one trial; return what was done."""
        exp = self.active.get(exp_id)
        if exp is None:
            raise RequestError("not_running", f"{exp_id} is not queued or running")
        if number is not None:
            return await self._cancel_trial(exp, number)
        exp.cancelling = True
        for key, runner in list(self.runners.items()):
            if key.startswith(f"{exp_id}/"):
                runner.request_stop(TrialState.CANCELLED, "cancelled")
        await self.store.add_event("experiment_cancel_requested", exp_id)
        # Recorded cancelled, not merely forgotten: a trial left queued in memory would keep
        # the experiment from ever ending (and `resume` runs these again).
        await self._drop_requeued(exp, "cancelled")
        await self._maybe_finish(exp)
        return f"cancelling {exp_id}"

    async def _cancel_trial(self, exp: ExperimentRun, number: int) -> str:
        key = f"{exp.id}/{number}"
        runner = self.runners.get(key)
        if runner is not None:
            runner.request_stop(TrialState.CANCELLED, "cancelled")
            return f"cancelling {key}"
        if number in exp.requeued:
            exp.requeued.remove(number)
            exp.trials[number].state = TrialState.CANCELLED
            await self.store.update_trial(exp.id, number, state="cancelled", reason="cancelled")
            await self._maybe_finish(exp)
            return f"cancelled {key}"
        if number not in exp.trials:
            raise NotFoundError(f"no trial {key}")
        raise RequestError("not_running", f"{key} has already ended")

    # -- restart ------------------------------------------------------------------------------

    async def _restore(self) -> None:
        """Rebuild the experiments in progress from the log after a (re)start.

        First, processes that a killed daemon's trials left running are stopped (before any
        trial is placed: no trial runs twice at once); then each experiment's trials are read
        back, and the interrupted ones requeued.
        """
        # Every trial of the log, whatever its state says: a daemon killed between spawning
        # an attempt and recording its start leaves a row that still says queued or
        # interrupted (a rerun), or cancelled (a rerun after `resume`) while it runs.
        every_trial = [t["dir"] for t in await self.store.trials()]
        stopped = await stop_leftovers(every_trial, self.settings.grace_period_s)
        if stopped:
            log.warning("leftover_trial_processes_stopped",
                        trials={d: pids for d, pids in stopped.items()})
        for row in reversed(await self.store.experiments(include_finished=False)):
            try:
                await self._restore_experiment(row, stopped)
            except StoreError:
                raise  # the log cannot be read: nothing can run
            except Exception as exc:
                # A bug met in one experiment's records must not keep the daemon, and every
                # other experiment, from starting: that one is recorded failed, saying so.
                log.exception("experiment_not_restored", experiment=row["id"], error=repr(exc))
                self.active.pop(row["id"], None)
                reason = (f"could not be restored after a restart (a gpusched bug, please"
                          f" report): {exc!r}")
                await self.store.update_experiment(row["id"], state="failed", reason=reason,
                                                   ended_at=_now())

    async def _restore_experiment(self, row: dict[str, Any],
                                  stopped: Mapping[str, list[int]]) -> None:
        spec = ExperimentSpec.from_dict(row["spec"])
        try:
            search, stoppers = self._plugins(spec, row["seed"])
            # Read again: the user may have changed groups, or be gone, since the submit.
            run_as = trial_identity(row["owner_uid"])
        except (PluginError, RequestError) as exc:
            await self.store.update_experiment(row["id"], state="failed", reason=str(exc),
                                               ended_at=_now())
            return
        prior = await prior_trials(self.store, spec)
        exp = ExperimentRun(row["id"], row["seq"], spec, row["seed"], search, stoppers,
                            state=ExperimentState(row["state"]), prior=prior,
                            started_at=row["started_at"], owner_uid=row["owner_uid"],
                            run_as=run_as, umask=row["umask"],
                            plan=await _plan_for_max_trials(spec, search, prior))
        await restore_trials(self.store, exp, stopped)
        # A failure rule or a cancel decided before the daemon was killed (the experiment's end
        # waits for its running trials to stop): still decided, the failure first (as
        # _maybe_finish puts it, even when a cancel came after). A resume since undoes both.
        failing = await self.store.last_event(exp.id, (*RUN_STARTS, "experiment_failing"))
        cancel = await self.store.last_event(exp.id, (*RUN_STARTS, "experiment_cancel_requested"))
        if failing is not None and failing["kind"] == "experiment_failing":
            exp.failure = str(failing["data"].get("reason") or "a failure rule fired")
        if cancel is not None and cancel["kind"] == "experiment_cancel_requested":
            exp.cancelling = True
        # Its time_budget used up before the crash: its end (maybe made just below) says so.
        spent = await self.store.last_event(exp.id, (*RUN_STARTS, "time_budget_used_up"))
        if spent is not None and spent["kind"] == "time_budget_used_up":
            exp.budget_spent = True
        if exp.requeued and (exp.failure or exp.cancelling):
            await self._drop_requeued(exp, self._ending_reason(exp))
        self.active[exp.id] = exp
        log.info("experiment_restored", experiment=exp.id, trials=len(exp.trials),
                 requeued=exp.requeued)
        # Its last trial may have ended just before the crash, its own end unrecorded.
        await self._maybe_finish(exp)


async def _suggest(exp: ExperimentRun, number: int, *, in_thread: bool) -> Any:
    """``exp``'s search plugin's answer for trial ``number``, timed into ``exp.suggest_s`` (a
    search that took long is asked in a worker thread the next time: see Scheduler._ask)."""
    started = time.perf_counter()
    if in_thread:
        # A copy: the loop goes on changing the trials the lazy history reads.
        history = list(exp.history())
        answer = await anyio.to_thread.run_sync(exp.search.suggest, number, history)
    else:
        answer = exp.search.suggest(number, exp.history())
    exp.suggest_s = time.perf_counter() - started
    return answer


async def _plan(spec: ExperimentSpec, search: SearchPlugin,
                prior: Sequence[TrialView]) -> PointsPlan | None:
    """What ``search`` makes with ``spec``'s points_to_evaluate (:func:`plan_points`, in a
    worker thread: up to PLAN_STEPS questions to the search); None without points or for a
    search of unknown size (one with no ``size()`` may never run out)."""
    if not spec.points_to_evaluate or not callable(getattr(search, "size", None)):
        return None
    return await anyio.to_thread.run_sync(
        plan_points, search, spec.space(), spec.points_to_evaluate, prior, spec.max_trials)


async def _plan_for_max_trials(spec: ExperimentSpec, search: SearchPlugin,
                               prior: Sequence[TrialView]) -> PointsPlan | None:
    """:func:`_plan` of an experiment taken up again (a restart, a resume): needed only for
    the max_trials it makes, when the file sets none (the points were judged at submit)."""
    return None if spec.max_trials is not None else await _plan(spec, search, prior)


def _make_plugins(p: Problems, spec: ExperimentSpec, seed: int
                  ) -> tuple[SearchPlugin | None, list[StoppingPlugin]]:
    """``spec``'s search plugin and stopping plugins, each made once; each one that cannot be
    made is a problem in ``p`` (and None, or left out of the list), at the setting that names
    it or holds its options.

    A search named by AI Platform's ``algorithm`` is named at that key, as the file spelt it.
    Otherwise the spec does not keep where its plugins were written: a plugin written with
    options (``search: {algorithm: tpe, n_startup: 5}``) was a mapping, so its name's place is
    ``search.algorithm``; without, the place is the setting (``search: tpe`` as well as
    ``search: {algorithm: tpe}``).
    """
    named = bool(spec.search_options) or spec.search_seed is not None
    search = _make_plugin(
        p, "search", spec.search_algorithm, load_search_plugin,
        lambda cls: cls(spec.space(), goal=spec.goal, seed=seed, options=spec.search_options),
        name_at=spec.written_at("algorithm") or ("search.algorithm" if named else "search"),
        options_at="search")
    stoppers: list[StoppingPlugin] = []
    if spec.stop:
        bounds = _make_plugin(
            p, "stopping", "bounds", load_stopping_plugin,
            lambda cls: cls(metric=spec.metric, goal=spec.goal, options=spec.stop),
            name_at="stop", options_at="stop")
        stoppers += [bounds] if bounds is not None else []
    if spec.early_stopping_policy:
        policy = _make_plugin(
            p, "stopping", spec.early_stopping_policy, load_stopping_plugin,
            lambda cls: cls(metric=spec.metric, goal=spec.goal,
                            options=spec.early_stopping_options),
            name_at="early_stopping.policy" if spec.early_stopping_options else "early_stopping",
            options_at="early_stopping")
        stoppers += [policy] if policy is not None else []
    return search, stoppers


def _make_plugin(
    p: Problems, kind: PluginKind, name: str, load: Callable[[str], type[_P]],
    build: Callable[[type[_P]], _P], *, name_at: str, options_at: str,
) -> _P | None:
    """Load the plugin ``name`` and build it; None, with the problem in ``p``, if either fails:
    one that cannot be loaded (not installed: with the closest installed name) at ``name_at``,
    one that cannot be built (options it refuses, a bug in its constructor) at
    ``options_at``."""
    cls = _load_plugin(p, name, load, name_at=name_at)
    return None if cls is None else _build_plugin(p, kind, name, lambda: build(cls),
                                                  options_at=options_at)


def _load_plugin(p: Problems, name: str, load: Callable[[str], type[_P]], *, name_at: str
                 ) -> type[_P] | None:
    """The plugin class ``name``; None, with the problem at ``name_at`` in ``p``, when it
    cannot be loaded (not installed: with the closest installed name)."""
    try:
        return load(name)
    except PluginError as exc:
        p.add(name_at, str(exc))
        return None


def _build_plugin(p: Problems, kind: PluginKind, name: str, build: Callable[[], _P], *,
                  options_at: str) -> _P | None:
    """``build()``, the plugin ``name`` made; None, with the problem at ``options_at`` in
    ``p``, when it cannot be (options it refuses, a bug in its constructor)."""
    try:
        return construct_plugin(kind, name, build)
    except PluginError as exc:
        p.add(options_at, str(exc))
        return None


def _judge_stopping(p: Problems, plugin: PluginRead, metric: str | None, goal: Goal | None
                    ) -> None:
    """The problems with a stopping plugin of a refused file: whether it is installed, and
    whether it takes its options when they, the metric and the goal parsed (all that its
    constructor takes: what it says of them, it will say of the file that parses)."""
    cls = _load_plugin(p, plugin.name, load_stopping_plugin, name_at=plugin.name_at)
    options = plugin.options
    if cls is None or options is None or metric is None or goal is None:
        return
    _build_plugin(p, "stopping", plugin.name,
                  lambda: cls(metric=metric, goal=goal, options=options),
                  options_at=plugin.options_at)


def _store_error_in(exc: BaseException) -> StoreError | None:
    """The StoreError that ``exc`` is or holds (task groups wrap errors), else None."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _store_error_in(inner)) is not None:
                return found
    return None


def _resume_message(exp: ExperimentRun, nothing_new: str | None = None) -> str:
    """What `gpusched resume` says: the trials that run again, and the new ones its max_trials
    leaves room for ("0 trials to run again" alone read as "nothing will happen");
    ``nothing_new``: why none follows them (its search has nothing more to suggest), if so."""
    again = len(exp.requeued)
    room = max(exp.max_trials - len(exp.trials), 0)
    new = (f"up to {room} new one{'' if room == 1 else 's'}" if room and not nothing_new
           else "no new ones" + (f" ({nothing_new})" if nothing_new and room else ""))
    return (f"resuming {exp.id}: {again} trial{'' if again == 1 else 's'} to run again,"
            f" {new} (max_trials: {exp.max_trials})")


def _budget_reason(exp: ExperimentRun) -> str:
    return f"time_budget of {exp.spec.time_budget_s:g}s used up"


# How the trials of an experiment without a result ended, in the order its reason counts them.
_NO_RESULT_ORDER = (TrialState.FAILED, TrialState.STOPPED, TrialState.CANCELLED,
                    *(s for s in TrialState if s not in (
                        TrialState.FAILED, TrialState.STOPPED, TrialState.CANCELLED)))


def _ended_how(state: TrialState, who: str, said: str) -> str:
    """``who`` (a count, or "it") ended in ``state`` without a result: "3 failed (SAID)",
    "it was cancelled". ``said``: the last failed trial's id and reason, shown with the
    failures."""
    if state is TrialState.FAILED:
        return f"{who} failed ({said})" if said else f"{who} failed"
    was = "was " if who == "it" else ""
    if state is TrialState.STOPPED:  # by the time_budget: other stops without one fail it
        return f"{who} {was}stopped without one"
    return f"{who} {was}{state.value}"


def _now() -> float:
    return time.time()
