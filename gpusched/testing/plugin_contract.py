"""The plugin contract as reusable pytest classes (after Optuna's ``testing/pytest_storages.py``).

Subclass :class:`SearchPluginContract` or :class:`StoppingPluginContract` in a module whose name
pytest collects, name the class ``Test...``, and say which plugin to check, either by its
entry-point name or by overriding the class fixture::

    from gpusched.testing import SearchPluginContract

    class TestMySearch(SearchPluginContract):
        plugin_name = "mysearch"          # looked up in the ``gpusched.search`` group

Override ``search_plugin_options`` / ``stopping_plugin_options`` when the plugin needs options
to be useful; with the defaults (no options) a plugin must still start, since users may name it
without any. gpusched runs these classes over every installed plugin (tests/plugins).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import pytest

from gpusched.plugin_api import (
    Goal,
    Param,
    ParamType,
    ParamValue,
    PluginOptionsError,
    Scale,
    SearchPlugin,
    SearchSpace,
    StoppingPlugin,
    Suggestion,
    TrialState,
    TrialView,
    Wait,
    as_suggestion,
)
from gpusched.plugins import load_search_plugin, load_stopping_plugin

__all__ = ["CONTRACT_SPACES", "SearchPluginContract", "StoppingPluginContract", "check_value",
           "rebuilt"]

_D, _I, _C = ParamType.DOUBLE, ParamType.INTEGER, ParamType.CATEGORICAL

CONTRACT_SPACES: Mapping[str, SearchSpace] = {
    # Every type and scale at once; kept under 1e6 grid points so a grid search can take it.
    "mixed": SearchSpace((
        Param("lr", _D, low=1e-4, high=1e-1, scale=Scale.LOG),
        Param("momentum", _D, low=0.5, high=0.999, scale=Scale.REVERSE_LOG),
        Param("dropout", _D, low=0.0, high=0.5),
        Param("wd", _D, low=0.0, high=1.0, step=0.25),
        Param("layers", _I, low=1, high=4),
        Param("width", _I, low=1, high=8, scale=Scale.LOG),
        Param("batch", _I, low=16, high=64, step=16),
        Param("kernel", ParamType.DISCRETE, values=(1, 3, 5)),
        Param("opt", ParamType.CATEGORICAL, values=("sgd", "adam")),
    )),
    # Small enough to be exhausted: a plugin that can run out must say so with None.
    "tiny": SearchSpace((
        Param("letter", ParamType.CATEGORICAL, values=("x", "y")),
        Param("n", _I, low=0, high=2),
    )),
    # Conditional parameters of every kind: "any of" values, a categorical, an integer and a
    # discrete parent, two conditions at once, a grandchild; 2,000 distinct grid points.
    "conditional": SearchSpace((
        Param("opt", _C, values=("sgd", "adam", "rmsprop")),
        Param("lr", _D, low=1e-4, high=1e-1, scale=Scale.LOG),
        Param("layers", _I, low=1, high=3),
        Param("momentum", _D, low=0.0, high=0.99, when={"opt": ("sgd", "rmsprop")}),
        Param("nesterov", _C, values=("yes", "no"), when={"opt": ("sgd",)}),
        Param("beta1", _D, low=0.8, high=0.999, scale=Scale.REVERSE_LOG,
              when={"opt": ("adam",)}),
        Param("width2", _I, low=1, high=4, scale=Scale.LOG, when={"layers": (2, 3)}),
        Param("width3", ParamType.DISCRETE, values=(16, 32, 64),
              when={"layers": (3,), "opt": ("adam",)}),
        Param("dampening", _D, low=0.0, high=1.0, step=0.25, when={"nesterov": ("no",)}),
    )),
    # Small enough to be exhausted: 4 distinct points, not the 6 of the product.
    "tiny_conditional": SearchSpace((
        Param("letter", _C, values=("x", "y")),
        Param("n", _I, low=0, high=2, when={"letter": ("y",)}),
    )),
}
"""The spaces every search plugin is checked on. A suggestion holds a value for each *active*
parameter (:meth:`SearchSpace.active`) and for no other."""

# object() fits no plugin's idea of an option value, so this is refused both by plugins that
# reject unknown keys and by those (like ``bounds``) that take any key but check the value.
_BAD_OPTION = "__contract_unknown_option__"
_STATES = (TrialState.COMPLETED, TrialState.FAILED, TrialState.STOPPED, TrialState.RUNNING)


def check_value(param: Param, value: object) -> str | None:
    """What is wrong with ``value`` as ``param``'s value in a suggestion (its type, range, step
    or list), or None if nothing. The message names the parameter, the value and its type.

    A value must be a plain Python value of the parameter's own type, as the trial log stores it
    and the trial gets it as a flag: an ``int`` for an ``integer`` (not a ``bool``, not ``3.0``);
    an ``int`` or ``float`` for a ``double``; for ``discrete`` and ``categorical``, one of the
    listed values with its listed type (``3`` where ``3`` is listed, not ``3.0`` nor ``True``).
    A numpy scalar (``np.int64(3)``, ``np.float64(0.5)``) is refused: the log cannot store it, so
    return ``int(x)`` / ``float(x)`` / ``str(x)``.
    """
    said = f"{param.name}={value!r} ({_type_name(value)})"
    kind = type(value)
    if kind not in (int, float, str):  # bool, numpy scalars, None, ...: exact types only
        return f"{said} is not a plain int, float or str: return {_fix(param, value)}"
    if not param.is_numeric_range:
        if any(type(v) is kind and v == value for v in param.values):
            return None
        if any(_equal(v, value) for v in param.values):
            return (f"{said} is not one of {param.values!r} with its listed type:"
                    f" return {_fix(param, value)}")
        return f"{said} is not one of {param.values!r}"
    if param.type is ParamType.INTEGER and kind is not int:
        return f"{said}: an integer parameter takes an int: return {_fix(param, value)}"
    if kind is str:
        return f"{said}: a double parameter takes a float (or an int): return float(x)"
    assert isinstance(value, int | float)
    problem = param.range_problem(value)
    return None if problem is None else f"{said} {problem}"


def _type_name(value: object) -> str:
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _equal(listed: ParamValue, value: object) -> bool:
    """``listed == value`` as numbers or strings, whatever ``value`` is (a numpy array's ``==``
    answers an array; a bool is no number here)."""
    if isinstance(value, bool):
        return False
    try:
        return bool(listed == value)
    except Exception:
        return False


def _fix(param: Param, value: object) -> str:
    """What a plugin should return instead of ``value``: ``int(x)``, ``float(x)``, ``str(x)``."""
    if param.type is ParamType.INTEGER:
        return "int(x)"
    if param.type is ParamType.DOUBLE:
        return "float(x)"
    same = [v for v in param.values if _equal(v, value)]
    kinds = [type(v).__name__ for v in (same[:1] or param.values)]
    return " or ".join(f"{k}(x)" for k in dict.fromkeys(kinds))


Answer = Mapping[str, ParamValue] | Suggestion | Wait | None
"""What ``suggest`` may return."""


def _any_value(param: Param) -> ParamValue:
    """A valid value of ``param`` (its lowest)."""
    if param.is_numeric_range:
        assert param.low is not None
        return int(param.low) if param.type is ParamType.INTEGER else float(param.low)
    return param.values[0]


def _trial(number: int, answer: Mapping[str, ParamValue] | Suggestion) -> TrialView:
    """A deterministic, varied past trial: states cycle, objectives differ; it has the budget
    and continues the trial that the answer says."""
    suggestion = as_suggestion(answer)
    params = suggestion.params
    state = _STATES[number % len(_STATES)]
    ended = state in (TrialState.COMPLETED, TrialState.STOPPED)
    objective = ((number * 7919) % 13) / 13 if ended else None
    values = (0.1, objective) if objective is not None else ()
    return TrialView(
        number=number, params=dict(params), state=state, objective=objective,
        metric_values=values, metric_steps=tuple(range(1, len(values) + 1)),
        budget=suggestion.budget, continues=suggestion.continues,
    )


def _run(
    plugin: SearchPlugin,
    steps: int,
    history: Sequence[TrialView] = (),
    *,
    prior: Sequence[TrialView] = (),
) -> tuple[list[Answer], list[TrialView]]:
    """Ask ``plugin`` for trials ``len(history)`` .. ``steps - 1`` one by one, as the daemon does;
    stop at the first None or WAIT (these trials never end, so the answer would not change).
    ``prior``: trials of an earlier experiment (``resume_from``, numbered -N ... -1) that precede
    the experiment's own in every history handed over. Returns the answers and the grown
    history (without ``prior``)."""
    answers: list[Answer] = []
    trials = list(history)
    for number in range(len(trials), steps):
        answer = plugin.suggest(number, (*prior, *trials))
        answers.append(answer)
        if answer is None or isinstance(answer, Wait):
            break
        trials.append(_trial(number, answer))
    return answers, trials


def _plain(answers: Sequence[Answer]) -> list[Any]:
    """Answers as comparable plain data."""
    out: list[Any] = []
    for a in answers:
        if a is None or isinstance(a, Wait):
            out.append(a)
        else:
            s = as_suggestion(a)
            out.append((dict(s.params), s.budget, s.continues))
    return out


def _params(answers: Sequence[Answer]) -> list[Mapping[str, ParamValue]]:
    """The params of the answers that are trials."""
    return [as_suggestion(a).params for a in answers if a is not None and not isinstance(a, Wait)]


def rebuilt(view: TrialView, **changes: Any) -> TrialView:
    """``view`` as a restarted daemon builds it from the log: equal facts in new objects (a
    read-only mapping for dicts, lists for tuples), with ``changes`` applied. A plugin must
    answer the same for it: a pure function of the log, not of the objects it was handed."""
    fresh: dict[str, Any] = {
        "params": MappingProxyType(dict(view.params)),
        "metric_values": list(view.metric_values), "metric_steps": list(view.metric_steps),
        "last_report": MappingProxyType(dict(view.last_report)),
    }
    return dataclasses.replace(view, **{**fresh, **changes})


def _still_running(history: Sequence[TrialView], pending: int) -> list[TrialView]:
    """``history`` as the daemon that lives on shows it while its last ``pending`` trials run:
    no objective yet, a first report in."""
    cut = len(history) - pending
    return [*history[:cut], *(
        dataclasses.replace(t, state=TrialState.RUNNING, objective=None,
                            metric_values=tuple(t.metric_values[:1]),
                            metric_steps=tuple(t.metric_steps[:1]))
        for t in history[cut:])]


def _restored(history: Sequence[TrialView]) -> list[TrialView]:
    """``history`` as a daemon restarted after a crash shows it (gpusched/_daemon/restore.py):
    rebuilt from the log, every trial that was ``running`` now ``interrupted``, without an
    objective but with what it reported, waiting to run again with its params."""
    return [rebuilt(t, state=TrialState.INTERRUPTED, objective=None)
            if t.state is TrialState.RUNNING else rebuilt(t) for t in history]


def _earlier_experiment(answers: Sequence[Answer]) -> list[TrialView]:
    """Finished trials of an experiment named in ``resume_from``, numbered -N ... -1 in their
    order (with neither budget nor continues, as the daemon shows them)."""
    out = []
    given = [as_suggestion(a).params for a in answers if a is not None and not isinstance(a, Wait)]
    for i, params in enumerate(given):
        objective = ((i * 4241) % 11) / 11
        out.append(TrialView(number=i - len(given), params=dict(params), state=TrialState.COMPLETED,
                             objective=objective, metric_values=(objective,),
                             metric_steps=(1,)))
    return out


_UNKNOWN_PARAM = "__contract_unknown_param__"


def _misfits(space: SearchSpace) -> list[tuple[str, dict[str, ParamValue]]]:
    """Params that an earlier experiment with another space may have logged, each with what is
    wrong with it: a point of ``space`` with one active parameter missing, of another type, out
    of its range or not in its list, or with an unknown name added."""
    base = space.from_unit([0.5] * len(space))
    out: list[tuple[str, dict[str, ParamValue]]] = [
        (f"an unknown parameter {_UNKNOWN_PARAM}", {**base, _UNKNOWN_PARAM: 0.5})]
    for p in space.active(base):
        wrong: list[tuple[str, ParamValue]] = []
        if p.is_numeric_range:
            assert p.low is not None and p.high is not None
            span = (p.high - p.low) or 1.0
            above, below = p.high + 10 * span, p.low - 10 * span
            if p.type is ParamType.INTEGER:
                wrong += [("above its range", int(above)), ("below its range", int(below)),
                          ("a float", p.low + 0.5)]
            else:
                wrong += [("above its range", float(above)), ("below its range", float(below))]
            wrong.append(("a string", "__contract_not_a_number__"))
        else:
            numbers = [v for v in p.values if isinstance(v, int | float)]
            gone: ParamValue = max(numbers) + 1000 if numbers else "__contract_not_listed__"
            other: ParamValue = 7 if all(isinstance(v, str) for v in p.values) else "7"
            wrong += [("not in its list", gone), ("of another type", other)]
        out.append((f"{p.name} missing", {k: v for k, v in base.items() if k != p.name}))
        out += [(f"{p.name}={value!r}, {what}", {**base, p.name: value}) for what, value in wrong]
    return out


class SearchPluginContract:
    """The contract every search plugin keeps; subclass as ``Test...`` to run it."""

    #: the entry-point name to check, unless ``search_plugin_class`` is overridden
    plugin_name: ClassVar[str | None] = None
    #: how many trials each check asks for
    steps: ClassVar[int] = 12

    @pytest.fixture
    def search_plugin_class(self) -> type[SearchPlugin]:
        """The class under test: by default the one registered as :attr:`plugin_name`."""
        if self.plugin_name is None:
            pytest.fail("set plugin_name or override the search_plugin_class fixture")
        return load_search_plugin(self.plugin_name)

    @pytest.fixture
    def search_plugin_options(self) -> Mapping[str, Any]:
        """Options to construct the plugin with (default: none)."""
        return {}

    @pytest.fixture(params=sorted(CONTRACT_SPACES))
    def contract_space(self, request: pytest.FixtureRequest) -> SearchSpace:
        """Each of :data:`CONTRACT_SPACES`."""
        return CONTRACT_SPACES[request.param]

    @pytest.fixture(params=[(Goal.MAXIMIZE, 0), (Goal.MINIMIZE, 20240517)], ids=["max", "min"])
    def new_plugin(
        self,
        request: pytest.FixtureRequest,
        search_plugin_class: type[SearchPlugin],
        search_plugin_options: Mapping[str, Any],
        contract_space: SearchSpace,
    ) -> Callable[[], SearchPlugin]:
        """A factory of fresh, identically configured instances (each a 'restarted daemon')."""
        goal, seed = request.param
        return lambda: search_plugin_class(
            contract_space, goal=goal, seed=seed, options=search_plugin_options
        )

    def test_summary_is_one_line(self, search_plugin_class: type[SearchPlugin]) -> None:
        summary = search_plugin_class.summary
        assert isinstance(summary, str) and summary.strip() and "\n" not in summary

    def test_unknown_option_is_refused(
        self,
        search_plugin_class: type[SearchPlugin],
        search_plugin_options: Mapping[str, Any],
        contract_space: SearchSpace,
    ) -> None:
        options = {**search_plugin_options, _BAD_OPTION: object()}
        with pytest.raises(PluginOptionsError):
            search_plugin_class(contract_space, goal=Goal.MAXIMIZE, seed=0, options=options)

    def test_answers_a_mapping_of_every_active_name_or_none(
        self, new_plugin: Callable[[], SearchPlugin], contract_space: SearchSpace
    ) -> None:
        answers, _ = _run(new_plugin(), self.steps)
        assert answers, "no suggestion was asked for"
        for answer in answers:
            assert answer is None or isinstance(answer, Mapping | Suggestion | Wait)
        for params in _params(answers):
            assert isinstance(params, Mapping)
            assert sorted(params) == sorted(p.name for p in contract_space.active(params))

    def test_continues_only_an_ended_trial_once(
        self, new_plugin: Callable[[], SearchPlugin]
    ) -> None:
        # Two trials in one checkpoint folder at once, or one after the other from the same
        # start, would corrupt it: the daemon refuses such a suggestion.
        answers, history = _run(new_plugin(), self.steps)
        continued: set[int] = set()
        for number, answer in enumerate(answers):
            if answer is None or isinstance(answer, Wait):
                continue
            parent = as_suggestion(answer).continues
            if parent is not None:
                ended = {t.number for t in history[:number] if t.ended}
                assert parent in ended, f"trial {number} continues {parent}, not ended"
                assert parent not in continued, f"trial {parent} continued twice"
                continued.add(parent)

    def test_suggestions_lie_inside_the_space(
        self, new_plugin: Callable[[], SearchPlugin], contract_space: SearchSpace
    ) -> None:
        answers, _ = _run(new_plugin(), self.steps)
        problems = [
            f"trial {number}: {problem}"
            for number, answer in enumerate(_params(answers))
            for param in contract_space.active(answer)
            if param.name in answer
            and (problem := check_value(param, answer[param.name])) is not None
        ]
        assert not problems, "\n".join(problems)

    def test_conditional_parameters_are_set_exactly_when_active(
        self,
        search_plugin_class: type[SearchPlugin],
        search_plugin_options: Mapping[str, Any],
    ) -> None:
        # Longer than the other checks, so that a model-based plugin is past its start-up; the
        # history also holds trials of an earlier experiment (negative numbers) that set every
        # parameter, active or not, as one without conditions would have.
        space = CONTRACT_SPACES["conditional"]
        full = space.from_unit([0.3] * len(space))
        foreign = {**{p.name: _any_value(p) for p in space}, **full}
        history = [_trial(-1 - i, foreign) for i in range(3)]
        plugin = search_plugin_class(space, goal=Goal.MINIMIZE, seed=7,
                                     options=search_plugin_options)
        problems = []
        for number in range(5 * self.steps):
            answer = plugin.suggest(number, tuple(history))
            if answer is None or isinstance(answer, Wait):
                break
            params = as_suggestion(answer).params
            wanted = {p.name for p in space.active(params)}
            if set(params) != wanted:
                problems.append(f"trial {number}: {sorted(params)} instead of {sorted(wanted)}")
            history.append(_trial(number, answer))
        assert not problems

    def test_same_inputs_give_the_same_suggestion(
        self, new_plugin: Callable[[], SearchPlugin]
    ) -> None:
        _, history = _run(new_plugin(), self.steps)
        first, second = new_plugin(), new_plugin()
        for number in range(len(history) + 1):
            past = tuple(history[:number])
            once = _plain([first.suggest(number, past)])
            # Asked twice, and asked of another fresh instance: an answer that depends on how
            # often the plugin was called would change the search after a daemon restart.
            assert _plain([first.suggest(number, past)]) == once
            assert _plain([second.suggest(number, past)]) == once

    def test_a_fresh_instance_continues_the_same_search(
        self, new_plugin: Callable[[], SearchPlugin]
    ) -> None:
        answers, history = _run(new_plugin(), self.steps)
        for cut in sorted({0, 1, len(history) // 2, len(history)}):
            resumed, _ = _run(new_plugin(), self.steps, history[:cut])
            assert _plain(resumed) == _plain(answers[cut:]), f"restarted after {cut} trials"

    def test_a_daemon_restarted_mid_search_suggests_the_same(
        self, new_plugin: Callable[[], SearchPlugin]
    ) -> None:
        # The daemon died with trials running. The plugin that lived on sees them `running`;
        # the restarted daemon rebuilds the plugin from scratch and hands it the log's views,
        # where every trial that was running is `interrupted` (restore.py), without a result,
        # waiting to run again. Both must answer alike: a plugin that counts only running and
        # queued trials as pending suggests differently after a crash. Checked on the search
        # alone, and after an earlier experiment's finished trials (resume_from), which take a
        # model-based plugin past its start-up, where pending trials start to count.
        earlier, _ = _run(new_plugin(), 10)
        for prior in ([], _earlier_experiment(earlier)):
            _, history = _run(new_plugin(), self.steps, prior=prior)
            lived_on = new_plugin()
            for pending in (1, 2):
                for cut in sorted({pending, len(history) // 2, len(history)}):
                    if cut < pending:
                        continue
                    live = [*prior, *_still_running(history[:cut], pending)]
                    expected = _plain([lived_on.suggest(cut, tuple(live))])
                    restarted = _plain([new_plugin().suggest(cut, tuple(_restored(live)))])
                    assert restarted == expected, (
                        f"after {cut} trials ({len(prior)} of an earlier experiment before them)"
                        f" with {pending} running: the plugin that lived on suggests"
                        f" {expected}, one restarted (the running trials now `interrupted`)"
                        f" {restarted}")

    def test_trials_of_an_earlier_experiment_are_taken_purely(
        self, new_plugin: Callable[[], SearchPlugin], contract_space: SearchSpace
    ) -> None:
        # resume_from: the history starts with an earlier experiment's finished trials,
        # numbered -N ... -1 Suggestions stay inside the space and are the same for a fresh
        # instance (the daemon rebuilds the plugin after a restart, the prior trials too).
        earlier, _ = _run(new_plugin(), 5)
        prior = _earlier_experiment(earlier)

        def run_after(plugin: SearchPlugin, before: Sequence[TrialView]) -> list[Any]:
            # The new experiment numbers its own trials from 0; its history is prior + own.
            own: list[TrialView] = []
            answers: list[Answer] = []
            for number in range(self.steps // 2):
                answer = plugin.suggest(number, (*before, *own))
                answers.append(answer)
                if answer is None or isinstance(answer, Wait):
                    break
                own.append(_trial(number, answer))
            return _plain(answers)

        answers = run_after(new_plugin(), prior)
        _check_answers(contract_space, answers)
        assert run_after(new_plugin(), [rebuilt(t) for t in prior]) == answers

    def test_trials_of_an_earlier_experiment_that_do_not_fit_the_space_are_ignored(
        self, new_plugin: Callable[[], SearchPlugin], contract_space: SearchSpace
    ) -> None:
        # resume_from may name an experiment with another space: its trials may lack a
        # parameter, add one, or hold a value of another type, out of range or not listed.
        # The daemon hands them over as they are; a plugin must take them without raising
        # (ignoring what does not fit) and still answer inside the space, alike when rebuilt.
        earlier, _ = _run(new_plugin(), 10)
        misfits = _misfits(contract_space)
        fitting = [as_suggestion(a).params for a in earlier
                   if a is not None and not isinstance(a, Wait)]
        mixed: list[Mapping[str, ParamValue]] = []
        for i in range(max(len(fitting), len(misfits))):  # the last, -1, a misfit too
            mixed += [*fitting[i:i + 1], *(params for _, params in misfits[i:i + 1])]
        prior = _earlier_experiment(mixed)
        try:
            answers, _ = _run(new_plugin(), self.steps // 2, prior=prior)
        except Exception as exc:
            culprits = [what for what, params in misfits
                        if _raises(new_plugin(), _earlier_experiment([*fitting, params]))]
            pytest.fail(
                f"suggest raised {type(exc).__name__}: {exc} given trials of an earlier"
                f" experiment (resume_from) that do not fit the space; it must ignore them"
                f" (docs/writing-plugins.md, section 2). It raises for a trial with:"
                f" {'; '.join(culprits) or 'none of them alone'}")
        _check_answers(contract_space, _plain(answers))
        again, _ = _run(new_plugin(), self.steps // 2, prior=[rebuilt(t) for t in prior])
        assert _plain(again) == _plain(answers)


def _raises(plugin: SearchPlugin, prior: Sequence[TrialView]) -> bool:
    """Whether ``plugin`` raises when asked for trial 0 after ``prior``."""
    try:
        plugin.suggest(0, tuple(prior))
    except Exception:
        return True
    return False


def _check_answers(space: SearchSpace, answers: Sequence[Any]) -> None:
    """Answers (as :func:`_plain` gives them) name the active parameters, each value inside."""
    problems = []
    for number, answer in enumerate(answers):
        if not isinstance(answer, tuple):  # None or WAIT; trials are (params, budget, continues)
            continue
        params = answer[0]
        names, wanted = sorted(params), sorted(p.name for p in space.active(params))
        if names != wanted:
            problems.append(f"trial {number}: {names} instead of {wanted}")
        problems += [f"trial {number}: {problem}" for p in space.active(params)
                     if p.name in params and (problem := check_value(p, params[p.name]))]
    assert not problems, "\n".join(problems)


def _stopping_calls(
    metric: str,
) -> list[tuple[TrialView, list[dict[str, Any]], tuple[TrialView, ...]]]:
    """A running trial's report batches, with reports missing the metric or carrying NaN, and a
    few other trials (finished, failed, running) beside it."""
    curve = [0.2, 0.35, 0.5, float("nan"), 0.62, 0.7, 0.74, 0.99, 0.995, 1.2]
    others = (
        _trial(0, {}),
        TrialView(1, {}, TrialState.COMPLETED, 0.8, (0.3, 0.6, 0.8), (1, 2, 3), {metric: 0.8}),
        TrialView(2, {}, TrialState.FAILED, None, (0.1,), (1,), {metric: 0.1}),
        TrialView(3, {}, TrialState.RUNNING, None, (0.2, 0.4), (1, 2), {metric: 0.4}),
    )
    calls: list[tuple[TrialView, list[dict[str, Any]], tuple[TrialView, ...]]] = []
    values: list[float] = []
    steps: list[int] = []
    for i, value in enumerate(curve, start=1):
        batch: list[dict[str, Any]] = [{"training_iteration": i, "loss": 1 - value}]
        if i % 3:  # every third batch lacks the metric altogether
            batch.append({"training_iteration": i, metric: value, "extra": "text"})
            values.append(value)
            steps.append(i)
        trial = TrialView(9, {}, TrialState.RUNNING, None, tuple(values), tuple(steps), batch[-1])
        calls.append((trial, batch, others[: i % (len(others) + 1)]))
    return calls


class StoppingPluginContract:
    """The contract every stopping plugin keeps; subclass as ``Test...`` to run it."""

    plugin_name: ClassVar[str | None] = None
    metric: ClassVar[str] = "score"

    @pytest.fixture
    def stopping_plugin_class(self) -> type[StoppingPlugin]:
        """The class under test: by default the one registered as :attr:`plugin_name`."""
        if self.plugin_name is None:
            pytest.fail("set plugin_name or override the stopping_plugin_class fixture")
        return load_stopping_plugin(self.plugin_name)

    @pytest.fixture
    def stopping_plugin_options(self) -> Mapping[str, Any]:
        """Options to construct the plugin with (default: none)."""
        return {}

    @pytest.fixture(params=[Goal.MAXIMIZE, Goal.MINIMIZE], ids=["max", "min"])
    def new_plugin(
        self,
        request: pytest.FixtureRequest,
        stopping_plugin_class: type[StoppingPlugin],
        stopping_plugin_options: Mapping[str, Any],
    ) -> Callable[[], StoppingPlugin]:
        """A factory of fresh, identically configured instances."""
        goal: Goal = request.param
        return lambda: stopping_plugin_class(
            metric=self.metric, goal=goal, options=stopping_plugin_options
        )

    def test_summary_is_one_line(self, stopping_plugin_class: type[StoppingPlugin]) -> None:
        summary = stopping_plugin_class.summary
        assert isinstance(summary, str) and summary.strip() and "\n" not in summary

    def test_unknown_option_is_refused(
        self,
        stopping_plugin_class: type[StoppingPlugin],
        stopping_plugin_options: Mapping[str, Any],
    ) -> None:
        options = {**stopping_plugin_options, _BAD_OPTION: object()}
        with pytest.raises(PluginOptionsError):
            stopping_plugin_class(metric=self.metric, goal=Goal.MAXIMIZE, options=options)

    def test_answers_none_or_a_reason(self, new_plugin: Callable[[], StoppingPlugin]) -> None:
        plugin = new_plugin()
        for trial, batch, others in _stopping_calls(self.metric):
            answer = plugin.should_stop(trial, batch, others)
            assert answer is None or (isinstance(answer, str) and answer.strip())

    def test_answers_are_deterministic(self, new_plugin: Callable[[], StoppingPlugin]) -> None:
        calls = _stopping_calls(self.metric)
        first, second = new_plugin(), new_plugin()
        seen = [first.should_stop(*call) for call in calls]
        assert [second.should_stop(*call) for call in calls] == seen
        # A restarted daemon asks a fresh instance about the latest batch only, with views it
        # rebuilt from the log.
        assert [new_plugin().should_stop(*call) for call in calls] == seen
        assert [new_plugin().should_stop(rebuilt(trial), [dict(r) for r in batch],
                                         tuple(rebuilt(o) for o in others))
                for trial, batch, others in calls] == seen

    def test_missing_metric_and_empty_history_are_fine(
        self, new_plugin: Callable[[], StoppingPlugin]
    ) -> None:
        trial = TrialView(0, {}, TrialState.RUNNING)
        batches: list[list[dict[str, Any]]] = [
            [], [{}], [{"training_iteration": 1}], [{"loss": 0.5, "note": "warmup"}]
        ]
        for batch in batches:
            answer = new_plugin().should_stop(trial, batch, ())
            assert answer is None or (isinstance(answer, str) and answer.strip())
