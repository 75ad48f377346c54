"""Synthetic learning curves for ``bench/pruning.py``: a loss per step, parametric in the
hyperparameters, so that every configuration has a known final value and so a true regret.

A configuration is ``lr`` (double, log scale, [1e-4, 1]) and ``width`` (double, [0, 1]); ``u`` is
the position of ``log lr`` in its range (0 at 1e-4, 1 at 1). Its final loss, at step ``T = 50``::

    final(u, width) = 0.1 + (u - 0.15)^2 + 0.3 (width - 0.6)^2      (minimum 0.1)

and the loss at step ``t`` (1 .. T) goes from ``final + 1`` at ``t = 0`` to ``final`` at ``T``
along an exponential of rate ``r``::

    loss(t) = final + (exp(-r t) - exp(-r T)) / (1 - exp(-r T)) + noise(t)

with ``noise`` Gaussian, standard deviation 0.005, seeded per (seed, trial, step).

- **crossing**: ``r = 0.01 + 0.6 u^2``: a high learning rate drops fast and ends worse, a low one
  drops nearly linearly and ends best, so early ranks are the reverse of the final ones for
  part of the space (slow starters finish best).
- **parallel**: ``r = 0.15`` for every configuration: curves keep their order at every step
  (up to the noise), so the early rank is the final rank.

The true regret of a configuration is ``final - 0.1`` (the noise left out).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from gpusched.plugin_api import Param, ParamType, ParamValue, Scale, SearchSpace

__all__ = ["CURVE_SETS", "MINIMUM", "SPACE", "STEPS", "final", "loss_curve"]

STEPS = 50
MINIMUM = 0.1
NOISE = 0.005
SPACE = SearchSpace((Param("lr", ParamType.DOUBLE, low=1e-4, high=1.0, scale=Scale.LOG),
                     Param("width", ParamType.DOUBLE, low=0.0, high=1.0)))
CURVE_SETS = ("crossing", "parallel")


def _u(params: Mapping[str, ParamValue]) -> float:
    return (math.log10(float(params["lr"])) + 4.0) / 4.0


def final(params: Mapping[str, ParamValue]) -> float:
    """The configuration's final loss without noise (its true value)."""
    return 0.1 + (_u(params) - 0.15) ** 2 + 0.3 * (float(params["width"]) - 0.6) ** 2


def loss_curve(curve_set: str, params: Mapping[str, ParamValue], *, seed: int, trial: int
               ) -> list[float]:
    """The losses at steps 1 .. STEPS (index ``t - 1`` for step ``t``)."""
    rate = 0.01 + 0.6 * _u(params) ** 2 if curve_set == "crossing" else 0.15
    t = np.arange(1, STEPS + 1, dtype=np.float64)
    shape = (np.exp(-rate * t) - math.exp(-rate * STEPS)) / (1.0 - math.exp(-rate * STEPS))
    noise = np.random.default_rng([seed, trial, 7]).normal(0.0, NOISE, size=STEPS)
    return [float(v) for v in final(params) + shape + noise]
