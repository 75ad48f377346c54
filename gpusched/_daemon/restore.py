"""Reading experiments back from the trial log: after a restart, and for ``resume_from``.

The log is the source of truth: what the scheduler holds in memory at start is rebuilt here,
so the search plugins (pure functions of these views) continue the same search.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from gpusched._daemon.experiment import (
    AUTO_FILLED_KEYS,
    METRIC_EVENT,
    STOP_KEY_EVENT,
    ExperimentRun,
    PriorTrials,
    StopRequest,
    TrialRun,
    judged_end,
    objective_of,
    stop_outcome,
    stopped_at_a_length_bound,
    stopped_at_bound,
)
from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.report_collector import ReportCollector, count_start
from gpusched._daemon.reports import StatusLine, status_at_end
from gpusched._daemon.store import ReadPosition, Store, encode_reports
from gpusched._daemon.trial_runner import STOP_SENT_EVENT, stop_key_warnings
from gpusched._spec_check import Problems
from gpusched.log import get_logger
from gpusched.models import ExperimentState, TrialState
from gpusched.plugin_api import TrialView
from gpusched.spec import ExperimentSpec

__all__ = ["ended_experiment", "prior_trials", "restore_trials", "RUN_STARTS"]

log = get_logger("gpusched.restore")
INTERRUPTED_REASON = "the daemon went down while it ran"
# In the reason of a trial that ended, as its status line said, while no daemon watched it.
UNKNOWN_EXIT = "exit code not known: it ended while the daemon was down"
# The events that begin a run of an experiment (after them, whatever was decided before is
# undone: the scheduler restores by them too), and those that decide its end.
RUN_STARTS = ("experiment_submitted", "experiment_resumed")
_END_DECIDED = ("experiment_failing", "experiment_cancel_requested")
# States in which a killed daemon may have left an attempt of the trial running.
_MAY_HAVE_RUN = (TrialState.RUNNING, TrialState.QUEUED, TrialState.INTERRUPTED)
# The states a kept stop (STOP_SENT_EVENT) can ask for, by name: an interruption is never kept.
_KEPT_STOPS = {s.value: s for s in (TrialState.STOPPED, TrialState.FAILED, TrialState.CANCELLED)}


async def ended_experiment(store: Store, name: str, place: str, p: Problems, *,
                           submitter_uid: int | None = None) -> str | None:
    """The id of the experiment that ``resume_from: name`` names for its submitter
    ``submitter_uid`` (the newest of theirs with that name, else the newest of anyone's:
    :meth:`~gpusched._daemon.store.Store.experiment`), or None, with the problem at
    ``place`` in ``p``, when it names none or one that has not ended: what the search learns
    from must not change under it while it runs.

    The id, not the name, is what the new experiment stores: a name means the newest
    experiment with that name *now*, and after a restart it could name another (the new one
    itself, if it has the same name), whose history the search would then see."""
    row = await store.experiment(name, caller_uid=submitter_uid)
    if row is None:
        p.add(place, f"no experiment '{name}' (`gpusched ls --all` lists them)")
        return None
    if row["state"] in (ExperimentState.QUEUED.value, ExperimentState.RUNNING.value):
        p.add(place, f"{row['id']} is still {row['state']}: wait until it ends"
                     f" (`gpusched wait {row['id']}`), then submit this again")
        return None
    return str(row["id"])


async def prior_trials(store: Store, spec: ExperimentSpec) -> PriorTrials:
    """The finished trials of the experiment ``spec`` resumes from (none without one).

    They are numbered -N ... -1 in their own order (the last is -1), so that they never
    collide with the new experiment's own and a plugin that weighs recent trials more (TPE)
    sees the earlier experiment's last trials as its most recent ones.
    Their results are taken again by this experiment's ``metric``, ``objective`` and ``goal``
    (the earlier experiment may have optimised another metric, or the best instead of the last
    value): a trial that never reported this metric teaches nothing and is left out.
    When none is left, what its trials were comes along, for the submit's warning
    (:func:`~gpusched._daemon.experiment.resume_from_warning`): how they ended, and what they
    reported.
    """
    if not spec.resume_from:
        return PriorTrials()
    row = await store.experiment(spec.resume_from)
    if row is None:
        log.warning("resume_from_missing", resume_from=spec.resume_from)
        return PriorTrials()  # deleted from the log since the submit: nothing to learn from
    rows = await store.trials(row["id"])
    series = await store.metric_series(row["id"], [r["number"] for r in rows], spec.metric)
    views: list[TrialView] = []
    for r in rows:
        state = TrialState(r["state"])
        if state not in (TrialState.COMPLETED, TrialState.STOPPED):
            continue
        pairs = series.get(r["number"], [])
        values = [v for _, v in pairs]
        objective = objective_of(values, spec.objective, spec.goal)
        if objective is not None:
            views.append(TrialView(
                number=0, params=r["params"], state=state,
                objective=objective, metric_values=tuple(values),
                metric_steps=tuple(s for s, _ in pairs), at_bound=_at_bound(r)))
    if views:
        return PriorTrials(replace(v, number=i - len(views)) for i, v in enumerate(views))
    # Nothing to learn from: what the warning needs to say why (one more query, only then).
    last = await store.last_reports(row["id"])
    return PriorTrials(ended=Counter(r["state"] for r in rows),
                       reported={k for report in last.values() for k in report
                                 if k not in AUTO_FILLED_KEYS},
                       metric_reported=any(series.values()))


def _at_bound(row: dict[str, Any]) -> bool:
    """Whether the logged trial was stopped by its experiment's ``stop:`` bound (its reason
    says so: the log keeps no other trace of which stopper stopped it)."""
    return stopped_at_bound(TrialState(row["state"]), row["reason"])


def read_position(row: dict[str, Any]) -> ReadPosition | None:
    """Where the log says reading of a trial's report files stopped (None: not known, for a
    trial logged by a gpusched that did not keep positions and that had reports)."""
    if row["report_offset"] or row["hypertune_ts"] is not None or not row["reports"]:
        return ReadPosition(row["report_offset"], row["hypertune_ts"])
    return None


async def restore_trials(
    store: Store, exp: ExperimentRun, stopped: Mapping[str, list[int]] | None = None
) -> None:
    """Fill ``exp`` with its trials from the log.

    A trial still ``running`` in the log was cut off by a crash. What it reported after the
    last batch the dead daemon stored (while the daemon was down, too) is read from its files
    and stored; it is recorded ``interrupted`` and, like one interrupted by a graceful stop or
    never started, queued to run again with its params and checkpoint folder. ``stopped``:
    trial folder -> the pids of its leftover processes that were stopped (see recovery.py).

    But two attempts are concluded instead, and not run again: one that gpusched had sent
    its stop (a stopping plugin, the ``stop:`` bound, its trial_timeout, a cancel of it, the
    time_budget: its ``trial_stop_sent`` event) is recorded with that stop's outcome, as the
    daemon that sent it would have (:func:`_concluded_by_its_stop`); one that ended on its own
    saying how (its report file ends with its status line) is recorded as it said:
    ``failed`` (see :func:`_said_at_its_end`). The ``stop:`` keys the log settled are no
    longer watched (:func:`_settle_stop_keys`), nor is the metric's name once the log has it
    or its warning (:func:`_settle_metric`).
    """
    stopped = stopped or {}
    rows = await store.trials(exp.id)
    series = await store.metric_series(exp.id, [r["number"] for r in rows], exp.spec.metric)
    retried = await store.event_counts(exp.id, "trial_retrying")
    endings: list[_Ending] = []
    for r in rows:
        state = TrialState(r["state"])
        pairs = series.get(r["number"], [])
        trial = TrialRun(number=r["number"], params=r["params"], state=state,
                         budget=r["budget"], continues=r["continues"],
                         objective=r["objective"], at_bound=_at_bound(r),
                         at_length_bound=stopped_at_a_length_bound(state, r["reason"]),
                         attempts=r["attempts"],
                         failures=retried.get(r["number"], 0),
                         reports=r["reports"], metric_values=[v for _, v in pairs],
                         metric_steps=[s for s, _ in pairs], read_position=read_position(r))
        if r["reports"]:
            # As the undisturbed daemon shows it: a plugin reading last_report decides alike.
            trial.last_report = await store.last_report(exp.id, trial.number) or {}
        exp.trials[trial.number] = trial
        pids = stopped.get(r["dir"], [])
        if state in _MAY_HAVE_RUN:
            ending = await _cut_off(store, exp, trial, r, pids)
            if ending is not None:
                endings.append(ending)
        elif pids:
            # Its outcome is recorded; what was stopped were stragglers of it.
            log.warning("finished_trial_processes_stopped", trial=f"{exp.id}/{trial.number}",
                        state=state.value, stopped_pids=pids)
        if trial.state in (TrialState.INTERRUPTED, TrialState.QUEUED):
            trial.objective = None  # it runs again: its result comes from that run
            exp.requeued.append(trial.number)
    # Settled before the endings are recorded, without them (the log still has them running):
    # a concluded trial warns of the keys that the daemon that stopped it would have.
    await _settle_stop_keys(store, exp, concluding={e.trial.number for e in endings})
    await _settle_metric(store, exp)
    if endings:
        await _record_endings(store, exp, endings)


async def _settle_stop_keys(store: Store, exp: ExperimentRun,
                            concluding: Collection[int] = ()) -> None:
    """Take out of ``exp.unseen_stop_keys`` (full, as the experiment was just made) what the
    log settled before: every key once a trial of the log had a judged end (each key was
    reported or warned about then: a warning commits with that end), else each key that a
    stored report (of any trial, any attempt, any end) gives a number. A key the log holds is
    then never warned about as never reported. ``concluding``: the trials whose ends this
    restart records (their judged ends are not the log's yet)."""
    unseen = exp.unseen_stop_keys
    if not unseen:
        return
    if any(judged_end(t) for n, t in exp.trials.items() if n not in concluding):
        unseen.clear()
        return
    unseen.difference_update(await store.keys_reported(exp.id, unseen))


async def _settle_metric(store: Store, exp: ExperimentRun) -> None:
    """Stop watching for a misspelled metric (``exp.watching_metric``, set as the experiment
    was just made) when the log settled it: a trial has a value of the metric (what restore
    read), the warning was given (its event), or a stored report has the metric's key (a
    value that is not a finite number: the name is right all the same). Each asked only when
    the one before says nothing, the costliest last: the log's reports are read only for an
    experiment none of whose trials has reported a number for its metric yet."""
    if not exp.watching_metric or any(t.metric_values for t in exp.trials.values()):
        exp.watching_metric = False
        return
    if (await store.last_event(exp.id, (METRIC_EVENT,)) is not None
            or await store.keys_reported(exp.id, [exp.spec.metric], numbers_only=False)):
        exp.watching_metric = False


@dataclass(frozen=True)
class _Ending:
    """A cut-off attempt whose outcome is known without running it again: its stop had been
    sent, or it ended on its own as its status line said. Its trial's state and objective are
    set; the rest is to be recorded."""

    trial: TrialRun
    reason: str
    fatal: str | None  # a fatal status line's reason (it fails the experiment)
    ended_at: float
    stopped_pids: list[int]
    recovered: int


class _Attempt(NamedTuple):
    """What the log's events say of a running trial's last attempt (since its start)."""

    status_from: int | None = None  # where its lines begin in the report file
    stop: StopRequest | None = None  # the stop it was sent, if it was
    stop_until: float | None = None  # when that stop's grace period ended (wall time)


async def _cut_off(store: Store, exp: ExperimentRun, trial: TrialRun, row: dict[str, Any],
                   pids: list[int]) -> _Ending | None:
    """Conclude an attempt of ``trial`` that may have been cut off by a crash: read what it
    reported; record it ``interrupted`` (it runs again), or, when its stop had been sent or
    it ended saying how, set its outcome and hand that back (the failure rules judge it once
    all trials are read)."""
    state = TrialState(row["state"])
    files = TrialFiles(Path(row["dir"]))
    # A queued or interrupted trial may have been started again by a daemon killed before
    # it could record that: its files are read as well.
    # The attempt that was running started when the log says, its lines where it says; one
    # that the log never recorded, at a time and a place it does not know.
    running = state is TrialState.RUNNING
    started_at = row["started_at"] if running else None
    attempt = await _last_attempt(store, exp.id, trial.number) if running else _Attempt()
    # A stopped one's reports count up to the end of its stop's grace period only: the live
    # daemon would have killed it then.
    recovered = await _read_what_is_left(store, exp, trial, files, started_at,
                                         until=attempt.stop_until)
    if attempt.stop is not None:
        # Whatever it did after (a status line, an exit 0), as for the daemon that sent it.
        return _concluded_by_its_stop(exp, trial, attempt.stop, pids, recovered)
    said = _said_at_its_end(files, row, pids, exp.trial_owner, attempt.status_from)
    if not running and (pids or recovered or said):
        # An attempt ran that the log never recorded (its reports past the stored
        # position can be no one else's: a recorded end reads them all; nor can a status
        # line written since its row's last time): it counts.
        trial.attempts += 1
    if said is not None:
        trial.state, trial.objective, trial.at_bound = TrialState.FAILED, None, False
        trial.at_length_bound = False
        fatal = said.reason if said.status == "fatal" else None
        return _Ending(trial, f"{said.reason} ({UNKNOWN_EXIT})", fatal, said.written_at, pids,
                       recovered)
    if running or pids or recovered:
        trial.state = TrialState.INTERRUPTED
        # Its end, as a graceful stop records one: a status line that the attempt wrote
        # before it was stopped here is then older than the row's last time, and a later
        # restart (before the trial ran again) does not take it for how it ended.
        await store.record_trial(
            exp.id, trial.number, {"state": "interrupted", "reason": INTERRUPTED_REASON,
                                   "attempts": trial.attempts, "ended_at": time.time()},
            "trial_interrupted", reason=INTERRUPTED_REASON, stopped_pids=pids,
            reports_recovered=recovered)
        log.info("trial_interrupted", trial=f"{exp.id}/{trial.number}",
                 stopped_pids=pids, reports_recovered=recovered)
    return None


def _concluded_by_its_stop(exp: ExperimentRun, trial: TrialRun, stop: StopRequest,
                           pids: list[int], recovered: int) -> _Ending:
    """The end of an attempt whose stop's SIGTERM went out before the crash: that stop's
    outcome (:func:`~gpusched._daemon.experiment.stop_outcome`, the live daemon's rule), from
    what it reported (stored, and read from its files just now). Its exit is not known, nor
    needed: a stop sent decides the outcome whatever the exit. It ended by now (its leftovers
    were stopped), hence its time."""
    state, reason, objective = stop_outcome(stop, trial.metric_values, exp.spec)
    trial.state, trial.objective = state, objective
    trial.at_bound = stopped_at_bound(state, reason)
    trial.at_length_bound = trial.at_bound and stopped_at_a_length_bound(state, reason)
    return _Ending(trial, reason, None, time.time(), pids, recovered)


async def _last_attempt(store: Store, exp_id: str, number: int) -> _Attempt:
    """What the events of the trial's last recorded attempt say: where its report file's lines
    begin, as its ``trial_started`` event has it (the file's size at its start; None for a log
    written by a gpusched that did not record it), and the stop it was sent (the first
    ``trial_stop_sent`` since). One query, for a trial the log has running only."""
    events = await store.events(exp_id, number)
    starts = [i for i, e in enumerate(events) if e["kind"] == "trial_started"]
    if not starts:
        return _Attempt()
    at = events[starts[-1]]["data"].get("status_from")
    stops = ((_kept_stop(e["data"]), e["data"].get("until")) for e in events[starts[-1] + 1:]
             if e["kind"] == STOP_SENT_EVENT)
    stop, until = next(((s, u) for s, u in stops if s is not None), (None, None))
    return _Attempt(at if type(at) is int else None, stop,
                    float(until) if isinstance(until, int | float) else None)


def _kept_stop(data: Mapping[str, Any]) -> StopRequest | None:
    """The stop a ``trial_stop_sent`` event keeps; None for one that is not a stop's (a log
    edited by hand): the trial then runs again, the safe side."""
    state, reason = data.get("state"), data.get("reason")
    if not isinstance(state, str) or state not in _KEPT_STOPS or not isinstance(reason, str):
        return None
    return StopRequest(_KEPT_STOPS[state], reason, data.get("by_plugin") is True)


def _said_at_its_end(files: TrialFiles, row: dict[str, Any], pids: list[int],
                     owner: int | None, status_from: int | None) -> StatusLine | None:
    """How the cut-off attempt said it ended, when it ended on its own: None unless its report
    file ends with a status line (``failed`` or ``fatal``) that it wrote, and it exited.

    - It exited: its leader (the pid the log has) is not among the processes stopped now.
      One stopped now ended by this daemon's hand, whatever it said, and runs again. The
      leader of an attempt the log never recorded is not known: none of its may be left.
    - It wrote that line: see :func:`_written_by_it`.
    Its exit code is not known (it was not this daemon's child), nor so whether it exited
    non-zero, as a status line asks; a line with nothing after it is taken to say it did.
    """
    leader = row["pid"] if TrialState(row["state"]) is TrialState.RUNNING else None
    if (leader in pids) if leader is not None else bool(pids):
        return None
    said = status_at_end(files.reports, owner)
    if said is None or not _written_by_it(said, row, status_from):
        return None
    return said


def _written_by_it(said: StatusLine, row: dict[str, Any], status_from: int | None) -> bool:
    """Whether the attempt that the restart concludes wrote the status line ``said``.

    ``status_from``: where its lines begin in the file, as its start was logged. The line
    begins there or later; or the file is now shorter than that, rewritten by the attempt
    (a trainer that opens it with ``"w"``): all of it is then its own, as for the live reader.
    A rewrite that ends past ``status_from`` with the line before it is not seen, and the
    trial runs again (the safe side).

    Without it (a log from before gpusched recorded it, or an attempt whose start the log
    never recorded), by time: the file was last written at or after the last time the log has
    for the trial (the attempt's start; an earlier attempt's end, or the end an earlier restart
    recorded for an attempt it stopped). No two attempts run at once, so an earlier attempt's
    line was written before then. The file's time is the kernel's coarse clock (a few ms): a
    line written within the same tick as the spawn may seem older than the start, and is not
    taken (the trial runs again: the safe side).
    """
    if status_from is not None:
        return said.at >= status_from or said.size < status_from
    since = max((t for t in (row["started_at"], row["ended_at"]) if t is not None),
                default=None)
    return since is None or said.written_at >= since


async def _record_endings(store: Store, exp: ExperimentRun, endings: list[_Ending]) -> None:
    """Record each ending with its trial's state and objective and its reason, and with it
    (as the daemon that saw it end would have: see TrialRunner._finish) the failure rules'
    decision for a failed one (an ``experiment_failing`` event: a fatal error fails the
    experiment) and the warnings of ``stop:`` keys never reported for a judged end. Judged once
    all trials are read, as the rules look at the others. A decision made before the crash (a
    rule fired, a cancel) stands, and only the first is made: no trial's end decides again.
    Its exit code is not known: the restarted daemon was not its parent."""
    decided = await _end_decided(store, exp.id)
    for ending in endings:
        trial = ending.trial
        key = f"{exp.id}/{trial.number}"
        failing = None if decided else exp.failing_after(trial, ending.fatal, ending.reason)
        # The scheduler takes the decision up from its event, as one made before the crash.
        decided = decided or failing is not None
        unreported = exp.unreported_stop_keys(trial)
        warnings = stop_key_warnings(unreported, key, trial.last_report) if unreported else ()
        events = warnings if failing is None else (
            ("experiment_failing", {"reason": failing}), *warnings)
        await store.record_trial(
            exp.id, trial.number,
            {"state": trial.state.value, "reason": ending.reason, "objective": trial.objective,
             "exit_code": None, "exit_signal": None, "ended_at": ending.ended_at,
             "attempts": trial.attempts},
            "trial_ended", experiment_events=events, state=trial.state.value,
            reason=ending.reason, exit_code=None, exit_signal=None, attempt=trial.attempts,
            stopped_pids=ending.stopped_pids, reports_recovered=ending.recovered)
        log.info("trial_ended", trial=key, state=trial.state.value, reason=ending.reason,
                 objective=trial.objective, reports_recovered=ending.recovered)
        for _, warned in warnings:  # recorded: now in the daemon's log too
            log.warning(STOP_KEY_EVENT, trial=key, key=warned["key"], warning=warned["reason"])


async def _end_decided(store: Store, exp_id: str) -> bool:
    """Whether a failure rule fired, or a cancel was asked, since the experiment's last
    submit or resume (as the scheduler reads them back at a restart)."""
    last = await store.last_event(exp_id, (*RUN_STARTS, *_END_DECIDED))
    return last is not None and last["kind"] in _END_DECIDED


async def _read_what_is_left(
    store: Store, exp: ExperimentRun, trial: TrialRun, files: TrialFiles,
    started_at: float | None, *, until: float | None = None,
) -> int:
    """Store the reports in the trial's files past what the log has; how many there were.
    ``started_at``: when the attempt that wrote them started, if the log knows. ``until``:
    take only those known to have been written by then (the rest are read past): by their
    own times, and a line without one by the report file's last write."""
    if trial.read_position is None or not (files.reports.exists() or files.hypertune.exists()):
        return 0
    # Its last write, before the read: no line read below was written after it (the
    # attempt's processes are gone by now).
    untimed_at = _last_write(files.reports) if until is not None else None
    # Their time_total_s goes on from the stored reports', at their own times (_t), not at the
    # time of this restart; a continuation's, from the trial it continues (read before it: the
    # log's trials come by number, and a trial continues only an earlier one).
    first_iteration, last_report = count_start(trial, exp.trials)
    collector = ReportCollector(files, metric_tag=exp.spec.metric,
                                first_iteration=first_iteration, resume_at=trial.read_position,
                                last_report=last_report, started_at=started_at,
                                owner=exp.trial_owner)
    new = collector.poll(final=True, until=until, untimed_at=untimed_at)
    position = collector.position
    await store.add_encoded_reports(exp.id, trial.number, trial.reports, encode_reports(new),
                                    read_to=position)
    trial.read_position = position
    trial.take_reports(new, exp.spec.metric)
    return len(new)


def _last_write(path: Path) -> float | None:
    """When ``path`` was last written (None: it is not there, or not to be read)."""
    try:
        return path.lstat().st_mtime
    except OSError:
        return None
