"""Runs one attempt of one trial, from spawn to its recorded end.

While the trial runs, its report files are read every ``report_poll_s``, stored in batches, and
shown to the stopping plugins; a stop (early stopping, a bound, cancel, timeout, shutdown) is
SIGTERM to the whole process group, the grace period, then SIGKILL. Whatever happens, including
cancellation of the daemon itself, the trial's processes are gone before this returns.
A stop that decides the trial's outcome is in the log as soon as its SIGTERM is sent (event
``trial_stop_sent``): a daemon killed during the grace period concludes the trial alike at its
restart, instead of running it again.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from gpusched._daemon.budget import budget_argv, budget_environment
from gpusched._daemon.devices import DeviceTable
from gpusched._daemon.experiment import (
    AUTO_FILLED_KEYS,
    METRIC_EVENT,
    STOP_KEY_EVENT,
    ExperimentRun,
    StopRequest,
    TrialRun,
    keys_shown,
    objective_of,
    stop_outcome,
    stopped_at_a_length_bound,
    stopped_at_bound,
)
from gpusched._daemon.gpu_backend import GpuBackend
from gpusched._daemon.launcher import (
    TrialFiles,
    TrialProcess,
    not_on_path,
    spawn_trial,
    trial_command,
    trial_environment,
)
from gpusched._daemon.recovery import leftover_processes, stop_leftovers
from gpusched._daemon.report_collector import ReportCollector, count_start
from gpusched._daemon.reports import regular_file_size
from gpusched._daemon.stderr_tail import last_stderr_line
from gpusched._daemon.store import ReadPosition, ReportBatch, Store, encode_reports
from gpusched._spec_check import did_you_mean
from gpusched._spec_stop_keys import auto_filled_near_miss
from gpusched.config import DaemonSettings
from gpusched.errors import StoreError
from gpusched.log import get_logger
from gpusched.models import TrialState

__all__ = ["TrialRunner", "describe_exit", "unreported_stop_key_warning", "stop_key_warnings",
           "STOP_SENT_EVENT", "cannot_start_reason", "budget_flag_hint", "metric_warning_event",
           "DaemonShortOf", "short_of_reason"]

log = get_logger("gpusched.trial")
# Up to this many unread report bytes (~100 typical lines) are read on the event loop.
INLINE_READ_BYTES = 16 * 1024
# How alike a never-reported key must be to an auto-filled one to be guessed as it: did you
# mean's own bar (difflib's default). Once a trial has ended without the key, a looser guess
# than at submit is worth showing.
_CLOSE = 0.6
# The trial's event that keeps a stop's decision (a StopRequest's fields), written as its
# SIGTERM goes out: a restart concludes the trial by it (restore.py) instead of running it
# again.
STOP_SENT_EVENT = "trial_stop_sent"
# What the daemon itself runs short of as it starts a trial, never the trial's fault: its file
# descriptors (EMFILE) or the host's (ENFILE), as it opens the trial's logs or pipes; a process
# for the fork (EAGAIN: a process limit; ENOMEM); space for the trial's folder and logs, which
# are in the state folder (ENOSPC, EDQUOT).
_SHORT_OF = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM, errno.ENOSPC,
                       errno.EDQUOT})
_FEWER = "or run fewer trials at once (max_parallel_trials)"
# errno -> what the daemon is short of, and what to do (see short_of_reason).
_SHORT_OF_WORDS = {
    errno.EMFILE: ("the daemon is out of file descriptors",
                   "raise its limit (LimitNOFILE= in its systemd unit, `ulimit -n` in the shell"
                   f" that starts it) {_FEWER}"),
    errno.ENFILE: ("the host is out of file descriptors",
                   f"raise the system's limit (sysctl fs.file-max) {_FEWER}"),
    errno.EAGAIN: ("the daemon cannot start another process",
                   "raise its process limit (TasksMax= or LimitNPROC= in its systemd unit,"
                   f" `ulimit -u` in the shell that starts it) {_FEWER}"),
    errno.ENOMEM: ("the host has no memory left to start another process",
                   f"free memory {_FEWER}"),
}
# The ends of a trial cut short by someone else (the daemon's shutdown, a cancel): its few
# reports do not say what it would have reported, and it warns of no misspelled metric.
_CUT_SHORT = (TrialState.INTERRUPTED, TrialState.CANCELLED)


def describe_exit(code: int, last_line: str | None = None) -> str:
    """``exited with code 3`` or ``killed by signal SIGKILL``, then ``: LAST_LINE`` when given
    (the last line of the trial's stderr: ``exited with code 1: RuntimeError: boom``)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        said = f"killed by signal {name}"
    else:
        said = f"exited with code {code}"
    return f"{said}: {last_line}" if last_line else said


def cannot_start_reason(program: str, workdir: str, error: OSError, *,
                        env: Mapping[str, str], path_in_env: bool = False,
                        other_user: bool = False) -> str:
    """Why the trial's command could not be started, in one line:
    ``cannot start 'train.sh' in /data/exp: Permission denied``.

    A program named without a folder (``python``) that is not found is looked for on the
    trial's PATH, which is not the user's shell's: the message says which PATH that was, and
    what to do. ``env``: the trial's environment; ``path_in_env``: its PATH is the one the
    experiment's ``env:`` sets; ``other_user``: it runs as another user (a root daemon's
    trial), with a default PATH; else its PATH is the daemon's. A program found there all the
    same (a script whose ``#!`` interpreter is missing) keeps the system's word.
    """
    said = f"cannot start {program!r} in {workdir}"
    dirs = os.get_exec_path(dict(env))  # where exec looks: the env's PATH, else the default
    # Not found is the program's (the error names it, not the workdir or a file of the trial's
    # folder), and not of one found all the same.
    if (error.errno != errno.ENOENT or error.filename != program or "/" in program
            or _found_in(program, dirs, workdir)):
        return f"{said}: {error.strerror or error}"
    return f"{said}: " + not_on_path(program, os.pathsep.join(dirs), path_in_env=path_in_env,
                                     other_user=other_user, has_path="PATH" in env)


def short_of_reason(error: OSError, trial_dir: Path) -> str:
    """What the daemon ran short of as it started a trial (``error``: one of :data:`_SHORT_OF`'s,
    met at the start of the trial in ``trial_dir``), and what to do, in one line: the reason
    that placement is paused, in the daemon's log and in `ls` and `show`'s wait reason."""
    what, fix = _SHORT_OF_WORDS.get(error.errno or 0, (None, "free space there"))
    if what is None:  # ENOSPC, EDQUOT: the folder of every experiment's trials
        what = f"no space left for trial folders in {trial_dir.parent.parent}"
    return (f"{what} ({error.strerror or error}): placement is paused, trials wait to start;"
            f" {fix}")


class DaemonShortOf(Exception):
    """A trial did not start because the daemon ran short of a resource of its own (file
    descriptors, processes, memory, space in its state folder: see :data:`_SHORT_OF`). Not the
    trial's fault: it never ran, and waits to start, with no attempt or failure counted;
    placement pauses until later (``Scheduler._pause_placement``). ``str()``: what it ran
    short of and what to do (:func:`short_of_reason`)."""

    def __init__(self, error: OSError, trial_dir: Path) -> None:
        super().__init__(short_of_reason(error, trial_dir))
        self.error = error


def _found_in(program: str, dirs: Sequence[str], workdir: str) -> bool:
    """Whether ``program`` is an executable file in one of ``dirs`` (a relative one from the
    trial's ``workdir``, where exec looks in it)."""
    path = os.pathsep.join(os.path.join(workdir, d) for d in dirs)
    return shutil.which(program, path=path) is not None


def budget_flag_hint(code: int, last_line: str | None, flag: str | None,
                     budget: int | float | None, search: str) -> str:
    """`` (hyperband passes the budget as --epochs=N: ...)``, to follow the reason of a trial
    that was given its budget as ``flag`` (:func:`~gpusched._daemon.budget.budget_argv`) and
    exited 2 (a usage error: argparse's, click's) with a last stderr line that names the flag,
    ``train.py: error: unrecognized arguments: --epochs=1``; "" otherwise. ``search``: the
    experiment's search plugin, which passed it."""
    if code != 2 or flag is None or budget is None or not last_line:
        return ""
    if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", last_line):
        return ""
    if search == "hyperband":  # its option, by its name (docs/plugins.md)
        fix = "set search.budget_flag to your trainer's flag, or to null and read GPUSCHED_BUDGET"
    else:
        fix = f"have your trainer take {flag}, or see the options of {search}"
    return f" ({search} passes the budget as {flag}=N: {fix})"


def _without_the_metric(metric: str, last_report: Mapping[str, Any]) -> str:
    """Why a trial that exited 0 has no result, with what it did report: a misspelled metric
    (``val-loss`` for ``val_loss``) is then plain to see."""
    if metric in last_report:  # reported, but never as a finite number
        return f"exited 0 without a finite '{metric}' (only NaN, infinite or text values)"
    said, _ = _what_it_reported(metric, last_report)
    return f"exited 0 without reporting '{metric}'{said}"


def unreported_stop_key_warning(key: str, trial: str, last_report: Mapping[str, Any]) -> str:
    """The warning that ``trial`` (``e3/0``) ended without ever reporting the ``stop:`` key
    ``key`` as a number, with what it reported last: a misspelled key (``val_acc`` for
    ``val_accuracy``, ``training_iteraton`` for the ``training_iteration`` that gpusched
    fills in) is then plain to see."""
    if key in last_report:  # reported, but not as a number the bound can compare
        last = repr(last_report[key])
        last = last if len(last) <= 40 else f"{last[:37]}..."
        never = f"was never reported as a number by trial {trial} (its last value: {last})"
        fix = "report it as a number"
    else:
        said, auto = _what_it_reported(key, last_report)
        never = f"was never reported by trial {trial}{said}"
        # A key of gpusched's own, misspelled: the trainer has nothing to do with it.
        fix = "name a key the trainer reports" if auto is None else f"write {auto!r}"
    return f"stop: '{key}' {never}: that bound cannot stop a trial; {fix}"


def stop_key_warnings(keys: Sequence[str], trial: str, last_report: Mapping[str, Any]
                      ) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The experiment's events that warn, once per key, that ``trial`` (``e3/0``) ended without
    ever reporting these ``stop:`` keys (nor did any trial before it); ``gpusched show EXP``
    prints them. The trial's outcome stands: a bound is optional, and one that cannot be
    reached only stops nothing."""
    return tuple((STOP_KEY_EVENT, {"key": key, "reason": unreported_stop_key_warning(
        key, trial, last_report)}) for key in keys)


def metric_warning_event(metric: str, warning: str) -> tuple[str, dict[str, Any]]:
    """The experiment's event that gives ``warning``, of its ``metric`` looking misspelled
    (:meth:`ExperimentRun.metric_warning`); ``gpusched show EXP`` and ``wait`` print it."""
    return METRIC_EVENT, {"metric": metric, "reason": warning}


def _what_it_reported(wanted: str, last_report: Mapping[str, Any]) -> tuple[str, str | None]:
    """`` (it reported loss, val_accuracy) (did you mean 'val_accuracy'?)``: the keys of a
    trial's last report that the trainer wrote itself, and the closest to ``wanted``; and the
    auto-filled key that ``wanted`` was taken for, if it was one.

    The trainer's own keys are guessed from first: they are what a trial reports. Failing
    those, an auto-filled key (``training_iteraton`` for ``training_iteration``), never listed
    as reported: `` (did you mean 'training_iteration'? gpusched fills it in for every
    report)``.
    """
    reported = sorted(k for k in last_report if k not in AUTO_FILLED_KEYS)
    said = keys_shown(wanted, reported)
    if did_you_mean(wanted, reported):  # one of the trainer's own keys is the guess
        return said, None
    auto = auto_filled_near_miss(wanted, cutoff=_CLOSE)
    if auto is not None:
        said += f" (did you mean {auto!r}? gpusched fills it in for every report)"
    return said, auto


class TrialRunner:
    """One attempt of one trial. Create, then ``await run()``; ``request_stop`` from anywhere."""

    def __init__(
        self,
        *,
        experiment: ExperimentRun,
        trial: TrialRun,
        uuids: Sequence[str],
        store: Store,
        backend: GpuBackend,
        devices: DeviceTable,
        settings: DaemonSettings,
        trial_dir: Path,
        daemon_env: Mapping[str, str],
        on_end: Callable[[ExperimentRun, TrialRun, str | None, str | None], Awaitable[None]],
        on_release: Callable[[], None] = lambda: None,
        on_result: Callable[[ExperimentRun, TrialRun], None] = lambda exp, trial: None,
        checkpoint_dir: Path | None = None,
        other_sessions: Callable[[], Collection[int]] = frozenset,
    ) -> None:
        self.exp = experiment
        self.trial = trial
        self.uuids = list(uuids)
        self.key = f"{experiment.id}/{trial.number}"
        self._store = store
        self._backend = backend
        self._devices = devices
        self._settings = settings
        self._files = TrialFiles(trial_dir, checkpoint_dir, experiment.umask)
        self._daemon_env = daemon_env
        self._on_end = on_end
        self._on_release = on_release
        self._on_result = on_result
        self._other_sessions = other_sessions  # the sessions of the daemon's other trials
        self._released = False
        self._stop_request: StopRequest | None = None
        self._stop_grace_s = 0.0  # the stop's grace period, from its SIGTERM to its SIGKILL
        # When the stop's SIGTERM went out (anyio's clock): a stop is the trial's outcome only
        # if it was sent; a request that came after the trial ended by itself is not.
        self._terminated_at: float | None = None
        self._wait_scope: anyio.CancelScope | None = None  # the watch's wait, while it waits
        self._stderr_from = 0  # where this attempt's stderr begins in stderr.log
        self.pid: int | None = None

    def __repr__(self) -> str:
        return f"<TrialRunner {self.key} pid={self.pid} state={self.trial.state.value}>"

    def request_stop(self, state: TrialState, reason: str, grace_s: float | None = None, *,
                     by_plugin: bool = False) -> bool:
        """Stop the trial, to be recorded as ``state`` with ``reason`` (see
        :func:`~gpusched._daemon.experiment.stop_outcome`; ``by_plugin``: a stopping plugin or
        the ``stop:`` bound asks). The first request wins: True if this one did."""
        if self._stop_request is not None:
            return False
        self._stop_grace_s = self._settings.grace_period_s if grace_s is None else grace_s
        self._stop_request = StopRequest(state, reason, by_plugin)
        if self._wait_scope is not None:
            self._wait_scope.cancel()  # wake the watch: it sends the signals
        return True

    async def run(self) -> None:
        """Spawn, watch, stop if asked, record the end, release the devices. DaemonShortOf:
        the daemon ran short of a resource of its own to start it (nothing was recorded);
        StoreError: the log refused the start, a batch of reports or the end."""
        trial, spec = self.trial, self.exp.spec
        # Counted once its start is in the log (_record_start): a start the log refuses, whose
        # trainer is stopped at once, is no attempt: GPUSCHED_ATTEMPT and `attempts` count
        # the runs that were recorded.
        attempt = trial.attempts + 1
        run_as = self.exp.run_as
        env = trial_environment(
            daemon_env=self._daemon_env, experiment_env=spec.env, experiment_id=self.exp.id,
            number=trial.number, params=trial.params, files=self._files, uuids=self.uuids,
            metric=spec.metric, run_as=run_as, attempt=attempt,
        )
        parent = self.exp.trials.get(trial.continues) if trial.continues is not None else None
        env.update(budget_environment(trial.budget, continues=trial.continues,
                                      initial=parent.budget if parent else None))
        argv = [*trial_command(spec.command, trial.params),
                *budget_argv(self.exp.search.budget_flag, trial.budget)]
        try:
            made = self._files.create(run_as)
            # A folder made just now holds no report yet: reading starts at the beginning,
            # without looking for files (two failed stats per trial).
            resume_at = trial.read_position
            if resume_at is None and made:
                # Kept in the trial too: a rerun in this daemon (its end refused by the log)
                # must read the files from their start again, not take them as stored.
                resume_at = trial.read_position = ReadPosition(0, None)
            # What an earlier attempt wrote (a retry, a run after an interruption) may hold
            # its status line: not this attempt's.
            status_from = 0 if made else regular_file_size(self._files.reports)
            # A continuation (hyperband's promotion) counts on from the trial it continues.
            first_iteration, last_report = count_start(trial, self.exp.trials)
            collector = ReportCollector(
                self._files, metric_tag=spec.metric, first_iteration=first_iteration,
                resume_at=resume_at, last_report=last_report, status_from=status_from,
                owner=self.exp.trial_owner,
            )
            if not made:  # the same for a crash's last stderr line: this attempt's own
                self._stderr_from = regular_file_size(self._files.stderr)
            proc = await spawn_trial(argv, env=env, cwd=Path(spec.workdir), files=self._files,
                                     run_as=run_as, fresh=made)
        except OSError as exc:
            if exc.errno in _SHORT_OF:
                raise DaemonShortOf(exc, self._files.dir) from exc
            await self._fail_to_start(attempt, self._cannot_start(argv[0], exc, env))
            return
        self.pid = proc.pid
        self._backend.note_trial(proc.pid, self.uuids)
        self._devices.set_session(self.key, self.uuids, proc.pid)
        code: int | None = None
        watched = False
        try:
            await self._record_start(proc, attempt, status_from)
            code = await self._watch(proc, collector)
            watched = True
        finally:
            with anyio.CancelScope(shield=True):
                # No child outlives its trial, whether it ended, was stopped or we are cancelled.
                await self._stop_the_rest(proc, cancelled=code is None)
                if code is None:
                    code = await proc.wait()
                await self._stop_escapees(proc)
                # No process of the trial is left: the release barrier can start while the
                # end is recorded below.
                self._release()
                # When watching failed (the log refused reports, or we are cancelled), no
                # outcome is recorded: one without the refused reports would be wrong. The log
                # still says running, so the trial runs again, reading on from what was stored.
                if watched:
                    # The last reports and the end: one commit (see _finish).
                    mark = self.trial.reports_mark()
                    await self._conclude(code, collector, await self._read_last(collector),
                                         mark)

    async def _fail_to_start(self, attempt: int, reason: str) -> None:
        """Record that the trial's command could not be started (its ``reason``): the attempt
        counts, recorded with that end; not when the log refuses it (the trial runs again)."""
        self.trial.attempts = attempt
        try:
            await self._finish(TrialState.FAILED, reason, None, None)
        except StoreError:
            self.trial.attempts = attempt - 1
            raise

    def _cannot_start(self, program: str, error: OSError, env: Mapping[str, str]) -> str:
        """Why the trial could not be started (``env``: its environment)."""
        spec = self.exp.spec
        if not Path(spec.workdir).is_dir():  # checked at submit: it went away since
            return (f"cannot start: the workdir {spec.workdir} no longer exists (it did at"
                    " submit): restore it, or submit again with another workdir")
        return cannot_start_reason(program, spec.workdir, error, env=env,
                                   path_in_env="PATH" in spec.env,
                                   other_user=self.exp.run_as is not None)

    async def _stop_the_rest(self, proc: TrialProcess, *, cancelled: bool) -> None:
        """Stop what is left of the trial once its leader has exited (at once when the watch
        was cancelled). After a stop's SIGTERM, the rest of that stop's grace period, with no
        second SIGTERM; else SIGTERM, the grace period, SIGKILL."""
        if cancelled:
            await proc.stop(0.0)
        elif self._terminated_at is not None:
            left = self._terminated_at + self._stop_grace_s - anyio.current_time()
            await proc.stop(max(0.0, left), terminated=True)
        else:
            await proc.stop(self._settings.grace_period_s)

    async def _stop_escapees(self, proc: TrialProcess) -> None:
        """Stop processes of the trial that left its session (a daemonizing child calls
        setsid()), found by the GPUSCHED_TRIAL_DIR they inherited: no child outlives its trial.

        Only processes created after the trial's leader can be its own: for a short trial
        those are few, and the check runs on the loop. After a long one, when the pid counter
        could in theory have gone round, everything is read (~1 ms) in a worker thread.
        """
        trial_dir = str(self._files.dir)
        if proc.young():
            # The other trials' sessions cannot hold a process that left this one's (setsid
            # makes a session of its own), nor can the daemon's: their environments, the
            # costly part of the check, are not read.
            others = {*self._other_sessions(), os.getsid(0)} - {proc.pid}
            found = leftover_processes([trial_dir], created_since=proc.pid,
                                       skip_sessions=others)
        else:
            found = await anyio.to_thread.run_sync(leftover_processes, [trial_dir])
        if found:
            log.warning("trial_escapees_stopped", trial=self.key, pids=found[trial_dir])
            await stop_leftovers([trial_dir], self._settings.grace_period_s)

    async def _record_start(self, proc: TrialProcess, attempt: int, status_from: int) -> None:
        """Log that the attempt started; only then does it count in ``trial.attempts``.
        ``attempt``: its number; ``status_from``: where its lines begin in the report file; in
        the event, a restarted daemon knows by it whether a status line the file ends with is
        this attempt's (restore.py), whatever the file's time."""
        trial = self.trial
        await self._store.record_trial(
            self.exp.id, trial.number,
            {"state": TrialState.RUNNING.value, "pid": proc.pid, "devices": self.uuids,
             "attempts": attempt, "started_at": time.time(), "ended_at": None,
             "exit_code": None, "exit_signal": None, "reason": None},
            "trial_started", pid=proc.pid, devices=self.uuids, attempt=attempt,
            status_from=status_from,
        )
        trial.attempts = attempt
        log.info("trial_started", trial=self.key, pid=proc.pid, gpus=self.uuids,
                 attempt=attempt)

    async def _watch(self, proc: TrialProcess, collector: ReportCollector) -> int:
        """Wait for the leader to exit; meanwhile read reports every ``report_poll_s``, and
        stop the trial when asked or at its ``trial_timeout``: SIGTERM to all of it, then
        SIGKILL after the grace period (the processes left after the leader are the caller's).

        One task, woken by the leader's exit, its next deadline, or a stop request (which
        cancels the wait): not a task group of a report loop, a stopper and a timer, whose
        tasks cost more of the event loop than the rest of a short trial's watch.
        """
        poll_s = self._settings.report_poll_s
        timeout_s = self.exp.spec.trial_timeout_s
        now = anyio.current_time()
        next_poll = now + poll_s
        timeout_at = math.inf if timeout_s is None else now + timeout_s
        kill_at = math.inf
        terminated = False
        while True:
            if now >= timeout_at:
                timeout_at = math.inf
                self.request_stop(TrialState.FAILED, f"trial_timeout of {timeout_s:g}s exceeded")
            if self._stop_request is not None and not terminated:
                terminated = True
                proc.signal_all(signal.SIGTERM)
                self._terminated_at = now
                kill_at = now + self._stop_grace_s
                if self._stop_is_kept(self._stop_request):
                    await self._record_stop_sent(self._stop_request)
                    now = anyio.current_time()
            if now >= kill_at:
                kill_at = math.inf
                proc.signal_all(signal.SIGKILL)
            if now >= next_poll:
                await self._ingest(collector)  # may ask for a stop: look again before waiting
                now = anyio.current_time()
                next_poll = now + poll_s
                continue
            with anyio.CancelScope(deadline=min(next_poll, timeout_at, kill_at)) as scope:
                self._wait_scope = scope
                try:
                    return await proc.wait()
                finally:
                    self._wait_scope = None
            now = anyio.current_time()

    def _stop_is_kept(self, stop: StopRequest) -> bool:
        """Whether the log keeps ``stop`` as its SIGTERM goes out. Not an interruption (the
        daemon's shutdown, a lost GPU): the trial runs again, by design. Nor the cancel of its
        whole experiment, or of a failing one: that experiment's own event
        (``experiment_cancel_requested``, ``experiment_failing``) has a restart cancel it."""
        if stop.state is TrialState.INTERRUPTED:
            return False
        return stop.state is not TrialState.CANCELLED or not (
            self.exp.cancelling or self.exp.failure)

    async def _record_stop_sent(self, stop: StopRequest) -> None:
        """Keep ``stop`` in the log (see :data:`STOP_SENT_EVENT`): a daemon killed during its
        grace period concludes the trial by it at its restart, not run it again. Shielded:
        once the SIGTERM is out, the decision is written whatever cancels the watch. A log
        that refuses it changes nothing here: only a crash before the end is recorded would
        then run the trial again, as it did before the log kept stops. ``until``: when its
        grace period ends (wall time): what it reports later, this daemon would never read."""
        with anyio.CancelScope(shield=True):
            try:
                await self._store.add_event(
                    STOP_SENT_EVENT, self.exp.id, self.trial.number, state=stop.state.value,
                    reason=stop.reason, by_plugin=stop.by_plugin, attempt=self.trial.attempts,
                    until=time.time() + self._stop_grace_s)
            except StoreError as exc:
                log.error("trial_stop_not_recorded", trial=self.key, error=str(exc))

    async def _ingest(self, collector: ReportCollector) -> None:
        # Shielded: once the reader has consumed bytes, the reports must reach the log even if
        # the daemon's shutdown cancels the watch in the middle of this poll.
        with anyio.CancelScope(shield=True):
            await self._ingest_now(collector)

    async def _read(self, collector: ReportCollector, *, final: bool
                    ) -> tuple[list[dict[str, Any]], list[str]]:
        """New reports from the trial's files, and their encoding for the log."""
        def read() -> tuple[list[dict[str, Any]], list[str]]:
            new = collector.poll(final)
            return new, encode_reports(new)  # JSON encoding off the event loop, too

        # A few reports are read and encoded faster than a hop to a worker thread and back;
        # only a big batch is worth keeping off the event loop.
        if collector.unread_bytes() <= INLINE_READ_BYTES:
            new, encoded = read()
        else:
            new, encoded = await anyio.to_thread.run_sync(read)
        for problem in collector.take_problems():
            log.warning("report_skipped", trial=self.key, problem=problem)
        return new, encoded

    async def _ingest_now(self, collector: ReportCollector) -> None:
        new, encoded = await self._read(collector, final=False)
        if not new:
            return
        trial = self.trial
        position = collector.position
        await self._store.add_encoded_reports(self.exp.id, trial.number, trial.reports, encoded,
                                              read_to=position)
        trial.read_position = position
        self.exp.take_reports(trial, new)
        if self.exp.watching_metric:  # once a report had the metric, this test alone
            await self._warn_of_the_metric()
        if self._stop_request is None:
            self._consult_stoppers(new)

    async def _warn_of_the_metric(self) -> None:
        """Record the warning that the metric looks misspelled, when the trial's reports
        give it now (:meth:`ExperimentRun.metric_warning`), and log it. A log that refuses it
        only has it given again by a later report: the trial goes on."""
        exp = self.exp
        warning = exp.metric_warning(self.trial)
        if warning is None:
            return
        kind, data = metric_warning_event(exp.spec.metric, warning)
        try:
            await self._store.add_event(kind, exp.id, None, **data)
        except StoreError as exc:
            exp.metric_warning_refused()
            log.error("metric_warning_not_recorded", trial=self.key, error=str(exc))
            return
        exp.metric_warning_recorded()
        log.warning(METRIC_EVENT, trial=self.key, metric=exp.spec.metric, warning=warning)

    async def _read_last(self, collector: ReportCollector) -> ReportBatch | None:
        """The reports the trial wrote since the last poll, taken into the trial for its
        outcome, to be stored with its end; None when there are none. Called in ``run``'s
        shielded clean-up only: a cancellation cannot lose what this reads."""
        new, encoded = await self._read(collector, final=True)
        if not new:
            return None
        trial = self.trial
        batch = ReportBatch(trial.reports, encoded, collector.position)
        trial.read_position = collector.position
        self.exp.take_reports(trial, new)
        return batch

    def _consult_stoppers(self, new: list[dict[str, Any]]) -> None:
        if not self.exp.stoppers:
            return  # no views to build on this hot path when nothing would read them
        view = self.trial.view()
        others = [t.view() for n, t in self.exp.trials.items() if n != self.trial.number]
        for stopper in self.exp.stoppers:
            try:
                reason = stopper.should_stop(view, new, others)
            except Exception as exc:  # a plugin's bug must not take the daemon down
                log.error("stopping_plugin_failed", trial=self.key,
                          plugin=type(stopper).__name__, error=repr(exc))
                continue
            if reason and self.request_stop(TrialState.STOPPED, reason, by_plugin=True):
                return

    async def _conclude(self, code: int, collector: ReportCollector,
                        reports: ReportBatch | None, mark: tuple[Any, ...]) -> None:
        trial, metric = self.trial, self.exp.spec.metric
        objective = objective_of(trial.metric_values, self.exp.spec.objective, self.exp.spec.goal)
        fatal: str | None = None
        stop = self._stop_request
        if stop is not None and self._terminated_at is not None:
            # Stopped: the stop's outcome, whatever its exit (a restart concludes a trial
            # whose stop was sent before a crash by the same rule: see restore.py).
            state, reason, objective = stop_outcome(stop, trial.metric_values, self.exp.spec)
        elif code == 0 and objective is not None:
            state, reason = TrialState.COMPLETED, f"exited 0; {metric} = {objective:g}"
        elif code == 0:
            state, reason = TrialState.FAILED, _without_the_metric(metric, trial.last_report)
        elif collector.status is not None:
            # It said why (a status line): that is its reason, its stderr is not needed.
            kind, said = collector.status
            state, reason, objective = TrialState.FAILED, f"{said} ({describe_exit(code)})", None
            if kind == "fatal":
                fatal = said
        else:
            # A crash: read only now, on the failure path, its stderr's last line says why.
            last_line = self._last_stderr_line()
            state, reason = TrialState.FAILED, describe_exit(code, last_line)
            reason += budget_flag_hint(code, last_line, self.exp.search.budget_flag,
                                       trial.budget, self.exp.spec.search_algorithm)
            objective = None
            if stop is not None:
                # It crashed as a stop was asked for (a cancel in the moment its leftovers were
                # being stopped): the stop wins over a retry, with what happened in its reason.
                state, reason = stop.state, f"{stop.reason} (it had {reason})"
            elif trial.failures < self.exp.spec.max_retries_per_trial:
                # A crash is retried (same params, same checkpoint folder); a trial that said
                # it failed (FailedTrialError, a status line) or was stopped by us is not.
                trial.failures += 1
                limit = self.exp.spec.max_retries_per_trial
                state = TrialState.QUEUED
                reason = f"{reason}; retry {trial.failures} of {limit}"
        await self._finish(state, reason, code, objective, fatal, reports=reports, mark=mark)

    def _last_stderr_line(self) -> str | None:
        """The last meaningful line this attempt wrote to its stderr, if any (read on the event
        loop: a few KiB of a local file, once per crash, cost less than a thread hop)."""
        return last_stderr_line(self._files.stderr, start=self._stderr_from,
                                owner=self.exp.trial_owner)

    async def _finish(
        self, state: TrialState, reason: str, code: int | None, objective: float | None,
        fatal: str | None = None, *, reports: ReportBatch | None = None,
        mark: tuple[Any, ...] | None = None,
    ) -> None:
        """Record the end (with ``reports``, the last ones) and hand the trial back. ``mark``:
        the trial's report state before ``reports`` were taken in (``TrialRun.reports_mark``):
        if the log refuses the end, the trial runs again and must read them again."""
        trial, exp = self.trial, self.exp
        trial.state, trial.objective = state, objective
        trial.at_bound = stopped_at_bound(state, reason)
        trial.at_length_bound = trial.at_bound and stopped_at_a_length_bound(state, reason)
        # Decided here, with the state and before any await: a trial ending meanwhile does not
        # warn about the same keys. Without stop: keys (or once each was seen), one test.
        unreported = exp.unreported_stop_keys(trial) if exp.unseen_stop_keys else []
        if state in (TrialState.COMPLETED, TrialState.STOPPED):
            # A result, and no failure rule to judge: the experiment's next trial may be asked
            # for now, seeing this one's outcome, while it is written. The log's one writer
            # takes writes in order, so the next trial's row (hence its start) follows this end.
            self._on_result(self.exp, trial)
        exit_code = code if code is not None and code >= 0 else None
        exit_signal = -code if code is not None and code < 0 else None
        retrying = state is TrialState.QUEUED
        # A failure rule's decision is made now and written with the end, in one commit: a
        # daemon killed between two commits restarted with the failed trial and no decision,
        # and went on (a restart does not judge the rules again). Set before the write, so
        # that a trial ending meanwhile does not decide it a second time.
        failing = exp.failing_after(trial, fatal, reason)
        if failing is not None:
            exp.failure = failing
        # The warnings of stop: keys never reported go in that commit too: a restart takes a
        # judged end in the log for its warnings' having been given, so a daemon killed
        # between the end and a later write of them never gave them.
        warnings = (stop_key_warnings(unreported, self.key, trial.last_report)
                    if unreported else ())
        # A trial that ended by itself with fewer reports than the watch waits for (or whose
        # last ones came with its end) is looked at now; after the failure rules, which a
        # failing experiment's reason answers for (it says what the trial reported).
        metric_warning = (exp.metric_warning(trial, ended=state not in _CUT_SHORT)
                          if exp.watching_metric else None)
        if metric_warning is not None:
            warnings += (metric_warning_event(exp.spec.metric, metric_warning),)
        events = warnings if failing is None else (
            ("experiment_failing", {"reason": failing}), *warnings)
        try:
            await self._store.record_trial(
                exp.id, trial.number,
                {"state": state.value, "reason": reason, "objective": objective,
                 "exit_code": exit_code, "exit_signal": exit_signal, "ended_at": time.time(),
                 "attempts": trial.attempts},
                "trial_retrying" if retrying else "trial_ended", reports=reports,
                experiment_events=events, state=state.value, reason=reason,
                exit_code=exit_code, exit_signal=exit_signal, attempt=trial.attempts,
            )
        except StoreError:
            if mark is not None:
                trial.back_to(mark)
            if failing is not None and exp.failure == failing:
                exp.failure = None  # not recorded: the trial runs again, and decides again
            exp.unseen_stop_keys.update(unreported)  # likewise: judged again at its end
            if metric_warning is not None:
                exp.metric_warning_refused()
            raise
        if metric_warning is not None:
            exp.metric_warning_recorded()
        log.info("trial_ended", trial=self.key, state=state.value, reason=reason,
                 objective=objective)
        for kind, warned in warnings:  # recorded: now in the daemon's log too
            if kind == METRIC_EVENT:
                log.warning(METRIC_EVENT, trial=self.key, metric=warned["metric"],
                            warning=warned["reason"])
            else:
                log.warning(STOP_KEY_EVENT, trial=self.key, key=warned["key"],
                            warning=warned["reason"])
        self._release()
        await self._on_end(exp, trial, fatal, failing)

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self.trial.processes_gone = True
            self._devices.release(self.key, self.uuids)
            self._on_release()

