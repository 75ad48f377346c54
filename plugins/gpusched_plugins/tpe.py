"""``tpe``: a multivariate tree-structured Parzen estimator (TPE), after Optuna's ``TPESampler``
with ``multivariate=True`` and Bergstra et al.'s Hyperopt.

The algorithm, for trial ``number``:

1. **Observations.** Every trial of the history that is :attr:`TrialView.finished` (completed, or
   stopped with an objective) and whose parameters all fit the space is an observation, those of
   a resumed experiment (negative numbers) included. Failed and cancelled trials, trials without
   an objective and trials with a NaN objective are *ignored* (as Optuna ignores failed trials),
   and so is a trial whose parameters do not fit the space (a name missing, a value not listed,
   not a number, outside ``[min, max]`` or off the step, as a resumed experiment's wider space
   may have them: such a value is not modelled at the range's edge).
2. **Start-up.** While there are fewer than ``n_startup_trials`` observations (finished trials,
   not trial numbers: as in Optuna, parallel workers keep drawing at random until that many
   results are in), the point is the one :mod:`random <gpusched_plugins.random_search>` search
   would give trial ``number``: ``space.from_unit(default_rng(entropy).random(k))``, where
   ``entropy`` is ``(seed, number)``, with more in it when the history starts with an earlier
   experiment's trials (``resume_from``; :func:`~gpusched_plugins.random_search.draw_entropy`:
   else a resumed experiment with the same seed drew the earlier one's start-up points again).
3. **Split.** Observations are sorted from best to worst (``goal`` says which way; ties go to the
   lower trial number); the best ``n_below`` form the "good" group, the others the "bad" group.
   ``n_below = min(ceil(0.1 n), 25)`` for ``n`` observations (Optuna's default gamma), or
   ``ceil(gamma n)`` when the ``gamma`` option gives a fraction.
4. **Constant liar.** Trials of this experiment that were proposed but have no result yet
   (``queued``, ``running``, or ``interrupted`` and waiting to run again) join the *bad* group, as
   if they had returned the worst objective seen. Their neighbourhood then looks unpromising, so
   parallel workers asking one after the other are steered away from each other's points instead
   of all proposing the current favourite (Optuna's ``constant_liar=True``). On top of Optuna's
   rule, a candidate equal to a pending trial's parameters is never chosen while another
   candidate is left (on a small integer or categorical space the lie alone may not outweigh a
   sharp peak of ``l``). Pending trials of a resumed experiment (negative numbers) are stale
   and ignored; so is all of this with ``constant_liar: false``.
5. **Two Parzen estimators**, ``l(x)`` over the good group and ``g(x)`` over the bad group, each
   a mixture with one *joint* kernel per observation plus one prior kernel:

   - numeric ranges (``double``, ``integer``, any scale or step) live in the unit interval of
     :meth:`Param.to_unit`, so ``log``, ``reverse_log``, steps and integers are all the
     :class:`Param` mapping's business. A kernel is a normal truncated to [0, 1], centred on the
     observation, as wide along each coordinate as the larger gap to its two neighbours among
     the group's observations (Hyperopt's and Optuna 5's rule; the range's ends count as
     neighbours except for the outermost centres) clipped by Hyperopt's "magic clip" to
     ``[1 / min(100, N + 2), 1]``, where ``N`` counts the trials of both groups together
     (Optuna counts the group's own: see below). An ``integer`` or stepped range's kernel is
     no narrower than one value's cell (1 over its number of values): narrower says nothing
     finer than "this value" and starves the neighbouring values, so a search could lock onto
     the value next to the best. In a space with ``discrete`` or ``categorical`` parameters,
     kernels are no narrower than a quarter of older Optuna versions' multivariate bandwidth
     ``0.2 n^(-1/(d + 4))`` (``n`` the group's observations, ``d`` the space's parameters):
     narrower, ``g(x)`` near a candidate no longer sees how common a list's value is among the
     bad trials, and a search can lock onto one value for good. The prior kernel is centred at
     0.5 with width 1;
   - ``discrete`` and ``categorical`` parameters are categorical distributions: an observation's
     kernel gives its own value weight 1 plus ``1 / (n + 1)`` to every value, normalised (the
     prior's smoothing); the prior kernel is uniform;
   - the mixture weights are Optuna's: 1 each for the 25 most recent observations, a linear ramp
     from ``1/n`` for older ones, 1 for the prior; normalised. "Recent" is by trial number.

6. **Expected improvement.** ``n_ei_candidates`` points are drawn from ``l``: the first
   ``round(incumbent_share * n_ei_candidates)`` (12 of 24 by default) from the kernel of the
   *incumbent*, the best observation, the others from a kernel picked by its weight (Optuna's
   draw); every coordinate is drawn from the chosen kernel. They are snapped to values through
   :meth:`Param.from_unit` (so an integer candidate is scored where it will actually run), and
   the candidate with the largest ``l(x) / g(x)`` is proposed (the first one on a tie). The
   score is unchanged: the incumbent's candidates only make sure the acquisition is also
   maximised where ``l`` is sure to be high, the local search around the best points that
   SMAC's and Optuna's ``GPSampler``'s acquisition optimisers do. Drawn by weight alone, the
   incumbent's kernel gets ``1 / (n_below + 1)`` of the candidates (4 of 24 after 50 trials,
   the prior kernel as many). Measured with ``bench/quality.py``'s functions on seeds the
   change was not developed on (seeds 110..309, median regret): Hartmann 6 0.393 -> 0.305 at
   50 trials and 0.142 -> 0.086 at 100; Branin within noise; the mixed space better at 100
   trials (0.00236 -> 0.00081). ``incumbent_share: 0`` is Optuna's draw.

7. **Conditional parameters** (``when:``). The space is split into the groups of
   :meth:`SearchSpace.groups` (parameters active under the same conditions); without conditions
   that is one group and everything above is unchanged. An observation is a trial whose
   *active* parameters all fit (an inactive one's value, if any, is ignored). The good and bad
   groups are split once over all observations; then each parameter group gets its own ``l``
   and ``g``, fitted only on the trials where it was active (Optuna's approach), with ``d`` its
   own number of parameters. A candidate is drawn group by group in file order, a group only
   where the values drawn before activate it, and scored by the sum of ``log l - log g`` over
   the groups it activates (the tree-structured density of Bergstra et al. is the product of
   its groups' densities). The answer holds the active parameters only.

Everything random comes from ``numpy.random.default_rng(entropy)`` (``entropy`` as in step 2),
and nothing is kept between calls: the answer is a function of ``(seed, number, history)`` only,
so a restarted
daemon, or a fresh instance handed the same history, proposes the same point.

Differences from Optuna's sampler: the magic clip's floor shrinks with the trials of both
groups, not of the group alone (Optuna's good group holds about ``0.1 N`` points, so its floor
stays near a seventh of the range and the good estimator cannot refine below that; measured
with ``bench/quality.py`` this is what puts ``tpe`` ahead of ``TPESampler`` on Branin); the
one-cell floor of integer and stepped ranges; integer and stepped parameters are scored by the
continuous density at the value's point of the unit interval rather than the kernel's mass over
the value's cell; the categorical smoothing is Optuna's with ``prior_weight=1``; half the
candidates come from the incumbent's kernel (step 6); and the start-up phase is gpusched's
``random`` search rather than Optuna's independent sampler.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from gpusched.plugin_api import (
    Goal,
    Param,
    ParamType,
    ParamValue,
    PluginOptionsError,
    SearchPlugin,
    SearchSpace,
    TrialState,
    TrialView,
)
from gpusched_plugins._fits import fits_range
from gpusched_plugins.random_search import draw_entropy

__all__ = ["TpeSearch", "default_gamma", "default_weights"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_OPTIONS = frozenset({"n_startup_trials", "n_ei_candidates", "gamma", "constant_liar",
                      "incumbent_share"})

# Proposed trials that will (still, or again) run with their parameters: constant-liar material.
_PENDING = frozenset({TrialState.QUEUED, TrialState.RUNNING, TrialState.INTERRUPTED})

_SIGMA0 = 0.2  # older Optuna's SIGMA0_MAGNITUDE for the multivariate bandwidth
_FLOOR_SHARE = 0.25  # of that bandwidth: the narrowest kernel in a space with lists
_PRIOR_WEIGHT = 1.0
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_MAX_REJECTION_ROUNDS = 200


def default_gamma(n: int) -> int:
    """Optuna's default size of the good group for ``n`` observations: ``min(ceil(0.1 n), 25)``."""
    return min(math.ceil(0.1 * n), 25)


def default_weights(n: int) -> FloatArray:
    """Optuna's default mixture weights for ``n`` observations in trial order: the 25 most recent
    weigh 1, older ones ramp up linearly from ``1/n``."""
    if n == 0:
        return np.empty(0, dtype=np.float64)
    if n < 25:
        return np.ones(n, dtype=np.float64)
    ramp = np.linspace(1.0 / n, 1.0, num=n - 25)
    return np.concatenate([ramp, np.ones(25, dtype=np.float64)])


@dataclass(frozen=True)
class _Point:
    """One trial's parameters in the estimator's coordinates."""

    number: int
    numeric: tuple[float, ...]  # Param.to_unit of each numeric range, in space order
    choices: tuple[int, ...]  # the index of each discrete/categorical value, in space order


class _Parzen:
    """A mixture of joint kernels (one per point, plus the prior) over the encoded space."""

    def __init__(self, points: Sequence[_Point], n_observed: int, cells: Sequence[float],
                 n_choices: Sequence[int], n_params: int) -> None:
        n = len(points)
        weights = np.append(default_weights(n), _PRIOR_WEIGHT)
        self.log_weights: FloatArray = np.log(weights / weights.sum())
        self.weights: FloatArray = weights / weights.sum()
        kernels = n + 1
        n_numeric = len(cells)

        # Numeric: truncated normals on [0, 1], each kernel as wide as the gap to its farther
        # neighbour along each coordinate among the group's points (see _neighbour_sigmas;
        # Optuna 5's rule), no narrower than the magic clip over ``n_observed``, the
        # trials of both groups; the prior at 0.5, width 1.
        mus = np.empty((kernels, n_numeric), dtype=np.float64)
        for i, point in enumerate(points):
            mus[i] = point.numeric
        mus[n] = 0.5
        sigmas = np.empty_like(mus)
        sigmas[:n] = _neighbour_sigmas(mus[:n], n_observed + 1)
        # An integer's or a stepped range's kernel no narrower than one value's cell: narrower
        # says nothing finer than "this value" and only starves its neighbours, so a search can
        # lock onto a value next to the best one for good.
        sigmas[:n] = np.maximum(sigmas[:n], np.asarray(cells, dtype=np.float64))
        if n_choices:
            # With lists in the space, kernels this narrow blind g(x) to how common a list's
            # value is among the bad trials near a candidate, and a search can lock onto one
            # value for good; so no narrower than a quarter of Optuna's multivariate bandwidth.
            floor = _FLOOR_SHARE * _SIGMA0 * max(n, 1) ** (-1.0 / (n_params + 4))
            sigmas[:n] = np.maximum(sigmas[:n], floor)
        sigmas[n] = 1.0
        self.mus: FloatArray = mus
        self.sigmas: FloatArray = sigmas
        mass = _normal_cdf((1.0 - mus) / sigmas) - _normal_cdf((0.0 - mus) / sigmas)
        # Every centre lies in [0, 1] and sigma <= 1, so the mass is >= 0.34: no underflow.
        self.log_norm: FloatArray = np.log(mass) + np.log(sigmas) + _LOG_SQRT_2PI

        # Categorical: each kernel favours its own value, smoothed by the prior weight.
        self.choice_probs: list[FloatArray] = []
        for d, count in enumerate(n_choices):
            table = np.full((kernels, count), _PRIOR_WEIGHT / kernels, dtype=np.float64)
            for i, point in enumerate(points):
                table[i, point.choices[d]] += 1.0
            table /= table.sum(axis=1, keepdims=True)
            self.choice_probs.append(table)

    def sample(self, rng: np.random.Generator, size: int, focus: int | None = None,
               n_focus: int = 0) -> tuple[FloatArray, IntArray]:
        """``size`` draws: unit-interval coordinates ``(size, n_numeric)`` and value indices
        ``(size, n_categorical)``. The first ``n_focus`` draws come from kernel ``focus`` (the
        incumbent's) when it is given, the others from a kernel picked by its weight."""
        kernel = rng.choice(len(self.weights), size=size, p=self.weights)
        if focus is not None:
            kernel[:n_focus] = focus
        mus, sigmas = self.mus[kernel], self.sigmas[kernel]
        numeric = np.empty_like(mus)
        todo = np.ones(mus.shape, dtype=bool)
        # Rejection sampling: each draw lands in [0, 1] with probability >= 0.34 (see log_norm),
        # so this ends fast; the stream, and so the answer, is still fixed by the seed.
        for _ in range(_MAX_REJECTION_ROUNDS):
            if not todo.any():
                break
            draw = rng.normal(mus, sigmas)
            accept = todo & (draw >= 0.0) & (draw <= 1.0)
            numeric[accept] = draw[accept]
            todo &= ~accept
        numeric[todo] = np.clip(mus[todo], 0.0, 1.0)  # unreachable in practice
        choices = np.empty((size, len(self.choice_probs)), dtype=np.int64)
        for d, table in enumerate(self.choice_probs):
            cumulative = np.cumsum(table[kernel], axis=1)
            u = rng.random(size)
            index = (u[:, None] >= cumulative).sum(axis=1)
            choices[:, d] = np.minimum(index, table.shape[1] - 1)
        return numeric, choices

    def log_pdf(self, numeric: FloatArray, choices: IntArray) -> FloatArray:
        """The mixture's log density at each of the points ``(m, ...)``: shape ``(m,)``."""
        z = (numeric[:, None, :] - self.mus[None, :, :]) / self.sigmas[None, :, :]
        per_kernel = (-0.5 * z**2 - self.log_norm[None, :, :]).sum(axis=2)  # (m, kernels)
        for d, table in enumerate(self.choice_probs):
            per_kernel += np.log(table[:, choices[:, d]]).T
        per_kernel += self.log_weights[None, :]
        top = per_kernel.max(axis=1)
        out: FloatArray = top + np.log(np.exp(per_kernel - top[:, None]).sum(axis=1))
        return out


def _neighbour_sigmas(mus: FloatArray, kernels: int) -> FloatArray:
    """Hyperopt's and Optuna 5's bandwidths, per coordinate: each centre's kernel is as wide as
    the larger gap to its two neighbours in sorted order (the range's ends count as neighbours,
    except that the outermost centres look inwards only), clipped to ``[1 / min(100, 1 +
    kernels), 1]`` (the "magic clip"). Dense clusters of good points get narrow kernels, so the
    search refines where it found something, while lone points keep wide ones; one bandwidth
    for the whole group (Scott's rule) cannot do both.

    ``kernels`` is one more than the number of trials of both groups together (those where the
    parameter group is active: the whole history without conditions), where Optuna counts the
    group's own kernels: the good group stays at about ``0.1 n`` points
    (5 after 50 trials), so Optuna's floor stays at a seventh of the range and the good
    estimator cannot refine below that; counted over the history it shrinks as evidence
    accumulates (1/52 after 50 trials), the clip's purpose."""
    count, dims = mus.shape
    out = np.empty_like(mus)
    for d in range(dims):
        order = np.argsort(mus[:, d], kind="stable")
        ends = np.concatenate([[0.0], mus[order, d], [1.0]])
        gaps = np.maximum(ends[1:-1] - ends[:-2], ends[2:] - ends[1:-1])
        if count >= 2:
            gaps[0] = ends[2] - ends[1]
            gaps[-1] = ends[-2] - ends[-3]
        out[order, d] = gaps
    return np.clip(out, 1.0 / min(100.0, 1.0 + kernels), 1.0)


def _normal_cdf(x: FloatArray) -> FloatArray:
    """The standard normal CDF, element by element (numpy has no erf; the arrays are small)."""
    flat = [0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.ravel().tolist()]
    return np.asarray(flat, dtype=np.float64).reshape(x.shape)


class TpeSearch(SearchPlugin):
    """Multivariate TPE with a constant liar; see the module docstring for the algorithm.

    Options: ``n_startup_trials`` (int >= 0, default 10), ``n_ei_candidates`` (int >= 1,
    default 24), ``gamma`` (fraction in (0, 1], default Optuna's ``min(ceil(0.1 n), 25)``),
    ``constant_liar`` (bool, default true), ``incumbent_share`` (fraction in [0, 1] of the
    candidates drawn from the best observation's kernel, default 0.5; 0 is Optuna's draw).
    """

    summary: ClassVar[str] = ("multivariate tree-structured Parzen estimator (Optuna's TPE), "
                              "random for the first trials, constant liar for parallel ones")

    def __init__(
        self, space: SearchSpace, *, goal: Goal, seed: int, options: Mapping[str, Any]
    ) -> None:
        super().__init__(space, goal=goal, seed=seed, options=options)
        unknown = sorted(map(str, set(self.options) - _OPTIONS))
        if unknown:
            raise PluginOptionsError(
                f"unknown tpe option(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_OPTIONS))})"
            )
        self.n_startup_trials = _whole(self.options, "n_startup_trials", 10, low=0)
        self.n_ei_candidates = _whole(self.options, "n_ei_candidates", 24, low=1)
        gamma = self.options.get("gamma")
        if gamma is not None and (
            isinstance(gamma, bool) or not isinstance(gamma, int | float)
            or not 0.0 < gamma <= 1.0  # NaN fails this too
        ):
            raise PluginOptionsError(
                f"gamma must be a fraction greater than 0 and at most 1 (got {gamma!r})"
            )
        self.gamma: float | None = None if gamma is None else float(gamma)
        liar = self.options.get("constant_liar", True)
        if not isinstance(liar, bool):
            raise PluginOptionsError(f"constant_liar must be true or false (got {liar!r})")
        self.constant_liar = liar
        share = self.options.get("incumbent_share", 0.5)
        if (isinstance(share, bool) or not isinstance(share, int | float)
                or not 0.0 <= share <= 1.0):  # NaN fails this too
            raise PluginOptionsError(
                f"incumbent_share must be a fraction from 0 to 1 (got {share!r})"
            )
        self.incumbent_share = float(share)
        # numpy's SeedSequence refuses negative entries; say so here rather than at suggest time.
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise PluginOptionsError(f"seed must be a non-negative integer (got {seed!r})")
        # Fixed facts about the space (not state: they never change an answer).
        self._groups = tuple(_Group(params) for params in space.groups())

    def suggest(self, number: int, history: Sequence[TrialView]) -> Mapping[str, ParamValue]:
        """Trial ``number``'s point: random during start-up, then the best of the candidates
        drawn from the good group's estimator by ``l(x) / g(x)``."""
        rng = np.random.default_rng(draw_entropy(self.seed, number, history))
        observed: list[tuple[float, _Trial]] = []
        pending: list[_Trial] = []
        pending_params: list[Mapping[str, ParamValue]] = []
        for trial in history:
            if trial.finished:
                assert trial.objective is not None
                objective = float(trial.objective)
                if math.isnan(objective):
                    continue
                point = self._encode(trial)
                if point is not None:
                    loss = -objective if self.goal == Goal.MAXIMIZE else objective
                    observed.append((loss, point))
            elif self.constant_liar and trial.number >= 0 and trial.state in _PENDING:
                point = self._encode(trial)
                if point is not None:
                    pending.append(point)
                    pending_params.append(trial.params)

        if len(observed) < self.n_startup_trials or not self.space.params:
            # Exactly random search's draw for this (seed, number).
            unit: list[float] = rng.random(len(self.space)).tolist()
            return self.space.from_unit(unit)

        observed.sort(key=lambda pair: (pair[0], pair[1].number))
        n = len(observed)
        n_below = default_gamma(n) if self.gamma is None else math.ceil(self.gamma * n)
        n_below = min(max(n_below, 1 if n else 0), n)
        below = sorted((p for _, p in observed[:n_below]), key=lambda p: p.number)
        above = sorted([*(p for _, p in observed[n_below:]), *pending], key=lambda p: p.number)

        incumbent = observed[0][1].number if observed else None  # none: no start-up, no results
        values, score = self._candidates(rng, below, above, incumbent)
        # The liar lowers l/g around a pending point but may not outweigh a sharp peak of l:
        # never propose a pending trial's exact parameters while another candidate exists.
        taken = {self._key(p) for p in pending_params}
        fresh = np.array([self._key(v) not in taken for v in values])
        if fresh.any():
            score = np.where(fresh, score, -np.inf)
        best = values[int(np.argmax(score))]
        return {name: best[name] for name in self.space.names() if name in best}

    def _candidates(self, rng: np.random.Generator, below: Sequence[_Trial],
                    above: Sequence[_Trial], incumbent: int | None
                    ) -> tuple[list[dict[str, ParamValue]], FloatArray]:
        """``n_ei_candidates`` points drawn from the good estimators, snapped to the values they
        stand for, and each one's ``log l(x) - log g(x)``: summed over the groups it activates,
        each group drawn and scored by its own pair of estimators (see :class:`_Group`). The
        first ``round(incumbent_share * n_ei_candidates)`` are drawn from the kernel of trial
        ``incumbent`` (the best observation) in each group where it is active, if any."""
        size = self.n_ei_candidates
        n_focus = round(self.incumbent_share * size)
        values: list[dict[str, ParamValue]] = [{} for _ in range(size)]
        score = np.zeros(size, dtype=np.float64)
        for g, group in enumerate(self._groups):
            # (trial number, point): the good kernels in the order _Parzen keeps them.
            good_of = [(t.number, p) for t in below if (p := t.points[g]) is not None]
            good_points = [p for _, p in good_of]
            bad_points = [p for t in above if (p := t.points[g]) is not None]
            seen = len(good_points) + len(bad_points)
            good = _Parzen(good_points, seen, *group.args)
            bad = _Parzen(bad_points, seen, *group.args)
            good_trials = [number for number, _ in good_of]
            focus = good_trials.index(incumbent) if incumbent in good_trials else None
            numeric, choices = good.sample(rng, size, focus, n_focus)
            on = np.array([group.active(candidate) for candidate in values], dtype=bool)
            for i in np.flatnonzero(on):
                values[i].update(group.snap(numeric, choices, int(i)))
            ratio = good.log_pdf(numeric, choices) - bad.log_pdf(numeric, choices)
            score += np.where(on, ratio, 0.0)
        return values, score

    def _key(self, params: Mapping[str, ParamValue]) -> tuple[tuple[str, float | str], ...]:
        """A hashable identity of a point: numbers compare as floats (3 == 3.0)."""
        return tuple(
            (param.name, float(value) if isinstance(value, int | float) else str(value))
            for param in self.space.active(params)
            if param.name in params
            for value in (params[param.name],)
        )

    def _encode(self, trial: TrialView) -> _Trial | None:
        """``trial``'s parameters as estimator coordinates, group by group (None for a group it
        leaves inactive), or None when the values of its active parameters do not fit."""
        points: list[_Point | None] = []
        active: dict[str, ParamValue] = {}  # the values of the groups active so far
        for group in self._groups:
            if not group.active(active):
                points.append(None)
                continue
            point = group.encode(trial.number, trial.params)
            if point is None:
                return None
            points.append(point)
            active.update((p.name, trial.params[p.name]) for p in group.params)
        return _Trial(trial.number, tuple(points))


@dataclass(frozen=True)
class _Trial:
    """One trial in the estimators' coordinates: a point per group, None where inactive."""

    number: int
    points: tuple[_Point | None, ...]


class _Group:
    """Parameters that are active together, modelled jointly by their own pair of estimators.

    Without conditional parameters the whole space is one group. With them, each group of
    :meth:`SearchSpace.groups` gets its ``l`` and ``g`` fitted only on the trials where it was
    active (the good and bad trials are split once, over all trials, as Optuna's group
    decomposition does), and a candidate's score is the sum of ``log l - log g`` over the groups
    it activates: the tree-structured density of Bergstra et al. is the product of its groups'.
    """

    def __init__(self, params: Sequence[Param]) -> None:
        self.params = tuple(params)
        self.numeric = tuple(p for p in params if p.is_numeric_range)
        self.categorical = tuple(p for p in params if not p.is_numeric_range)
        self.args = (tuple(_cell(p) for p in self.numeric),
                     [len(p.values) for p in self.categorical], len(params))

    def active(self, values: Mapping[str, object]) -> bool:
        """True when the group is active after ``values`` (the earlier groups' values): its
        parameters share their requirements, so the first one answers for all."""
        return self.params[0].conditions_hold(values)

    def encode(self, number: int, params: Mapping[str, ParamValue]) -> _Point | None:
        """The group's values in ``params`` as a point, or None when one does not fit."""
        numeric: list[float] = []
        for param in self.numeric:
            value = params.get(param.name)
            # Out of the range or off the step (a resumed experiment's wider space) is no
            # point of this space: to_unit would clamp it to the edge (see _fits.py).
            if not fits_range(param, value):
                return None
            assert isinstance(value, int | float)
            numeric.append(param.to_unit(value))
        choices: list[int] = []
        for param in self.categorical:
            index = _index_of(param, params.get(param.name))
            if index is None:
                return None
            choices.append(index)
        return _Point(number, tuple(numeric), tuple(choices))

    def snap(self, numeric: FloatArray, choices: IntArray, i: int) -> dict[str, ParamValue]:
        """Candidate ``i``'s values; its numeric coordinates move to where the values lie, so
        that it is scored where it will actually run."""
        out: dict[str, ParamValue] = {}
        for d, param in enumerate(self.numeric):
            value = param.from_unit(float(numeric[i, d]))
            out[param.name] = value
            numeric[i, d] = param.to_unit(value)
        for d, param in enumerate(self.categorical):
            out[param.name] = param.values[int(choices[i, d])]
        return out


def _cell(param: Param) -> float:
    """The share of the unit interval one value of an integer or stepped range takes (1 over the
    number of values), 0 for a continuous range."""
    if param.type is not ParamType.INTEGER and param.step is None:
        return 0.0
    assert param.low is not None and param.high is not None
    step = 1.0 if param.step is None else float(param.step)
    count = math.floor((float(param.high) - float(param.low)) / step + 1e-9) + 1
    return 1.0 / max(count, 1)


def _index_of(param: Param, value: object) -> int | None:
    """The position of ``value`` in ``param.values`` (a JSON-mangled 3.0 finds 3), or None."""
    for i, candidate in enumerate(param.values):
        if isinstance(candidate, bool) is isinstance(value, bool) and candidate == value:
            return i
    return None


def _whole(options: Mapping[str, Any], key: str, default: int, *, low: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PluginOptionsError(f"{key} must be a whole number >= {low} (got {value!r})")
    return value
