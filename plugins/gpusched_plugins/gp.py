"""``gp``: Gaussian-process Bayesian optimisation, after KerasTuner's ``BayesianOptimization``.

Written with numpy alone (no scipy, scikit-learn or Optuna). For trial ``number``:

1. **Observations.** Every trial of the history that is :attr:`TrialView.finished` (completed, or
   stopped with an objective) and whose parameters all fit the space is an observation, those of
   a resumed experiment included. A NaN objective is ignored; ``+inf``/``-inf`` are clipped to
   the worst/best finite objective. Failed and cancelled trials teach the model nothing, but
   their points still count as *used* (see 8). A trial whose active parameters do not fit the
   space (a name missing, a value not listed, not a number, outside ``[min, max]`` or off the
   step, as a resumed experiment's wider space may have them) is ignored altogether: neither
   an observation nor a used point (its value is not moved to the range's edge).
2. **Start-up.** While there are fewer than ``num_initial_points`` observations (default three
   per parameter, as KerasTuner, but at most ten, Optuna's GPSampler's start-up: see
   :func:`default_initial_points`), the point is the one :mod:`random
   <gpusched_plugins.random_search>` search would give trial ``number``,
   ``space.from_unit(default_rng(entropy).random(k))``, redrawn from the same generator
   only when it repeats an earlier trial's point (possible in a space of integers and lists).
   ``entropy`` is ``(seed, number)``, with more in it when the history starts with an earlier
   experiment's trials (``resume_from``: see
   :func:`~gpusched_plugins.random_search.draw_entropy`).
3. **Encoding.** The model lives in the unit cube of :meth:`Param.to_unit`, so ``log``,
   ``reverse_log``, ``step`` and integers are the :class:`Param` mapping's business. Integers and
   stepped doubles (up to 2,048 values; wider ones are modelled as continuous and rounded by
   :meth:`Param.from_unit`) and ``discrete`` lists whose numbers are monotonic are *ordinal*: a
   point is snapped to the nearest of the values' positions, so the acquisition is scored where
   the trial will actually run. ``categorical`` parameters (and ``discrete`` lists that are not
   monotonic) are one-hot with one length scale per parameter: two different values are at the
   same distance whichever they are.
4. **Objective.** Turned into a minimisation (negated for ``goal: maximize``); the values worse
   than the median are squashed, ``m + s * asinh((y - m) / s)`` (``m`` the median, ``s`` the
   root mean square deviation of the better half from it), which keeps their order but stops a
   few disastrous trials from flattening, through the standardisation, the differences that
   matter near the best ones; then standardised (zero mean, unit variance).
5. **Model.** Matern 5/2 kernel with one length scale per parameter (ARD) and a signal
   variance, plus noise on the diagonal: ``alpha`` (KerasTuner's option: noise in standardised
   units; here the least noise assumed, default 1e-8) plus a fitted part. Length scales, signal
   variance and the fitted noise maximise the log marginal likelihood plus a weak log prior
   (``-(0.1/t + 0.1 t)`` on each inverse squared length scale ``t``, a Gamma(2, 1) on the
   signal variance; it keeps a fit of a handful of points from running off to absurd length
   scales; none on the noise, within 1e-10 .. 1), by an L-BFGS written here, on the logarithms
   of the parameters within wide bounds, from the neutral start (every length scale 1, noise
   1e-4) and two random ones; the best fit wins. A deterministic objective so gets a model
   that interpolates (on Branin a regret of 1e-7 rather than the 1e-4 that KerasTuner's fixed
   ``alpha = 1e-4`` allows), and a noisy one a model that smooths (Branin plus unit Gaussian
   noise: the five best points found are 0.07 from the minimum on average, against 0.15 with
   a fixed small ``alpha``). Beyond 200 observations the hyperparameters are fitted on the 100
   best and 100 others drawn from the seeded generator (the posterior still uses every
   observation).
6. **Parallel trials: a pessimistic kriging believer.** Trials proposed but without a result yet
   (``queued``, ``running``, or ``interrupted`` and waiting to run again) join the data as if
   they had returned the posterior mean plus one posterior standard deviation at their point
   (KerasTuner's "pessimistic estimate" of ongoing trials), the fitted hyperparameters kept. The
   posterior variance there collapses and the believed value is no better than the model's
   guess, so a worker asking while others run is steered away from their points instead of
   proposing the current favourite again; ``ei`` and ``logei`` measure improvement against the
   best of the observed *and* believed values, so a pending point offers none. (A plain
   believer, at the mean, would leave a promising pending point looking as good as ever to EI.)
7. **Acquisition.** ``ucb`` is KerasTuner's: minimise ``mean - beta * std`` of the minimised
   objective. ``ei`` is expected improvement over the best standardised value by more than a
   tenth of the fitted noise's standard deviation (with no margin at all, EI keeps polishing the
   incumbent at the scale of the noise and stops exploring; with the whole of it, the search
   stops short of a smooth minimum); ``logei`` is its logarithm, computed without underflow
   (the same ranking where EI is representable, a ranking still where EI underflows
   to 0). It is maximised over 2,000 uniform random points plus 500 perturbations of the five
   best observations, then refined from ten of those (the best, and nine drawn by roulette with
   probability ``exp(score - best score)``, as Optuna's GPSampler picks its local searches' starts:
   the best few alone tend to lie in the incumbent's basin) by a seeded (1 + 32) evolution
   strategy, 20 rounds (Gaussian steps on the numeric coordinates, half of them along a single
   coordinate, their size doubling on success and halving on failure; categorical coordinates
   redrawn now and then), and last the five best distinct points so far are polished by
   L-BFGS on their continuous coordinates (:mod:`gpusched_plugins._gp_polish`). In a space of
   integers and lists only, with at most 4,096 points, every unused point is scored instead.
8. **No repeats.** The best-scoring point that no earlier trial used, whatever that trial's
   state, is proposed. A candidate counts as the point it decodes to: a wide integer or stepped
   range is searched as a continuous coordinate, and a candidate a fraction of a step from a
   used value is that value again. So a candidate's continuous coordinates are moved to the
   codes of the values :meth:`Param.from_unit` makes of them (``to_unit(from_unit(u))``)
   before it is compared with the used points (lazily, best score first), and the polish of 7
   starts from unused points only. When every candidate is used (a space nearly used up), the
   start-up draws of 2 are tried, and then, in a space of integers, stepped doubles and lists
   whose axes hold at most a million values in all, its points are walked from a seeded start
   until an unused one turns up. In a space of integers, stepped doubles and lists (of that
   size), once every point is used the search is exhausted and the answer is ``None``
   (KerasTuner's oracle likewise stops when it finds no new values).

9. **Conditional parameters** (``when:``). A trial's inactive parameters are imputed with a
   fixed value: 0.5 in the unit cube for a numeric one, all one-hot columns at 0 for a
   categorical one (:mod:`gpusched_plugins._gp_conditions` says why). Every candidate is put
   in a canonical form whose inactive coordinates hold a fixed filler, so "used" and "no
   repeats" compare the active parameters only, a finite space counts each active combination
   once (:meth:`SearchSpace.combinations`), and the answer holds the active parameters only.

The default acquisition is ``logei``. Measured on Branin (40 trials, 20 seeds), Hartmann 6 (60
trials, 10 seeds) and a mixed space (log-scaled double, integer, stepped double, categorical;
40 trials, 10 seeds), it had the best or nearly best median regret everywhere and by far the
best mean: ``ucb`` with KerasTuner's ``beta = 2.6`` has a comparable median but now and then
stays stuck near a point it believes optimal, and is weaker on the mixed space. ``ei`` ranks
like ``logei`` and is kept for comparison.

Everything random comes from ``numpy.random.default_rng(entropy)`` (``entropy`` as in 2), and
nothing is kept between calls: the answer is a function of ``(seed, number, history)`` only, so
a restarted daemon, or a fresh instance handed the same history, proposes the same point.

A suggestion costs about 0.1 s with 100 observations in 10 dimensions, and grows with the cube
of the number of observations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from gpusched.plugin_api import (
    Combinations,
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
from gpusched_plugins._gp_conditions import Activity
from gpusched_plugins._gp_polish import polish
from gpusched_plugins.random_search import draw_entropy

__all__ = ["GpSearch", "ACQUISITIONS", "default_initial_points"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

ACQUISITIONS = ("logei", "ei", "ucb")
"""The acquisition functions offered; the first is the default."""

_OPTIONS = frozenset({"num_initial_points", "alpha", "beta", "acquisition"})
_PENDING = frozenset({TrialState.QUEUED, TrialState.RUNNING, TrialState.INTERRUPTED})

_MAX_DEFAULT_INITIAL = 10  # Optuna GPSampler's n_startup_trials: see default_initial_points
_MAX_GRID = 2048  # integer/step params with more values are modelled as continuous
_MAX_ENUMERATE = 4096  # finite spaces up to this size are scored exhaustively
_SETTLE_BATCH = 32  # candidates settled at a time when their points are checked against used
_MAX_SCAN = 1_000_000  # values in all, for the last resort's scan of a wide countable space
_N_RANDOM = 2000
_N_LOCAL_CENTRES, _N_LOCAL_EACH = 5, 100
_N_STARTS, _N_OFFSPRING, _N_ROUNDS = 10, 32, 20
_N_POLISH = 5
_MARGIN = 0.1  # of the fitted noise's standard deviation: see the docstring, 7.
_FIT_ALL_UP_TO, _FIT_BEST, _FIT_OTHERS = 200, 100, 100
_LOG_T_BOUNDS = (-9.0, 9.0)  # inverse squared length scale: length scale ~0.011 .. ~90
_LOG_S2_BOUNDS = (-4.6, 4.6)  # signal variance 0.01 .. 100 (y is standardised)
_LOG_NOISE_BOUNDS = (-23.0, 0.0)  # the fitted noise on top of alpha: 1e-10 .. 1
_LOG_NOISE_START = math.log(1e-4)
_NOISE_SHAPE_1, _NOISE_RATE = 0.1, 30.0  # Gamma(1.1, 30) on the noise: shape - 1, rate
_SQRT5 = math.sqrt(5.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_erfc = np.frompyfunc(math.erfc, 1, 1)


# ----------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class _Dim:
    """How one parameter is modelled: ``cont`` (a unit coordinate), ``grid`` (a unit coordinate
    snapped to ``codes``, the positions of ``values``) or ``cat`` (an index, one-hot)."""

    param: Param
    kind: str
    values: tuple[ParamValue, ...] = ()
    codes: FloatArray | None = None

    @property
    def size(self) -> int:
        return len(self.values)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _make_dim(param: Param) -> _Dim:
    if param.type is ParamType.CATEGORICAL:
        return _Dim(param, "cat", tuple(param.values))
    if param.type is ParamType.DISCRETE:
        numbers = [float(v) for v in param.values if _is_number(v)]
        if len(numbers) == len(param.values) and len(param.values) > 1:
            steps = np.diff(numbers)
            if bool(np.all(steps > 0)) or bool(np.all(steps < 0)):
                codes = np.array([param.to_unit(v) for v in param.values], dtype=np.float64)
                return _Dim(param, "grid", tuple(param.values), codes)
        return _Dim(param, "cat", tuple(param.values))
    if param.step is not None or param.type is ParamType.INTEGER:
        assert param.low is not None and param.high is not None
        step = param.step if param.step is not None else 1.0
        count = math.floor((float(param.high) - float(param.low)) / step + 1e-9) + 1
        if count <= _MAX_GRID:
            values = tuple(dict.fromkeys(param.grid(2)))
            codes = np.array([param.to_unit(v) for v in values], dtype=np.float64)
            if bool(np.all(np.diff(codes) > 0)):
                return _Dim(param, "grid", values, codes)
    return _Dim(param, "cont")


class _Encoder:
    """Maps between parameter values, *codes* (one column per parameter: a unit coordinate, or a
    category's index) and *features* (unit coordinates and one-hot columns)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.dims = [_make_dim(p) for p in space]
        self.k = len(self.dims)
        self.numeric = np.array([d.kind != "cat" for d in self.dims], dtype=bool)
        self.activity = Activity(self.dims)  # conditional parameters: _gp_conditions.py
        self.continuous = np.array([d.kind == "cont" for d in self.dims], dtype=bool)
        self._cont_dims = [j for j, d in enumerate(self.dims) if d.kind == "cont"]
        self.finite_size: int | None = None
        if self.dims and all(d.kind != "cont" for d in self.dims):
            self.finite_size = self._combinations().size  # len() overflows past 2**63
        # Feature columns: (dimension index, category index or -1).
        columns: list[tuple[int, int]] = []
        for j, dim in enumerate(self.dims):
            if dim.kind == "cat":
                columns.extend((j, c) for c in range(dim.size))
            else:
                columns.append((j, -1))
        self.col_dim = np.array([j for j, _ in columns], dtype=np.int64)
        self.col_cat = np.array([c for _, c in columns], dtype=np.int64)
        # A category's one-hot columns carry weight 1/2 each, so that two different values are
        # at squared distance 1 (before the length scale), like two numeric ends of the range.
        self.col_half = (self.col_cat >= 0).astype(np.float64) * 0.5
        self.col_half[self.col_cat < 0] = 1.0

    def encode(self, params: Mapping[str, ParamValue]) -> tuple[float, ...] | None:
        """The code of a trial's parameters, or None when they do not fit the space."""
        code: list[float] = []
        active = {p.name for p in self.space.active(params)}
        for j, dim in enumerate(self.dims):
            if dim.param.name not in active:
                code.append(float(self.activity.filler[j]))
                continue
            if dim.param.name not in params:
                return None
            value = params[dim.param.name]
            if dim.kind == "cat":
                try:
                    code.append(float(dim.values.index(value)))
                except ValueError:
                    return None
                continue
            if dim.param.type is ParamType.DISCRETE:
                if dim.param.problem_with(value) is not None:  # not listed (True is not 1)
                    return None
            elif not fits_range(dim.param, value):
                # Out of the range or off the step (a resumed experiment's wider space): not a
                # point of this space, neither observed nor used (see _fits.py).
                return None
            u = dim.param.to_unit(value)
            if dim.kind == "grid":
                u = float(self._snap_dim(dim, np.array([u]))[0])
            code.append(u)
        return tuple(code)

    @staticmethod
    def _snap_dim(dim: _Dim, u: FloatArray) -> FloatArray:
        assert dim.codes is not None
        if len(dim.codes) == 1:
            return np.full_like(u, dim.codes[0])
        edges = (dim.codes[1:] + dim.codes[:-1]) / 2
        return dim.codes[np.searchsorted(edges, u)]

    def snap(self, codes: FloatArray) -> FloatArray:
        """Clip numeric coordinates to [0, 1] and move ordinal ones onto their values, in place."""
        for j, dim in enumerate(self.dims):
            if dim.kind != "cat":
                np.clip(codes[:, j], 0.0, 1.0, out=codes[:, j])
            if dim.kind == "grid":
                codes[:, j] = self._snap_dim(dim, codes[:, j])
        return self.activity.canonical(codes)

    def settle(self, codes: FloatArray) -> FloatArray:
        """The codes of the points ``codes`` decode to, in a new array: each continuous
        coordinate moved to the code of the value it decodes to (:meth:`Param.from_unit` rounds
        an integer or a step), then the inactive ones set to the filler. That is the code
        :meth:`encode` gives the decoded point, how an earlier trial that ran it is remembered
        as used; it relies only on ``from_unit`` and ``to_unit`` being each other's inverse on
        values. Ordinal and categorical coordinates are already exact."""
        out = codes.copy()
        for j in self._cont_dims:
            from_unit, to_unit = self.dims[j].param.from_unit, self.dims[j].param.to_unit
            code_of: dict[ParamValue, float] = {}  # rows crowd onto few values near a used one
            column: list[float] = []
            for u in out[:, j].tolist():
                value = from_unit(u)
                code = code_of.get(value)
                if code is None:
                    code = code_of[value] = to_unit(value)
                column.append(code)
            out[:, j] = column
        return self.activity.canonical(out)

    def scan_axes(self) -> list[tuple[ParamValue, ...]] | None:
        """Every value of every parameter, for a space of lists, integers and stepped doubles
        whose axes hold at most ``_MAX_SCAN`` values in all (wide ranges included, unlike
        :attr:`finite_size`); None for any other space."""
        counts: list[int] = []
        for dim in self.dims:
            param = dim.param
            if dim.kind != "cont":
                counts.append(dim.size)
            elif param.step is None and param.type is not ParamType.INTEGER:
                return None  # a double without a step: not countable
            else:
                assert param.low is not None and param.high is not None
                step = param.step if param.step is not None else 1.0
                counts.append(math.floor((float(param.high) - float(param.low)) / step + 1e-9)
                              + 1)
        if sum(counts) > _MAX_SCAN:
            return None
        return [dim.values if dim.kind != "cont" else tuple(dict.fromkeys(dim.param.grid(2)))
                for dim in self.dims]

    def random(self, rng: np.random.Generator, m: int) -> FloatArray:
        """``m`` codes drawn uniformly (each value of a list equally likely)."""
        codes = rng.random((m, self.k))
        for j, dim in enumerate(self.dims):
            if dim.kind == "cat":
                codes[:, j] = np.floor(codes[:, j] * dim.size)
        return self.snap(codes)

    def perturb(self, rng: np.random.Generator, centres: FloatArray, sigma: FloatArray
                ) -> FloatArray:
        """Neighbours of ``centres``: Gaussian steps of size ``sigma`` (one per row) on the
        numeric coordinates (half of the rows on a single coordinate), and each categorical one
        redrawn with probability 1/k."""
        m = len(centres)
        out = centres.copy()
        steps = rng.standard_normal((m, self.k)) * sigma[:, None]
        single = rng.random(m) < 0.5
        chosen = rng.integers(0, self.k, size=m)
        mask = np.ones((m, self.k), dtype=bool)
        mask[single] = False
        mask[single, chosen[single]] = True
        numeric = mask & self.numeric[None, :]
        out[numeric] += steps[numeric]
        redraw = rng.random((m, self.k)) < 1.0 / self.k
        for j, dim in enumerate(self.dims):
            if dim.kind == "cat":
                rows = redraw[:, j] | (single & (chosen == j))
                out[rows, j] = rng.integers(0, dim.size, size=int(rows.sum()))
        return self.snap(out)

    def features(self, codes: FloatArray) -> FloatArray:
        """Unit coordinates and one-hot columns, one row per code."""
        picked = codes[:, self.col_dim]
        cat = self.col_cat >= 0
        out = picked.copy()
        out[:, cat] = (picked[:, cat] == self.col_cat[cat][None, :]).astype(np.float64)
        return self.activity.impute(out, codes, self.col_dim, self.col_cat)

    def _combinations(self) -> Combinations:
        """The distinct points of a finite space (each active combination once)."""
        return self.space.combinations([d.values for d in self.dims])

    def every_code(self) -> FloatArray:
        """All points of a finite space (``finite_size`` of them)."""
        if self.activity.conditional:
            every = self._combinations()
            codes = [self.encode(every.point(i)) for i in range(len(every))]
            return np.array(codes, dtype=np.float64).reshape(-1, self.k)
        axes: list[Sequence[float]] = []
        for dim in self.dims:
            if dim.kind == "cat":
                axes.append([float(i) for i in range(dim.size)])
            else:
                assert dim.codes is not None
                axes.append([float(c) for c in dim.codes])
        return np.array(list(itertools.product(*axes)), dtype=np.float64).reshape(-1, self.k)

    def decode(self, code: Sequence[float]) -> dict[str, ParamValue]:
        out: dict[str, ParamValue] = {}
        on = self.activity.mask(np.array([code], dtype=np.float64))[0]
        for dim, u, active in zip(self.dims, code, on, strict=True):
            if not active:
                continue
            if dim.kind == "cat":
                out[dim.param.name] = dim.values[int(u)]
            elif dim.kind == "grid":
                assert dim.codes is not None
                out[dim.param.name] = dim.values[int(np.argmin(np.abs(dim.codes - u)))]
            else:
                out[dim.param.name] = dim.param.from_unit(float(u))
        return out


class _Unused:
    """Which candidates decode to a point no earlier trial used (see :meth:`_Encoder.settle`),
    asked by index.

    Settling costs a Python call or two per continuous coordinate, and thousands of candidates
    may crowd into the cell of a used value of a wide integer range, where the acquisition
    peaks. So a row is settled only when asked about, together with the next few by score
    (the final choice walks the rows best first), and the answers are kept: the polish's
    choice of starts and the final choice share the work. Rows added by :meth:`extend` (a few
    polished points) are settled at once."""

    def __init__(self, enc: _Encoder, codes: FloatArray, scores: FloatArray,
                 used: set[tuple[float, ...]]) -> None:
        self._enc, self._used = enc, used
        self._codes = codes
        self._order = np.argsort(-scores, kind="stable")
        self._rank = np.empty(len(codes), dtype=np.intp)
        self._rank[self._order] = np.arange(len(codes))
        self._known = np.zeros(len(codes), dtype=bool)
        self._fresh = np.zeros(len(codes), dtype=bool)
        self._extra: list[bool] = []

    def extend(self, codes: FloatArray) -> None:
        self._extra.extend(tuple(row) not in self._used
                           for row in self._enc.settle(codes).tolist())

    def __call__(self, i: int) -> bool:
        if i >= len(self._codes):
            return self._extra[i - len(self._codes)]
        if not self._known[i]:
            rank = int(self._rank[i])
            rows = self._order[rank:rank + _SETTLE_BATCH]
            rows = rows[~self._known[rows]]
            settled = self._enc.settle(self._codes[rows]).tolist()
            self._fresh[rows] = [tuple(row) not in self._used for row in settled]
            self._known[rows] = True
        return bool(self._fresh[i])


# ----------------------------------------------------------------------------- the GP


def _matern(r2: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Matern 5/2 of the squared scaled distance, and its derivative with respect to ``r2``."""
    r = np.sqrt(np.maximum(r2, 0.0))
    e = np.exp(-_SQRT5 * r)
    return (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * e, (-5.0 / 6.0) * (1.0 + _SQRT5 * r) * e


def _cholesky(matrix: FloatArray) -> FloatArray:
    """Cholesky factor, adding jitter to the diagonal if rounding made the matrix indefinite."""
    jitter = 0.0
    for _ in range(8):
        try:
            return np.linalg.cholesky(matrix + jitter * np.eye(len(matrix))).astype(np.float64)
        except np.linalg.LinAlgError:
            jitter = 1e-8 if jitter == 0.0 else jitter * 10.0
    raise np.linalg.LinAlgError("kernel matrix is not positive definite")


def _lbfgs(
    fun: Callable[[FloatArray], tuple[float, FloatArray]],
    x0: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    *,
    max_iter: int = 60,
    memory: int = 8,
) -> tuple[FloatArray, float]:
    """Minimise ``fun`` (value and gradient) inside a box: L-BFGS directions, projected
    backtracking line search (Armijo). Small and plain; enough for a dozen smooth parameters."""
    x = np.clip(x0, lower, upper)
    f, g = fun(x)
    if not math.isfinite(f):
        return x, f
    s_list: list[FloatArray] = []
    y_list: list[FloatArray] = []
    for _ in range(max_iter):
        # Two-loop recursion for the quasi-Newton direction.
        q = g.copy()
        alphas: list[float] = []
        for s, y in zip(reversed(s_list), reversed(y_list), strict=True):
            a = float(s @ q) / float(y @ s)
            alphas.append(a)
            q -= a * y
        if s_list:
            q *= float(s_list[-1] @ y_list[-1]) / float(y_list[-1] @ y_list[-1])
        else:
            q /= max(1.0, float(np.max(np.abs(g))))
        for (s, y), a in zip(zip(s_list, y_list, strict=True), reversed(alphas), strict=True):
            b = float(y @ q) / float(y @ s)
            q += (a - b) * s
        direction = -q
        if float(direction @ g) >= 0.0:
            direction, s_list, y_list = -g / max(1.0, float(np.max(np.abs(g)))), [], []
        step = 1.0
        for _ in range(30):
            x_new = np.clip(x + step * direction, lower, upper)
            f_new, g_new = fun(x_new)
            if math.isfinite(f_new) and f_new <= f + 1e-4 * float(g @ (x_new - x)):
                break
            step *= 0.5
        else:
            break
        s, y = x_new - x, g_new - g
        if float(s @ y) > 1e-12:
            s_list.append(s)
            y_list.append(y)
            if len(s_list) > memory:
                s_list.pop(0)
                y_list.pop(0)
        converged = abs(f - f_new) <= 1e-9 * max(1.0, abs(f)) or float(np.max(np.abs(s))) < 1e-9
        x, f, g = x_new, f_new, g_new
        if converged:
            break
    return x, f


class _Gp:
    """A zero-mean GP on feature rows with a Matern 5/2 ARD kernel (fixed hyperparameters)."""

    def __init__(self, enc: _Encoder, log_t: FloatArray, log_s2: float, *, alpha: float,
                 feats: FloatArray, y: FloatArray) -> None:
        self.s2 = math.exp(log_s2)
        # Column weights: squared distances of weighted features give sum_j t_j * d_j.
        self.w = np.sqrt(np.exp(log_t)[enc.col_dim] * enc.col_half)
        self.feats = feats * self.w
        kernel, _ = _matern(self._r2(self.feats))
        matrix = self.s2 * kernel + alpha * np.eye(len(y))
        self.chol_inv = np.linalg.inv(_cholesky(matrix))
        self.weights = self.chol_inv.T @ (self.chol_inv @ y)

    def _r2(self, a: FloatArray, b: FloatArray | None = None) -> FloatArray:
        b = a if b is None else b
        r2: FloatArray = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        return np.maximum(r2, 0.0, out=r2)

    def predict(self, feats: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Posterior mean and standard deviation of the latent function at ``feats`` rows."""
        kernel, _ = _matern(self._r2(feats * self.w, self.feats))
        cross = self.s2 * kernel
        mean = cross @ self.weights
        v = cross @ self.chol_inv.T
        var = self.s2 - (v * v).sum(1)
        return mean, np.sqrt(np.maximum(var, 1e-12))


def _fit_hyperparameters(enc: _Encoder, feats: FloatArray, y: FloatArray, alpha: float,
                         rng: np.random.Generator) -> tuple[FloatArray, float, float]:
    """Log inverse squared length scales, log signal variance and the noise variance: the best
    of three L-BFGS runs on the log marginal likelihood plus the weak log prior (see the module
    docstring). The noise is ``alpha`` plus a fitted part."""
    n, k = len(y), enc.k
    # Per-parameter squared differences, n x n x k (a categorical one: 1 when values differ).
    diff = feats[:, None, :] - feats[None, :, :]
    dist = np.zeros((n, n, k))
    np.add.at(dist.T, enc.col_dim, (diff * diff * enc.col_half).T)
    eye = np.eye(n)
    half_log_2pi_n = 0.5 * n * math.log(2.0 * math.pi)

    def negative_log_posterior(p: FloatArray) -> tuple[float, FloatArray]:
        t, s2, extra = np.exp(p[:k]), math.exp(p[k]), math.exp(p[k + 1])
        kernel, dkernel = _matern(dist @ t)
        try:
            chol = np.linalg.cholesky(s2 * kernel + (alpha + extra) * eye)
        except np.linalg.LinAlgError:
            return math.inf, np.zeros_like(p)
        chol_inv = np.linalg.inv(chol)
        inverse = chol_inv.T @ chol_inv
        a = inverse @ y
        lml = -0.5 * float(y @ a) - float(np.log(np.diag(chol)).sum()) - half_log_2pi_n
        outer = np.outer(a, a) - inverse
        grad = np.empty_like(p)
        grad[:k] = 0.5 * t * np.tensordot(outer * (s2 * dkernel), dist, axes=([0, 1], [0, 1]))
        grad[k] = 0.5 * float((outer * (s2 * kernel)).sum())
        grad[k + 1] = 0.5 * float(np.trace(outer)) * extra
        # Optuna's GPSampler's priors (optuna/_gp/prior.py): -(0.1/t + 0.1 t) per length
        # scale, Gamma(2, 1) on the signal variance, Gamma(1.1, 30) on the whole noise.
        noise = alpha + extra
        lml += (float(-(0.1 / t + 0.1 * t).sum()) + p[k] - s2
                + _NOISE_SHAPE_1 * math.log(noise) - _NOISE_RATE * noise)
        grad[:k] += 0.1 / t - 0.1 * t
        grad[k] += 1.0 - s2
        grad[k + 1] += (_NOISE_SHAPE_1 / noise - _NOISE_RATE) * extra
        return -lml, -grad

    lower = np.array([_LOG_T_BOUNDS[0]] * k + [_LOG_S2_BOUNDS[0], _LOG_NOISE_BOUNDS[0]])
    upper = np.array([_LOG_T_BOUNDS[1]] * k + [_LOG_S2_BOUNDS[1], _LOG_NOISE_BOUNDS[1]])
    # The noise starts at 1e-4 (KerasTuner's alpha): from the floor, its gradient in log space
    # (proportional to the noise) would be too small for the fit ever to raise it.
    starts = [np.concatenate([np.zeros(k + 1), [_LOG_NOISE_START]])]
    for _ in range(2):
        starts.append(np.concatenate([rng.uniform(-1.0, 4.0, size=k), [0.0, _LOG_NOISE_START]]))
    best_p, best_f = starts[0], math.inf
    for start in starts:
        p, f = _lbfgs(negative_log_posterior, start, lower, upper)
        if f < best_f:
            best_p, best_f = p, f
    return best_p[:k], float(best_p[k]), alpha + math.exp(float(best_p[k + 1]))


def _log_h(z: FloatArray) -> FloatArray:
    """log(phi(z) + z Phi(z)), the expected improvement of a unit normal, without underflow."""
    out = np.empty_like(z)
    small = z < -8.0
    zs = z[~small]
    cdf = 0.5 * np.asarray(_erfc(-zs / math.sqrt(2.0)), dtype=np.float64)
    pdf = np.exp(-0.5 * zs * zs) / math.sqrt(2.0 * math.pi)
    out[~small] = np.log(np.maximum(pdf + zs * cdf, 1e-300))
    # Far below: phi(z) (1/z^2 - 3/z^4 + 15/z^6 - 105/z^8 + ...), the Mills-ratio series.
    zb = z[small]
    inv2 = 1.0 / (zb * zb)
    series = inv2 * (1.0 - inv2 * (3.0 - inv2 * (15.0 - inv2 * 105.0)))
    out[small] = -0.5 * zb * zb - _LOG_SQRT_2PI + np.log(series)
    return out


def _starts(rng: np.random.Generator, scores: FloatArray, count: int) -> IntArray:
    """Where the evolution strategy starts: the best-scoring point, and the others drawn by
    roulette with probability ``exp(score - best)`` (Optuna's GPSampler picks the starts of its
    local searches so). The five best points alone tend to lie in one basin, the incumbent's;
    roulette keeps a chance for a second basin that a few random points only touched."""
    best = int(np.argmax(scores))
    weights = np.exp(np.minimum(scores - scores[best], 0.0))
    weights[best] = 0.0
    total = float(weights.sum())
    others = min(count - 1, int(np.count_nonzero(weights)))
    if others <= 0 or not math.isfinite(total) or total <= 0.0:
        return np.array([best], dtype=np.intp)
    drawn = rng.choice(len(scores), size=others, replace=False, p=weights / total)
    return np.concatenate([[best], drawn]).astype(np.intp)


def _squash_bad_half(y: FloatArray) -> FloatArray:
    """Compress the values worse (larger) than the median, keeping their order: ``m + s *
    asinh((y - m) / s)`` with ``m`` the median and ``s`` the root mean square deviation of the
    better half from it. A few disastrous trials then no longer flatten, through the
    standardisation, the differences that matter near the best ones."""
    median = float(np.median(y))
    good = y[y <= median] - median
    spread = float(np.sqrt(np.mean(good * good))) if len(good) else 0.0
    if spread <= 0.0:
        spread = float(np.std(y)) or 1.0
    return np.where(y > median, median + spread * np.arcsinh((y - median) / spread), y)


def _standardise(y: FloatArray) -> FloatArray:
    scale = float(y.std())
    return (y - float(y.mean())) / (scale if scale > 0 else 1.0)


# ----------------------------------------------------------------------------- the plugin


def default_initial_points(parameters: int) -> int:
    """The default ``num_initial_points``: KerasTuner's three per parameter (at least two), but
    no more than ten, the start-up of Optuna's GPSampler whatever the dimension.

    Random trials teach the model only as much as any other trial would, while each one spent
    on them is one fewer the model chooses; ten are enough for the priors on the kernel's
    hyperparameters (see 5 in the module docstring) to give a sensible first fit. Uncapped,
    a six-parameter space spent 18 of a 50-trial budget at random and a nine-parameter one 27;
    measured with ``bench/quality.py`` on Hartmann 6 (50 trials, seeds 0..19), ten start-up
    trials halved the median regret (0.0047 to 0.0024) and left it at 100 trials unchanged
    (1e-5)."""
    return min(max(3 * parameters, 2), _MAX_DEFAULT_INITIAL)


def _option_number(options: Mapping[str, Any], name: str, default: float, *, minimum: float,
                   strict: bool) -> float:
    value = options.get(name, default)
    if not _is_number(value) or not math.isfinite(float(value)):
        raise PluginOptionsError(f"gp option {name} must be a number (got {value!r})")
    number = float(value)
    if (strict and number <= minimum) or number < minimum:
        relation = ">" if strict else ">="
        raise PluginOptionsError(f"gp option {name} must be {relation} {minimum:g} (got {value!r})")
    return number


class GpSearch(SearchPlugin):
    """Gaussian-process Bayesian optimisation (Matern 5/2, ARD) with a seeded random start-up."""

    summary: ClassVar[str] = (
        "Gaussian-process Bayesian optimisation (Matern 5/2 ARD, log-EI or UCB), "
        "after KerasTuner's BayesianOptimization"
    )

    def __init__(
        self, space: SearchSpace, *, goal: Goal, seed: int, options: Mapping[str, Any]
    ) -> None:
        super().__init__(space, goal=goal, seed=seed, options=options)
        unknown = sorted(set(map(str, self.options)) - _OPTIONS)
        if unknown:
            raise PluginOptionsError(
                f"unknown gp option(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_OPTIONS))})"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise PluginOptionsError(f"seed must be a non-negative integer (got {seed!r})")
        n_init = self.options.get("num_initial_points")
        if n_init is None:
            n_init = default_initial_points(len(space))
        elif isinstance(n_init, bool) or not isinstance(n_init, int) or n_init < 1:
            raise PluginOptionsError(
                f"gp option num_initial_points must be an integer >= 1 (got {n_init!r})"
            )
        self.num_initial_points: int = n_init
        self.alpha = _option_number(self.options, "alpha", 1e-8, minimum=0.0, strict=True)
        self.beta = _option_number(self.options, "beta", 2.6, minimum=0.0, strict=False)
        acquisition = self.options.get("acquisition", ACQUISITIONS[0])
        if acquisition not in ACQUISITIONS:
            raise PluginOptionsError(
                f"gp option acquisition must be one of {', '.join(ACQUISITIONS)} "
                f"(got {acquisition!r})"
            )
        self.acquisition: str = str(acquisition)
        self._enc = _Encoder(space)

    # -- history

    def _read(self, history: Sequence[TrialView]
              ) -> tuple[set[tuple[float, ...]], FloatArray, FloatArray, FloatArray]:
        """Used codes, observed codes, their objectives (as a minimisation), pending codes."""
        used: set[tuple[float, ...]] = set()
        observed: list[tuple[float, ...]] = []
        values: list[float] = []
        pending: list[tuple[float, ...]] = []
        for trial in history:
            code = self._enc.encode(trial.params)
            if code is None:
                continue
            used.add(code)
            if trial.finished and trial.objective is not None:
                value = float(trial.objective)
                if not math.isnan(value):
                    observed.append(code)
                    values.append(value if self.goal is Goal.MINIMIZE else -value)
            elif trial.objective is None and trial.state in _PENDING:
                pending.append(code)
        y = np.array(values, dtype=np.float64)
        finite = np.isfinite(y)
        if finite.any():
            y = np.clip(y, np.min(y[finite]), np.max(y[finite]))
        else:
            observed, y = [], y[:0]
        shape = (-1, self._enc.k)
        return (used, np.array(observed, dtype=np.float64).reshape(shape), y,
                np.array(pending, dtype=np.float64).reshape(shape))

    # -- suggest

    def suggest(self, number: int, history: Sequence[TrialView]
                ) -> Mapping[str, ParamValue] | None:
        """Trial ``number``'s point (see the module docstring), or None once a finite space is
        used up."""
        enc = self._enc
        if enc.k == 0:
            return {}
        rng = np.random.default_rng(draw_entropy(self.seed, number, history))
        used, x_obs, y_obs, x_pend = self._read(history)
        if enc.finite_size is not None and len(used) >= enc.finite_size:
            return None
        if len(y_obs) < self.num_initial_points:
            return self._startup(rng, used)
        # The model, in standardised units.
        y = _standardise(_squash_bad_half(y_obs))
        feats = enc.features(x_obs)
        fit_rows = self._fit_rows(y, rng)
        log_t, log_s2, noise = _fit_hyperparameters(enc, feats[fit_rows], y[fit_rows],
                                                    self.alpha, rng)
        gp = _Gp(enc, log_t, log_s2, alpha=noise, feats=feats, y=y)
        incumbent = float(np.min(y))
        margin = _MARGIN * math.sqrt(noise)  # much smaller gains than the noise are not sought
        if len(x_pend):
            f_pend = enc.features(x_pend)
            mu, sd = gp.predict(f_pend)
            believed = mu + sd
            incumbent = min(incumbent, float(np.min(believed)))
            gp = _Gp(enc, log_t, log_s2, alpha=noise, feats=np.vstack([feats, f_pend]),
                     y=np.concatenate([y, believed]))

        def score(codes: FloatArray) -> FloatArray:
            mu, sd = gp.predict(enc.features(codes))
            if self.acquisition == "ucb":
                return -(mu - self.beta * sd)
            z = (incumbent - margin - mu) / sd
            if self.acquisition == "ei":
                return sd * np.exp(_log_h(z))
            return np.log(sd) + _log_h(z)

        if enc.finite_size is not None and enc.finite_size <= _MAX_ENUMERATE:
            every = enc.every_code()
            fresh = np.array([tuple(row) not in used for row in every.tolist()], dtype=bool)
            candidates = every[fresh]
            scores = score(candidates)
            unused = _Unused(enc, candidates, scores, used)
        else:
            candidates, scores, unused = self._search(rng, score, x_obs, y, used)
        # The best candidate whose point, the values it decodes to, no trial used: a wide
        # integer or stepped range is searched as continuous, and a candidate a fraction of a
        # step from a used value is that value again.
        for i in np.argsort(-scores, kind="stable"):
            if unused(int(i)):
                return enc.decode(candidates[i].tolist())
        # Every candidate repeats a trial (a nearly used-up space too large to enumerate).
        return self._startup(rng, used)

    def _fit_rows(self, y: FloatArray, rng: np.random.Generator) -> IntArray:
        """Rows the hyperparameters are fitted on: all, or the best and a seeded sample."""
        rows = np.arange(len(y))
        if len(y) <= _FIT_ALL_UP_TO:
            return rows
        order = np.argsort(y, kind="stable")
        others = rng.choice(order[_FIT_BEST:], size=_FIT_OTHERS, replace=False)
        return np.sort(np.concatenate([order[:_FIT_BEST], others]))

    def _search(self, rng: np.random.Generator, score: Callable[[FloatArray], FloatArray],
                x_obs: FloatArray, y: FloatArray, used: set[tuple[float, ...]]
                ) -> tuple[FloatArray, FloatArray, _Unused]:
        """Random and local candidates, then an evolution strategy from the best few, then a
        polish of the best few whose points no trial used; with them, which are unused."""
        enc = self._enc
        centres = x_obs[np.argsort(y, kind="stable")[:_N_LOCAL_CENTRES]]
        local = np.repeat(centres, _N_LOCAL_EACH, axis=0)
        sigma = np.exp(rng.uniform(math.log(1e-3), math.log(0.2), size=len(local)))
        pool = np.vstack([enc.random(rng, _N_RANDOM), enc.perturb(rng, local, sigma)])
        pool_scores = score(pool)
        top = _starts(rng, pool_scores, _N_STARTS)
        best, best_scores = pool[top].copy(), pool_scores[top].copy()
        steps = np.full(len(best), 0.05)
        seen = [pool]
        seen_scores = [pool_scores]
        for _ in range(_N_ROUNDS):
            parents = np.repeat(best, _N_OFFSPRING, axis=0)
            children = enc.perturb(rng, parents, np.repeat(steps, _N_OFFSPRING))
            child_scores = score(children)
            seen.append(children)
            seen_scores.append(child_scores)
            grouped = child_scores.reshape(len(best), _N_OFFSPRING)
            winner = grouped.argmax(1)
            better = grouped[np.arange(len(best)), winner] > best_scores
            rows = np.arange(len(best)) * _N_OFFSPRING + winner
            best[better] = children[rows[better]]
            best_scores[better] = grouped[np.arange(len(best)), winner][better]
            steps = np.clip(np.where(better, steps * 2.0, steps * 0.5), 1e-6, 0.3)
        seen.append(best)
        seen_scores.append(best_scores)
        points, points_scores = np.vstack(seen), np.concatenate(seen_scores)
        unused = _Unused(enc, points, points_scores, used)
        finals, final_scores = polish(score, points, points_scores, enc.continuous, _lbfgs,
                                      starts=_N_POLISH, usable=unused)
        unused.extend(finals)
        return (np.vstack([points, finals]), np.concatenate([points_scores, final_scores]),
                unused)

    def _startup(self, rng: np.random.Generator, used: set[tuple[float, ...]]
                 ) -> Mapping[str, ParamValue] | None:
        """The random search's point for this trial; redrawn if it repeats an earlier one. None
        when a countable space turns out to be used up."""
        enc = self._enc
        point = self.space.from_unit(rng.random(len(self.space)).tolist())
        for _ in range(64):
            if enc.encode(point) not in used:
                return point
            point = self.space.from_unit(rng.random(len(self.space)).tolist())
        if enc.finite_size is not None and enc.finite_size <= _MAX_ENUMERATE:
            every = enc.every_code()
            fresh = [row for row in every.tolist() if tuple(row) not in used]
            if fresh:
                return enc.decode(fresh[int(rng.integers(len(fresh)))])
            return None
        axes = enc.scan_axes()
        if axes is not None:
            # A countable space too wide to enumerate, nearly used up: walk its points from a
            # seeded start. Of any len(used) + 1 distinct points one is unused.
            points = self.space.combinations(axes)
            size = points.size  # len() overflows past 2**63
            first = int(rng.integers(min(size, 2**63 - 1)))
            for i in range(min(size, len(used) + 1)):
                candidate = points.point((first + i) % size)
                if enc.encode(candidate) not in used:
                    return candidate
            if size <= len(used) + 1:
                return None  # every point walked, and used
        return point
