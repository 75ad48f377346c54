"""One experiment as the scheduler holds it in memory: a mirror of its rows in the trial log.

The log is the source of truth; this mirror exists so that placement and plugin calls never
wait on SQLite. It is rebuilt from the log at start, so a restarted daemon continues the same
search (plugins are pure functions of the views built here).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import shlex
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, overload

from gpusched._daemon.identity import RunAs
from gpusched._daemon.store import ReadPosition
from gpusched._spec_check import closest, did_you_mean
from gpusched._spec_stop_keys import AUTO_FILLED_KEYS
from gpusched._spec_yaml import load_text
from gpusched.models import (
    TERMINAL_TRIAL_STATES,
    ExperimentState,
    Goal,
    ObjectiveRule,
    TrialState,
)
from gpusched.plugin_api import (
    BOUND_STOP_REASON,
    ParamType,
    ParamValue,
    SearchPlugin,
    SearchSpace,
    StoppingPlugin,
    TrialView,
    Wait,
    as_suggestion,
)
from gpusched.spec import DEFAULT_MAX_TRIALS, ExperimentSpec

__all__ = ["TrialRun", "ExperimentRun", "History", "objective_of", "stopped_at_bound",
           "stopped_at_a_length_bound", "StopRequest", "StopOutcome", "stop_outcome",
           "resume_from_warning", "PriorTrials", "AUTO_FILLED_KEYS", "STOP_KEY_EVENT",
           "stop_keys_to_watch", "see_stop_keys", "points_taken", "judged_end", "PointsPlan",
           "plan_points", "points_problem", "PLAN_STEPS", "keys_shown", "METRIC_EVENT",
           "METRIC_REPORTS", "metric_warning_text", "set_advice", "metric_misspelled_as"]

# The most trials a dry run of a search with points_to_evaluate asks for (plan_points): the
# built-in searches answer in time that grows with the history, so this is ~0.7 s for a grid.
PLAN_STEPS = 1000
# The experiment's event that warns of a stop: key its trials never report (one of the
# store's WARNING_EVENTS, which `gpusched show EXP` lists however old they are).
STOP_KEY_EVENT = "stop_key_never_reported"
# The experiment's event that warns, while its trials run, that they report a key close to the
# metric's name but never the metric (another of the store's WARNING_EVENTS).
METRIC_EVENT = "metric_never_reported"
# How many reports of a trial without the metric (none of any trial's having had it) it takes
# to warn of a close key (ExperimentRun.metric_warning): a trainer may report a training loss
# every step and the metric only every epoch, so the first report alone says little; and one
# reporting the close key every epoch has shown it by the third.
METRIC_REPORTS = 3
_SHOWN_KEYS = 8  # the keys a message lists of a report (then "...")
# The most characters of a failed trial's reason that an experiment's failure repeats: a
# reason with its report's keys and a guess (~150) fits whole; `gpusched ls EXP` has it all.
_FAILED_REASON_CHARS = 240
_CUT = " ... "
# How alike two words must be to be one mistyped (did you mean's bar, difflib's default).
_ALIKE = 0.6


def stopped_at_bound(state: TrialState, reason: str | None) -> bool:
    """Whether a trial that ended in ``state`` with ``reason`` was stopped by its experiment's
    ``stop:`` bound (:attr:`TrialView.at_bound`): the bound's reason says so, live and in the
    log alike (the log keeps no other trace of which stopper stopped it)."""
    return state is TrialState.STOPPED and (reason or "").startswith(BOUND_STOP_REASON)


def stopped_at_a_length_bound(state: TrialState, reason: str | None) -> bool:
    """Whether the ``stop:`` bound that stopped the trial was one on how long it ran (an
    auto-filled key: ``training_iteration``, ``time_total_s``...), not on a metric: such a
    trial ran the whole course its user set, and its reports say which keys it ever gives."""
    if not stopped_at_bound(state, reason):
        return False
    # The bounds plugin's reason: "stop bound reached: training_iteration=3 >= 3".
    key = re.match(r"[^=\s]*", (reason or "")[len(BOUND_STOP_REASON):])
    return key is not None and key.group() in AUTO_FILLED_KEYS


class PriorTrials(list[TrialView]):
    """The finished trials of the experiment that an experiment resumes from, with a result
    for its metric: what its search learns from (``restore.prior_trials`` reads them). When
    there is none, also what the earlier experiment's trials were instead, for
    :func:`resume_from_warning` to say why.

    A list, as the search's history takes it; what it adds is read by the warning alone.
    """

    def __init__(self, views: Iterable[TrialView] = (), *,
                 ended: Mapping[str, int] | None = None, reported: Collection[str] = (),
                 metric_reported: bool = False) -> None:
        super().__init__(views)
        #: state -> how many of the earlier experiment's trials ended in it (all of them)
        self.ended: Mapping[str, int] = Counter(ended or {})
        #: the keys their last reports gave, the auto-filled ones left out
        self.reported: tuple[str, ...] = tuple(sorted(reported))
        #: whether any of their reports gave the metric a number (a failed trial's, too)
        self.metric_reported = metric_reported


def resume_from_warning(spec: ExperimentSpec, prior: PriorTrials) -> str | None:
    """What the submit answer warns when the search of ``spec`` can learn nothing from its
    ``resume_from`` (``prior``: that experiment's finished trials with a result for this
    experiment's metric), or None when one of them can teach it: a trial whose params are a
    point of this search space (the built-in searches ignore the others)."""
    if spec.resume_from is None:
        return None
    space = spec.space()
    first = None
    for trial in prior:
        problem = space.problem_with(_as_integers(space, trial.params))
        if problem is None:
            return None
        first = first or problem
    scratch = ("so the search has nothing to learn from it and starts from scratch, as without"
               " resume_from")
    if first is None:
        return _nothing_finished(spec, prior, scratch)
    return (f"resume_from: none of the {len(prior)} finished trials of {spec.resume_from} has"
            f" params that fit this experiment's (the first: {first}), {scratch}. To learn"
            " from it, make this experiment's params (their names, ranges and values) take in"
            " the values its trials ran with; else drop resume_from")


def _nothing_finished(spec: ExperimentSpec, prior: PriorTrials, scratch: str) -> str:
    """The warning for a ``resume_from`` with no finished trial that has a result for this
    metric: it ran none; none finished (they failed, or were cancelled); or those that
    finished never reported the metric (named otherwise: the closest name they reported)."""
    earlier, metric = spec.resume_from, spec.metric
    # Reported, but never as a finite number (text, NaN): said so, not "did you mean" itself.
    named = f"a finite '{metric}'" if metric in prior.reported else f"'{metric}'"
    total = sum(prior.ended.values())
    finished = prior.ended.get(TrialState.COMPLETED.value, 0) + prior.ended.get(
        TrialState.STOPPED.value, 0)
    if not total:
        return (f"resume_from: {earlier} ran no trial, {scratch}. Resume from an experiment"
                " whose trials have results, or drop resume_from")
    if not finished:  # how they ended is why, not their metric's name
        unnamed = "" if prior.metric_reported else (
            f"; nor did any report {named}{keys_shown(metric, prior.reported, who='they')}")
        return (f"resume_from: {_how_they_ended(earlier, prior.ended)}{unnamed}, {scratch}."
                f" Resume from an experiment whose trials have results (`gpusched ls"
                f" {earlier}` says why these ended), or drop resume_from")
    return (f"resume_from: {earlier} has no finished trial (completed, or stopped) that"
            f" reported {named}{keys_shown(metric, prior.reported, who='its trials')},"
            f" {scratch}. To learn from it, if its trials reported the metric under another"
            f" name (`gpusched show {earlier}/0` shows a trial's last report), set metric to"
            " that name; else drop resume_from")


def _how_they_ended(earlier: str | None, ended: Mapping[str, int]) -> str:
    """``the 9 trials of e1 all failed: none has a result``, or with each state's count when
    they ended in several (``7 failed, 2 cancelled``)."""
    total = sum(ended.values())
    if len(ended) == 1:
        state = next(iter(ended))
        if total == 1:
            return f"the one trial of {earlier} {_ended_as(state)}: it has no result"
        return f"the {total} trials of {earlier} all {_ended_as(state)}: none has a result"
    counts = ", ".join(f"{n} {state}" for state, n in sorted(ended.items(), key=lambda i: -i[1]))
    return f"none of the {total} trials of {earlier} has a result ({counts})"


def _ended_as(state: str) -> str:
    """How trials in ``state`` ended, as a verb: ``failed``, ``cancelled``, ``interrupted``;
    a state that is no verb's past tense reads ``ended queued``."""
    return state if state in ("failed", "cancelled", "interrupted") else f"ended {state}"


def keys_shown(wanted: str, keys: Sequence[str], *, who: str = "it",
               guess: str | None = None) -> str:
    """`` (it reported loss, val_accuracy) (did you mean 'val_accuracy'?)``: ``keys`` (sorted,
    what a trainer reported itself), the first few of them, and the closest to ``wanted``
    (unless it is among them; ``guess``: the one to name instead); ``""`` when there are
    none."""
    if not keys:
        return ""
    shown = ", ".join(keys[:_SHOWN_KEYS]) + (", ..." if len(keys) > _SHOWN_KEYS else "")
    if guess is not None:
        said = f" (did you mean {guess!r}?)"
    else:
        said = "" if wanted in keys else did_you_mean(wanted, keys)
    return f" ({who} reported {shown}){said}"


def metric_misspelled_as(metric: str, keys: Sequence[str]) -> str | None:
    """The key of ``keys`` (a trainer's own) that ``metric`` looks like a misspelling of, as
    :func:`~gpusched._spec_check.did_you_mean` guesses it, or None.

    A key that names another measure is left out (:func:`_another_measure`): a trainer that
    reports ``train_loss`` every step and ``val_loss`` every epoch has not misspelled
    ``val_loss``, though the two are close by did you mean's measure (0.67)."""
    return closest(metric, [key for key in keys if not _another_measure(metric, key)])


def _another_measure(metric: str, key: str) -> bool:
    """Whether ``key`` reads as another measure than ``metric``, not as it misspelled: their
    words (``val_loss``: val, loss; any case, split at anything but letters and digits) are
    the same but for one more whole word (``loss``, ``eval_loss``), or for one word in the
    same place that is not alike (``train_loss``, ``val_loss``; ``val_accuracy``,
    ``train_accuracy``). A word cut short or mistyped (``val_acc``, ``val_accuracy``;
    ``vla_loss``), other separators or case (``val-loss``, ``Val_Loss``) are misspellings."""
    ours, theirs = _words(metric), _words(key)
    if abs(len(ours) - len(theirs)) == 1:
        longer, shorter = (ours, theirs) if len(ours) > len(theirs) else (theirs, ours)
        return any(longer[:i] + longer[i + 1:] == shorter for i in range(len(longer)))
    if len(ours) != len(theirs):
        return False
    differ = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
    if len(differ) != 1:
        return False
    a, b = differ[0]
    return not (a.startswith(b) or b.startswith(a)
                or difflib.SequenceMatcher(None, a, b).ratio() >= _ALIKE)


def _words(key: str) -> list[str]:
    return re.findall(r"[^\W_]+", key.lower())


def metric_warning_text(metric: str, trial: str, reports: int, keys: Sequence[str],
                        close: str) -> str:
    """The warning that ``trial`` (``e8/0``) made ``reports`` reports without the experiment's
    ``metric``, none of any trial's having had it, while it reported ``keys`` (sorted, the
    trainer's own), of which ``close`` is the closest to the metric's name: what to do if that
    key is the metric (the experiment's trials would all fail at their end without it)."""
    first = "the first report" if reports == 1 else f"the first {reports} reports"
    exp = trial.partition("/")[0]
    said = keys_shown(metric, keys, guess=close)
    return (f"metric {metric!r} was not in {first} of trial {trial}{said}:"
            f" if that is the metric, cancel (gpusched cancel {exp}) and submit again with"
            f" {set_advice('metric', close)}")


def set_advice(setting: str, value: str) -> str:
    """``metric: val_accuracy (or --set metric=val_accuracy)``: ``setting`` given ``value``
    (text) in an experiment file, and as a ``--set`` to type in a shell. The value is quoted
    where YAML would not read it back as that text (``"1e-3"``, ``"val acc:"``, ``"true"``),
    the ``--set`` where a shell would split or expand it."""
    try:
        plain = load_text(value) == value
    except ValueError:
        plain = False
    written = value if plain else json.dumps(value)  # JSON's "..." is YAML's too
    return f"{setting}: {written} (or --set {shlex.quote(f'{setting}={written}')})"


def _as_integers(space: SearchSpace, params: Mapping[str, Any]) -> Mapping[str, Any]:
    """``params`` with a whole float (``3.0``, as an earlier experiment's double may have
    logged it) made an int where this space has an integer: the searches take it as one."""
    fixed = dict(params)
    for param in space:
        value = fixed.get(param.name)
        if param.type is ParamType.INTEGER and isinstance(value, float) and value.is_integer():
            fixed[param.name] = int(value)
    return fixed


def judged_end(trial: TrialRun) -> bool:
    """Whether ``trial`` ended so that its reports are judged complete: it ran its course
    (completed, or stopped by the ``stop:`` bound: as far as its user asked), having reported
    something. The first such end of an experiment warns of its ``stop:`` keys that no trial
    has reported (:meth:`ExperimentRun.unreported_stop_keys`).

    A trial stopped early (a stopping plugin, or a metric's bound) or failed is not judged: it
    may have ended before a key reported late (validation every 10 epochs) came, and would warn
    of a key that comes. One stopped at a bound on its length is: with ``stop: {val_acc: 0.95,
    training_iteration: 3}`` every trial ends at iteration 3, and not judging those would never
    warn of ``val_acc``.
    """
    if trial.reports <= 0:
        return False
    return trial.state is TrialState.COMPLETED or (
        trial.state is TrialState.STOPPED and trial.at_length_bound)


def stop_keys_to_watch(spec: ExperimentSpec) -> set[str]:
    """The keys of ``spec``'s ``stop:`` that a trainer must report itself for their bound to
    stop anything: not the auto-filled ones (every report has them), nor the metric (a trial
    that ends without it fails, saying so already)."""
    return {key for key in spec.stop if key not in AUTO_FILLED_KEYS and key != spec.metric}


def see_stop_keys(unseen: set[str], reports: Sequence[Mapping[str, Any]]) -> None:
    """Take out of ``unseen`` each key that one of ``reports`` gives a value its bound can
    compare: a number, not ``true``/``false``, not NaN (what the ``bounds`` plugin reads)."""
    for key in [k for k in unseen if any(_comparable(r.get(k)) for r in reports)]:
        unseen.discard(key)


def _comparable(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and not math.isnan(value))


def points_taken(trials: Iterable[tuple[int, int | None]], points: int) -> dict[int, int]:
    """Trial number -> the index of the point of ``points_to_evaluate`` that the trial took,
    for an experiment with ``points`` points whose trials are ``trials``: ``(number,
    continues)``, by number. The ``i``-th trial that continues no earlier one took point
    ``i`` (a new configuration takes the next point; a promotion takes none). Stops once
    every point is taken: only a few of a long experiment's trials are looked at."""
    taken: dict[int, int] = {}
    if not points:
        return taken
    for number, continues in trials:
        if continues is None:
            taken[number] = len(taken)
            if len(taken) == points:
                break
    return taken


class PointsPlan(NamedTuple):
    """What a dry run of an experiment's search with its ``points_to_evaluate`` found
    (:func:`plan_points`), every trial taken to complete."""

    trials: int  # how many trials the experiment runs (its max_trials when the file has none)
    new: int  # how many of them the search made as new configurations (continuing none)
    # Points that took no new configuration's place: they run once the search has run out,
    # or never, when max_trials is reached first.
    unplaced: int
    budgets: bool  # whether the search gives its trials budgets (hyperband's epochs)


def plan_points(search: SearchPlugin, space: SearchSpace,
                points: Sequence[Mapping[str, ParamValue]], prior: Sequence[TrialView],
                max_trials: int | None) -> PointsPlan | None:
    """Ask ``search`` for trial after trial as the scheduler does (``Scheduler._ask``: each new
    configuration's place taken by the next point), each trial completing at once, until it
    runs out or ``max_trials`` have run; None when that cannot be worked out: more than
    :data:`PLAN_STEPS` trials, a search that waits with nothing running, or one that fails
    (the run will say so).

    Exact for a search that is a pure function of its history, whatever it does: a grid
    skips a point that a trial took (a point on the grid adds no trial), hyperband's brackets
    make as many trials whatever their params (a point replaces one of its own). The run
    differs only where a trial fails or is stopped (a hyperband rung then comes up short,
    and fewer trials run: the search ends the run sooner). For a search of known size
    (``size()``), which ends; a worker thread's work: it is asked up to PLAN_STEPS times.
    """
    history = list(prior)
    placed = new = run = 0
    budgets = False
    while max_trials is None or run < max_trials:
        if run >= PLAN_STEPS:
            return None
        try:
            answer = search.suggest(run, history)
            if isinstance(answer, Wait):
                return None
            suggestion = None if answer is None else as_suggestion(answer)
        except Exception:
            return None
        if suggestion is None:  # run out: the points left run after it (Scheduler._ask)
            left = len(points) - placed
            ends = run + left if max_trials is None else min(run + left, max_trials)
            return PointsPlan(ends, new, left, budgets)
        budgets = budgets or suggestion.budget is not None
        params = suggestion.params
        if suggestion.continues is None:
            new += 1
            if placed < len(points):
                params, placed = points[placed], placed + 1
        history.append(TrialView(number=run, params=space.restrict(dict(params)),
                                 state=TrialState.COMPLETED, objective=0.0,
                                 budget=suggestion.budget, continues=suggestion.continues))
        run += 1
    return PointsPlan(run, new, len(points) - placed, budgets)


def points_problem(spec: ExperimentSpec, plan: PointsPlan | None) -> str | None:
    """Why the points of ``spec``'s ``points_to_evaluate`` cannot all run, as its search runs
    them (``plan``), or None (a problem at ``points_to_evaluate``, refused at submit).

    With a search that gives budgets, a point takes the place of a new configuration, with
    that configuration's budget, and never adds a trial: a point left once the search has run
    out would have no budget to run with (no ``GPUSCHED_BUDGET``, no ``--epochs``, and a
    trainer that needs it fails), and one left when max_trials is reached never runs.
    """
    if plan is None or not plan.budgets or not plan.unplaced:
        return None
    within = "" if spec.max_trials is None else (
        f" in its first {spec.max_trials} trials (max_trials)")
    return (f"lists {len(spec.points_to_evaluate)} points, but search"
            f" '{spec.search_algorithm}' makes only {plan.new} new configurations{within}:"
            " each point takes the place of one, with the budget the search gives it (its"
            " other trials continue one, and no point takes their place); list at most"
            f" {plan.new} points, or change the search's options so that it makes more")


def objective_of(values: Sequence[float], rule: ObjectiveRule, goal: Goal) -> float | None:
    """A trial's result: its last finite value of the metric, or its best one."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    if rule is ObjectiveRule.LAST:
        return finite[-1]
    return max(finite) if goal is Goal.MAXIMIZE else min(finite)


class StopRequest(NamedTuple):
    """A decision to stop a running trial: the state and reason to record it with, and
    whether a stopping plugin (or the ``stop:`` bound) asked for it. The trial log keeps it
    (an event ``trial_stop_sent``) once the stop's SIGTERM is sent, so that a daemon killed
    during the grace period concludes the trial as this one would have; not an interruption,
    which runs the trial again (see ``TrialRunner._stop_is_kept``)."""

    state: TrialState
    reason: str
    by_plugin: bool = False


class StopOutcome(NamedTuple):
    """How a stopped trial ends (:func:`stop_outcome`)."""

    state: TrialState
    reason: str
    objective: float | None


def stop_outcome(stop: StopRequest, metric_values: Sequence[float],
                 spec: ExperimentSpec) -> StopOutcome:
    """The outcome of a trial that ``stop`` stopped (its SIGTERM sent), whatever its exit,
    given the finite values of ``spec``'s metric it reported: the live daemon's rule, and a
    restarted one's for a trial whose stop was sent before a crash.

    Stopped: its objective from those values. But stopped by a stopping plugin or the
    ``stop:`` bound before it had a result (a misspelled metric reaching asha's max_t, NaN at
    every report), it failed, as it would have run to its end without one, and the failure
    rules see it (a first trial's failure still ends the experiment). A time_budget's stop is
    not the trial's doing: it stays stopped, without a result. Any other state (a timeout's
    ``failed``, a cancel) has no result.
    """
    if stop.state is not TrialState.STOPPED:
        return StopOutcome(stop.state, stop.reason, None)
    objective = objective_of(metric_values, spec.objective, spec.goal)
    if objective is not None or not stop.by_plugin:
        return StopOutcome(TrialState.STOPPED, stop.reason, objective)
    reason = stop.reason
    if "no finite" not in reason:  # a diverged trial's stop says so already
        reason = f"{reason}; it reported no finite '{spec.metric}', so it has no result"
    return StopOutcome(TrialState.FAILED, reason, None)


@dataclass
class TrialRun:
    """A trial's state in memory (its row in the log has the same facts)."""

    number: int
    params: dict[str, Any]
    state: TrialState = TrialState.QUEUED
    budget: int | float | None = None  # a Suggestion's budget (GPUSCHED_BUDGET)
    continues: int | None = None  # the trial whose checkpoint folder this one goes on from
    objective: float | None = None
    at_bound: bool = False  # stopped by the stop: bound (TrialView.at_bound)
    at_length_bound: bool = False  # ...by a bound on how long it ran (stopped_at_a_length_bound)
    devices: list[str] = field(default_factory=list)
    attempts: int = 0
    failures: int = 0  # failed attempts that were retried (max_retries_per_trial)
    reports: int = 0
    metric_values: list[float] = field(default_factory=list)
    metric_steps: list[int] = field(default_factory=list)
    last_report: dict[str, Any] = field(default_factory=dict)
    # How far its report files have been read into the log; None for a trial logged before
    # positions were kept (its files then count as read to their end).
    read_position: ReadPosition | None = None
    # Set once no process of the running trial is left: its end is being recorded, and it no
    # longer takes a parallel slot (so the next trial need not wait for that bookkeeping).
    processes_gone: bool = False
    _view: TrialView | None = field(default=None, init=False, repr=False, compare=False)
    _view_key: tuple[Any, ...] = field(default=(), init=False, repr=False, compare=False)

    def reports_mark(self) -> tuple[Any, ...]:
        """What :meth:`take_reports` (and a retry's count) change, to put back with
        :meth:`back_to` when the log refused to store those reports."""
        return (self.reports, len(self.metric_values), len(self.metric_steps),
                dict(self.last_report), self.read_position, self.failures)

    def back_to(self, mark: tuple[Any, ...]) -> None:
        """Undo what was taken since :meth:`reports_mark`: the reports are read again."""
        reports, values, steps, last, position, failures = mark
        self.reports, self.last_report, self.read_position = reports, last, position
        del self.metric_values[values:], self.metric_steps[steps:]
        self.failures = failures

    def take_reports(self, new: list[dict[str, Any]], metric: str) -> None:
        """Account reports just stored: the count, the metric's series, the last report."""
        if not new:
            return
        self.reports += len(new)
        for report in new:
            value = report.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
                value
            ):
                self.metric_values.append(float(value))
                self.metric_steps.append(int(report.get("training_iteration", self.reports)))
        self.last_report = dict(new[-1])

    def view(self) -> TrialView:
        """The immutable snapshot a plugin receives.

        Cached: the search plugin is handed every trial's view before each new trial, and
        rebuilding them all each time made a long experiment quadratic. The snapshot is built
        again only when something it shows has changed; everything it shows changes only
        together with the state, the objective or the report count.
        """
        key = (self.state, self.objective, self.at_bound, self.reports, len(self.metric_values))
        if self._view is None or key != self._view_key:
            # Read-only mappings: a plugin that wrote into a shared snapshot would change
            # what every later call sees.
            self._view = TrialView(
                number=self.number, params=MappingProxyType(dict(self.params)),
                state=self.state, objective=self.objective,
                metric_values=tuple(self.metric_values), metric_steps=tuple(self.metric_steps),
                last_report=MappingProxyType(dict(self.last_report)),
                budget=self.budget, continues=self.continues, at_bound=self.at_bound,
            )
            self._view_key = key
        return self._view


class History(Sequence[TrialView]):
    """The search history a plugin receives: earlier experiments' views, then our trials'.

    Lazy: a trial's view is built (or taken from its cache) only when the plugin reads it.
    Random search reads at most two views (its first, and the last earlier experiment's one),
    and building every view before each suggestion cost a growing share of the daemon's time
    per trial in long experiments.
    """

    def __init__(self, prior: Sequence[TrialView], trials: dict[int, TrialRun]) -> None:
        self._prior = prior
        self._trials = trials
        self._numbers = sorted(trials)  # ints sort in C: cheap even for long experiments

    def __len__(self) -> int:
        return len(self._prior) + len(self._numbers)

    def _at(self, index: int) -> TrialView:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("history index out of range")
        if index < len(self._prior):
            return self._prior[index]
        return self._trials[self._numbers[index - len(self._prior)]].view()

    @overload
    def __getitem__(self, index: int) -> TrialView: ...
    @overload
    def __getitem__(self, index: slice) -> list[TrialView]: ...
    def __getitem__(self, index: int | slice) -> TrialView | list[TrialView]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(len(self)))]
        return self._at(index)

    def __repr__(self) -> str:
        return f"<History prior={len(self._prior)} trials={len(self._numbers)}>"


@dataclass
class ExperimentRun:
    """An experiment the scheduler is running (or that waits for GPUs)."""

    id: str
    seq: int
    spec: ExperimentSpec
    seed: int
    search: SearchPlugin
    stoppers: list[StoppingPlugin]
    state: ExperimentState = ExperimentState.QUEUED
    trials: dict[int, TrialRun] = field(default_factory=dict)
    requeued: list[int] = field(default_factory=list)  # interrupted trials to run again
    # Trials launched and not yet ended (kept by the scheduler): counting running trials over
    # these instead of every trial keeps placement O(GPUs), not O(trials), per decision.
    live: dict[int, TrialRun] = field(default_factory=dict)
    prior: list[TrialView] = field(default_factory=list)  # finished trials of `resume_from`
    exhausted: bool = False
    waiting: bool = False  # the search said WAIT: asked again when a running trial ends
    suggest_s: float = 0.0  # how long its search's last suggestion took (see Scheduler._ask)
    cancelling: bool = False
    failure: str | None = None  # set when a failure rule ends the experiment
    started_at: float | None = None  # wall clock of its first trial's start (time_budget)
    budget_spent: bool = False  # its time_budget is used up: no trial starts any more
    owner_uid: int | None = None  # who submitted it (SO_PEERCRED)
    run_as: RunAs | None = None  # the other user its trials run as (a root daemon's)
    # Its submitter's umask: its trials' folders, logs and processes get it (None: a client that
    # sent none, or an experiment from before: the daemon's own).
    umask: int | None = None
    # What its search makes with its points_to_evaluate (see max_trials); None: no points, a
    # search of unknown size, or not worked out.
    plan: PointsPlan | None = None
    # The stop: keys no trial has reported yet (see unreported_stop_keys). Empty from the
    # start without stop: keys, and once each key was seen or warned about: the report path
    # then pays one test of an empty set.
    unseen_stop_keys: set[str] = field(init=False, repr=False)
    # Whether the reports are looked at for a misspelled metric (see metric_warning): until a
    # report of any trial has the metric (the dispatch benchmark's first), or the warning is
    # recorded. Then the report path pays one test of a false flag.
    watching_metric: bool = field(default=True, repr=False)
    # The keys each trial reported, gathered while watching_metric.
    _keys_of: dict[int, set[str]] = field(default_factory=dict, init=False, repr=False)
    # A warning was given and is being written: no other is given meanwhile, and the watch
    # goes on, so that a refused one is given again only while no report had the metric.
    _metric_warning_pending: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.unseen_stop_keys = stop_keys_to_watch(self.spec)

    def __repr__(self) -> str:
        return (f"<ExperimentRun {self.id} {self.state.value} trials={len(self.trials)}"
                f" running={self.running_count()}>")

    @property
    def max_trials(self) -> int:
        """The number of trials to run: the file's; else, for a search of known size (a
        grid, hyperband's brackets), as many as it makes with the points of
        ``points_to_evaluate`` (``plan``, worked out by the scheduler: a point on the grid, or
        one that takes a hyperband configuration's place, adds none), or its size plus one per
        point where that was not worked out (too long: see :func:`plan_points`); else the
        default, or the number of points if that is more."""
        if self.spec.max_trials is not None:
            return self.spec.max_trials
        points = len(self.spec.points_to_evaluate)
        size = getattr(self.search, "size", None)
        if not callable(size):
            return max(DEFAULT_MAX_TRIALS, points)
        return self.plan.trials if self.plan is not None else int(size()) + points

    @property
    def trial_owner(self) -> int | None:
        """The uid of the other user its trials run as (a root daemon's), None for the
        daemon's own: the files of their folders are read only as
        :func:`~gpusched._daemon.reports.why_not_read` allows."""
        return None if self.run_as is None else self.run_as.uid

    def take_reports(self, trial: TrialRun, new: list[dict[str, Any]]) -> None:
        """Take ``new`` reports of ``trial`` in (:meth:`TrialRun.take_reports`), and, while
        some ``stop:`` key is unseen, the keys they give (see :meth:`unreported_stop_keys`):
        without one, the report path pays one test of an empty set. Likewise, while no
        report has had the metric, the keys for :meth:`metric_warning`."""
        trial.take_reports(new, self.spec.metric)
        if self.unseen_stop_keys:
            see_stop_keys(self.unseen_stop_keys, new)
        if self.watching_metric:
            self._see_metric(trial, new)

    def _see_metric(self, trial: TrialRun, new: list[dict[str, Any]]) -> None:
        """Stop watching for a misspelled metric once one of ``new`` has the metric's key
        (whatever its value: the name is right); else keep the keys they give."""
        metric = self.spec.metric
        if any(metric in report for report in new):
            self.watching_metric = False
            self._keys_of.clear()
            return
        keys = self._keys_of.setdefault(trial.number, set())
        for report in new:
            keys.update(report)

    def metric_warning(self, trial: TrialRun, *, ended: bool = False) -> str | None:
        """The warning that the experiment's metric looks misspelled, to give now, or None
        (:func:`metric_warning_text`): no report of any trial has had it, while ``trial``
        has made :data:`METRIC_REPORTS` reports (or, ``ended``: it ended, having reported)
        and one of its keys is a close match (:func:`metric_misspelled_as`).

        Said once per experiment: record it, then call :meth:`metric_warning_recorded` (the
        watch stops), or :meth:`metric_warning_refused` when the log refused it; none is given
        in between. Not while the experiment is failing or being cancelled: it ends anyway,
        and its reason says what its trials reported. After a restart (or ``gpusched
        resume``) nothing is watched once the log has the metric or the warning (see
        ``restore.restore_trials``).
        """
        if (not self.watching_metric or self._metric_warning_pending
                or self.failure is not None or self.cancelling):
            return None
        if trial.reports < (1 if ended else METRIC_REPORTS):
            return None
        keys = sorted(k for k in self._keys_of.get(trial.number, ())
                      if k not in AUTO_FILLED_KEYS)
        close = metric_misspelled_as(self.spec.metric, keys)
        if close is None:
            return None
        self._metric_warning_pending = True
        return metric_warning_text(self.spec.metric, f"{self.id}/{trial.number}",
                                   trial.reports, keys, close)

    def metric_warning_recorded(self) -> None:
        """The warning :meth:`metric_warning` gave is in the log: nothing is watched any
        more."""
        self._metric_warning_pending = self.watching_metric = False
        self._keys_of.clear()

    def metric_warning_refused(self) -> None:
        """The log refused the warning :meth:`metric_warning` gave: a later report gives it
        again (unless one has had the metric meanwhile, which ends the watch)."""
        self._metric_warning_pending = False

    def top_budget(self) -> int | float | None:
        """The largest budget its search gave a trial (hyperband's top rung's), None if it
        gave none: what a point left once the search has run out runs with, where the
        scheduler could not refuse it at submit (see :func:`points_problem`)."""
        return max((t.budget for t in self.trials.values() if t.budget is not None),
                   default=None)

    def next_point(self) -> Mapping[str, ParamValue] | None:
        """The point of ``points_to_evaluate`` that the next new configuration takes, or None
        once every point has been taken (or there are none).

        The ``i``-th trial that continues no earlier one takes point ``i`` (see
        :func:`points_taken`, which ``gpusched show`` reads too): without promotions (all but
        hyperband-like searches) trials 0 .. k-1. Counted over the trials, which come back
        from the log after a restart, so a point is never taken twice.
        """
        points = self.spec.points_to_evaluate
        if not points:
            return None
        taken = len(points_taken(((t.number, t.continues) for t in self.trials.values()),
                                 len(points)))
        return points[taken] if taken < len(points) else None

    def unreported_stop_keys(self, trial: TrialRun) -> list[str]:
        """The ``stop:`` keys to warn about as ``trial`` ends, in the file's order: those no
        trial has reported yet (``unseen_stop_keys``), when its end is judged
        (:func:`judged_end`: set its ``at_bound`` first); ``[]`` otherwise (a key may come only
        late in training: a trial's end is the first time its reports say it never comes).

        The keys are taken out of ``unseen_stop_keys``: each is warned about once, by the first
        trial that ends without it. Call it where the trial's end is decided, before any
        await, so that two trials ending at once do not both warn.

        After a restart (or ``gpusched resume``) the set holds only what the log leaves
        unsettled (see ``restore.restore_trials``): no key the log says was reported or
        warned about.
        """
        if not self.unseen_stop_keys or not judged_end(trial):
            return []
        keys = [key for key in self.spec.stop if key in self.unseen_stop_keys]
        self.unseen_stop_keys.clear()
        return keys

    def running_count(self) -> int:
        """Trials started whose processes are not all gone yet."""
        return sum(1 for t in self.live.values()
                   if t.state is TrialState.RUNNING and not t.processes_gone)

    def gpu_share_in_use(self) -> float:
        """GPUs held by running trials (the fair-share key). A trial whose failure (or retry,
        or interruption) is still being recorded counts: its experiment cannot start the next
        one yet (see can_start_now), so it must not look idle and take the front while others
        could use the GPU. A completed or stopped one has left ``live`` already."""
        held = sum(1 for t in self.live.values() if t.state is TrialState.RUNNING)
        return held * self.spec.gpus_per_trial

    def history(self) -> History:
        """What the search plugin sees: the resumed experiment's trials, then ours."""
        return History(self.prior, self.trials)

    def checkpoint_owner(self, number: int) -> int:
        """The trial whose folder holds trial ``number``'s checkpoints: the first of the chain
        of trials it continues (itself when it continues none)."""
        seen = {number}
        while (parent := self.trials[number].continues) is not None and parent not in seen:
            seen.add(parent)
            number = parent
        return number

    def continues_problem(self, parent: int) -> str | None:
        """Why a new trial may not continue trial ``parent``, or None if it may: it must have
        ended (two trials never share a checkpoint folder at once), and be continued once."""
        if parent not in self.trials:
            return f"continues={parent}, but {self.id} has no trial {parent}"
        trial = self.trials[parent]
        if trial.state not in TERMINAL_TRIAL_STATES or parent in self.requeued:
            return f"continues={parent}, but trial {self.id}/{parent} has not ended"
        taken = [t.number for t in self.trials.values() if t.continues == parent]
        if taken:
            return (f"continues={parent}, but trial {self.id}/{parent} is already continued"
                    f" by {self.id}/{taken[0]}")
        return None

    def wants_more(self) -> bool:
        """True if a new (or requeued) trial may start now, GPUs permitting."""
        if self.cancelling or self.failure or self.budget_spent or self.state not in (
            ExperimentState.QUEUED, ExperimentState.RUNNING
        ):
            return False
        limit = self.spec.max_parallel_trials
        if limit is not None and self.running_count() >= limit:
            return False
        if self.requeued:
            return True
        return not self.exhausted and len(self.trials) < self.max_trials

    def can_start_now(self) -> bool:
        """True if :meth:`wants_more` and its next trial may be placed at this moment.

        While a trial's end is being recorded (its processes are gone, its GPU already given
        back) no new trial is asked of the search: the suggestion must see that outcome, and
        the failure rules must judge it first. Else what the search proposes would depend on
        how fast the log wrote (no longer a pure function of the log), and a trial could start
        just as a rule ended the experiment. A trial to run again has its params: it may go.
        A completed or stopped trial leaves ``live`` as soon as its outcome is known (the
        scheduler's ``_trial_has_result``): no rule judges it, and the log's one writer keeps
        the next trial's row behind its end.
        """
        if not self.wants_more():
            return False
        return bool(self.requeued) or not any(t.processes_gone for t in self.live.values())

    def all_ended(self) -> bool:
        """True when no trial is running or waiting to run again."""
        # Newest first: a trial still going is almost always among the last ones, so this
        # stops at once instead of walking every ended trial at each trial's end.
        return not self.requeued and all(
            t.state in TERMINAL_TRIAL_STATES for t in reversed(self.trials.values())
        )

    def failing_after(self, trial: TrialRun, fatal: str | None,
                      reason: str | None = None) -> str | None:
        """The reason the experiment now fails, once ``trial`` has ended: the failure rule's,
        for a failed trial of an experiment neither failing already nor being cancelled (a
        cancelled one ends `cancelled`, whatever its trials did as they stopped). ``reason``:
        the trial's own (how it failed), which the rule's names (:meth:`failure_rule`)."""
        if trial.state is not TrialState.FAILED or self.failure is not None or self.cancelling:
            return None
        return self.failure_rule(trial, fatal, reason)

    def failure_rule(self, trial: TrialRun, fatal: str | None,
                     reason: str | None = None) -> str | None:
        """The reason the experiment fails after ``trial`` failed, or None (SPEC section 5).

        It names that trial and, given its ``reason``, how it failed (shortened: see
        :func:`_shortened_reason`), so that `gpusched wait` says what to fix without a
        look at the trials: ``the first trial, e8/0, failed: exited 0 without reporting
        'val_acc' ...; set max_failed_trials ...``, ``3 trials failed in a row (...); the
        last, e8/5: exited with code 1``.
        """
        spec = self.spec
        ordered = sorted((t for t in self.trials.values() if t.state in TERMINAL_TRIAL_STATES),
                         key=lambda t: t.number)
        failed = [t for t in ordered if t.state is TrialState.FAILED]
        key = f"{self.id}/{trial.number}"
        said = "" if not reason else f": {_shortened_reason(reason)}"
        if fatal is not None:  # what it raised says why: its reason adds only the exit
            return f"trial {key} raised a fatal error: {fatal}"
        if spec.fail_fast:
            return (f"trial {key} failed{said}; fail_fast is set" if said
                    else f"trial {key} failed and fail_fast is set")
        if spec.max_failed_trials is None and trial.number == 0:
            return (f"the first trial, {key}, failed{said}; set max_failed_trials to go on after"
                    " failures, as AI Platform does")
        last = "" if not said else f"; the last, {key}{said}"
        if spec.max_failed_trials is not None and len(failed) >= spec.max_failed_trials:
            return (f"{len(failed)} trials failed (max_failed_trials: {spec.max_failed_trials})"
                    f"{last}")
        streak = 0
        for t in reversed(ordered):
            if t.state is not TrialState.FAILED:
                break
            streak += 1
        if streak >= spec.max_consecutive_failed_trials:
            return (f"{streak} trials failed in a row (max_consecutive_failed_trials:"
                    f" {spec.max_consecutive_failed_trials}){last}")
        return None


def _shortened_reason(reason: str, limit: int = _FAILED_REASON_CHARS) -> str:
    """A failed trial's ``reason`` as an experiment's failure names it: as it is, or, past
    ``limit`` characters (a trainer's long status line), its beginning and end around
    `` ... ``: the beginning says what happened, the end often how it exited or what to try
    (``(exited with code 1)``, ``(did you mean 'val_accuracy'?)``)."""
    if len(reason) <= limit:
        return reason
    tail = limit // 3
    return f"{reason[:limit - tail - len(_CUT)]}{_CUT}{reason[-tail:]}"
