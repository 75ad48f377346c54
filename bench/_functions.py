"""The test functions of ``bench/quality.py``, each with its space and its known minimum.

- **branin**: Branin-Hoo on x1 in [-5, 10], x2 in [0, 15]; minimum 0.397887 at three points.
- **hartmann6**: Hartmann 6 on [0, 1]^6; minimum -3.32237 (Surjanovic and Bingham's table).
- **mixed**: a made-up training-run surface over the four kinds a real search has::

      lr       double, log scale, [1e-5, 1]
      layers   integer, [1, 12]
      opt      categorical: sgd, adam, rmsprop
      dropout  double, [0, 0.5]

      f = offset[opt] + 0.5 (log10(lr) - best_log_lr[opt])^2
          + 0.02 (layers - 6)^2 + 4 (dropout - 0.02 layers)^2

  with ``best_log_lr = {sgd: -1, adam: -3, rmsprop: -2}`` and ``offset = {sgd: 0.3, adam: 0,
  rmsprop: 0.1}``: each optimiser has its own best learning rate (an interaction a searcher must
  find per category), and the best dropout grows with depth. Minimum 0, only at lr = 1e-3,
  layers = 6, opt = adam, dropout = 0.12.

Each function gives the same space to both sides: a :class:`SearchSpace` for ours, and the
matching ``trial.suggest_*`` calls (same ranges, log scale, integers, categories) for Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpusched.plugin_api import Param, ParamType, ParamValue, Scale, SearchSpace

__all__ = ["FUNCTIONS", "Function"]


@dataclass(frozen=True)
class Function:
    """A test function: its parameters, how to evaluate a point, and its known minimum."""

    name: str
    params: tuple[Param, ...]
    evaluate: Callable[[Mapping[str, ParamValue]], float]
    minimum: float

    def space(self) -> SearchSpace:
        """Our search space."""
        return SearchSpace(self.params)

    def optuna_params(self, trial: Any) -> dict[str, ParamValue]:
        """The same parameters suggested through an Optuna ``trial``."""
        out: dict[str, ParamValue] = {}
        for p in self.params:
            if p.type is ParamType.CATEGORICAL:
                out[p.name] = trial.suggest_categorical(p.name, list(p.values))
            elif p.type is ParamType.INTEGER:
                assert p.low is not None and p.high is not None
                out[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high),
                                                log=p.scale is Scale.LOG)
            else:
                assert p.low is not None and p.high is not None
                out[p.name] = trial.suggest_float(p.name, p.low, p.high,
                                                  log=p.scale is Scale.LOG)
        return out


def _double(name: str, low: float, high: float, scale: Scale = Scale.LINEAR) -> Param:
    return Param(name, ParamType.DOUBLE, low=low, high=high, scale=scale)


def _branin(p: Mapping[str, ParamValue]) -> float:
    x1, x2 = float(p["x1"]), float(p["x2"])
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                 [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


def _hartmann6(p: Mapping[str, ParamValue]) -> float:
    x = np.array([float(p[f"x{i}"]) for i in range(6)])
    return -float(_H_ALPHA @ np.exp(-(_H_A * (x - _H_P) ** 2).sum(axis=1)))


_BEST_LOG_LR = {"sgd": -1.0, "adam": -3.0, "rmsprop": -2.0}
_OFFSET = {"sgd": 0.3, "adam": 0.0, "rmsprop": 0.1}


def _mixed(p: Mapping[str, ParamValue]) -> float:
    opt, layers = str(p["opt"]), int(p["layers"])
    lr, dropout = float(p["lr"]), float(p["dropout"])
    return (_OFFSET[opt] + 0.5 * (math.log10(lr) - _BEST_LOG_LR[opt]) ** 2
            + 0.02 * (layers - 6) ** 2 + 4.0 * (dropout - 0.02 * layers) ** 2)


FUNCTIONS: dict[str, Function] = {
    "branin": Function("branin", (_double("x1", -5.0, 10.0), _double("x2", 0.0, 15.0)),
                       _branin, 0.397887357729738),
    "hartmann6": Function("hartmann6", tuple(_double(f"x{i}", 0.0, 1.0) for i in range(6)),
                          _hartmann6, -3.32236801141551),
    "mixed": Function("mixed", (_double("lr", 1e-5, 1.0, Scale.LOG),
                                Param("layers", ParamType.INTEGER, low=1, high=12),
                                Param("opt", ParamType.CATEGORICAL,
                                      values=("sgd", "adam", "rmsprop")),
                                _double("dropout", 0.0, 0.5)),
                      _mixed, 0.0),
}
