"""The last step of ``gp``'s acquisition search: a quasi-Newton polish of the best candidates.

The evolution strategy of :mod:`gpusched_plugins.gp` finds the acquisition's basins; its steps
are too coarse to reach their top to the precision a smooth function is found at (Branin's
minimum to 1e-5 needs a point within ~1e-3 of it). So the best few distinct candidates go to a
box-constrained L-BFGS on their *continuous* coordinates (ordinal and categorical ones stay as
they are), with the gradient of the acquisition by forward differences, all ``1 + m`` points of
one gradient scored in one batch. Each start is kept only where the polish improved it. The
caller may restrict the starts (``gp`` passes the candidates whose point no trial used: a start
a fraction of a step from a used integer would be polished, like that integer, in vain).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = ["polish"]

FloatArray = npt.NDArray[np.float64]
Minimiser = Callable[
    [Callable[[FloatArray], tuple[float, FloatArray]], FloatArray, FloatArray, FloatArray],
    tuple[FloatArray, float],
]

_STEP = 1e-7  # forward-difference step in unit coordinates


def _distinct(points: FloatArray, scores: FloatArray, count: int,
              usable: Callable[[int], bool] | None = None) -> list[int]:
    """Indices of the best-scoring points, at most ``count``, no two closer than 1e-3, each
    ``usable`` (asked only of a point that is far enough from those chosen)."""
    chosen: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(float(np.max(np.abs(points[i] - points[j]))) > 1e-3 for j in chosen) and (
            usable is None or usable(int(i))
        ):
            chosen.append(int(i))
            if len(chosen) == count:
                break
    return chosen


def polish(score: Callable[[FloatArray], FloatArray], points: FloatArray, scores: FloatArray,
           continuous: npt.NDArray[np.bool_], minimise: Minimiser, *, starts: int,
           usable: Callable[[int], bool] | None = None
           ) -> tuple[FloatArray, FloatArray]:
    """Polished copies of the best ``starts`` distinct ``points`` and their scores.

    ``score`` maps codes (rows) to acquisition values, larger better; ``continuous`` marks the
    columns that may move (within [0, 1]); ``minimise`` is the L-BFGS of the caller;
    ``usable``, when given, says which points (by index) may start a polish.
    """
    m = int(continuous.sum())
    if m == 0 or len(points) == 0:
        return points[:0], scores[:0]
    columns = np.flatnonzero(continuous)
    out_points, out_scores = [], []
    for i in _distinct(points, scores, starts, usable):
        base = points[i].copy()

        def negative(x: FloatArray, base: FloatArray = base) -> tuple[float, FloatArray]:
            batch = np.repeat(base[None, :], m + 1, axis=0)
            batch[:, columns] = x
            # Step inwards at the upper bound, so every point scored lies in the box.
            h = np.where(x + _STEP > 1.0, -_STEP, _STEP)
            batch[1 + np.arange(m), columns] += h
            values = score(batch)
            if not np.all(np.isfinite(values)):
                return float("inf"), np.zeros(m)
            return -float(values[0]), -(values[1:] - values[0]) / h

        x, value = minimise(negative, base[columns], np.zeros(m), np.ones(m))
        if np.isfinite(value) and -value > scores[i]:
            moved = base.copy()
            moved[columns] = x
            out_points.append(moved)
            out_scores.append(-value)
    if not out_points:
        return points[:0], scores[:0]
    return np.array(out_points), np.array(out_scores, dtype=np.float64)
