"""How the ``gp`` search models conditional parameters (``when:``).

The Gaussian process lives in a cube with one coordinate per parameter, but a trial sets only
its active parameters. The choice made here: an inactive parameter's coordinate is *imputed
with a fixed value*, so that two points that agree on their active parameters are the same
point to the model, whatever the inactive ones would have been:

- in a point's *code* (what is searched, compared and remembered as used) an inactive
  coordinate is set to a filler: the middle of its unit interval (snapped to the nearest value
  for an ordinal parameter) or the first category. Every candidate is put in this canonical
  form, so no two candidates, and no candidate and earlier trial, differ only in inactive
  parameters;
- in the *features* the kernel sees, an inactive numeric parameter sits at 0.5, the middle of
  the unit cube (its distance to any active value is at most one half of the range), and an
  inactive categorical one has every one-hot column at 0 (half the distance two different
  categories are apart). The kernel's distance between two configurations is then carried by
  the parents that switch the parameters on and off, and by the parameters they share.

Activity is decided in file order, as :meth:`SearchSpace.active` does, on whole arrays of codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # gp.py imports this module
    from gpusched.plugin_api import ParamValue
    from gpusched_plugins.gp import _Dim

__all__ = ["Activity", "INACTIVE_FEATURE"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

INACTIVE_FEATURE = 0.5
"""The feature value of an inactive numeric parameter: the middle of the unit cube."""


class Activity:
    """Which coordinates of a code are active, for a space's dimensions (in file order)."""

    def __init__(self, dims: Sequence[_Dim]) -> None:
        self.dims = tuple(dims)
        index = {dim.param.name: j for j, dim in enumerate(self.dims)}
        # (dimension, parent dimension, the parent's enabling values) for every condition.
        self.conditions = [(j, index[parent], allowed)
                           for j, dim in enumerate(self.dims)
                           for parent, allowed in dim.param.when.items()]
        self.conditional = bool(self.conditions)
        filler = []
        for dim in self.dims:
            if dim.kind == "cat":
                filler.append(0.0)
            elif dim.kind == "grid":
                assert dim.codes is not None
                filler.append(float(dim.codes[np.argmin(np.abs(dim.codes - 0.5))]))
            else:
                filler.append(0.5)
        self.filler: FloatArray = np.array(filler, dtype=np.float64)

    def mask(self, codes: FloatArray) -> BoolArray:
        """``(m, k)``: True where a coordinate of each code is active."""
        on = np.ones(codes.shape, dtype=bool)
        for j, parent, allowed in self.conditions:  # parents come first: their mask is final
            on[:, j] &= on[:, parent] & self._takes(parent, codes[:, parent], allowed)
        return on

    def _takes(self, j: int, column: FloatArray, allowed: tuple[ParamValue, ...]) -> BoolArray:
        """Where dimension ``j``'s coordinates stand for one of the ``allowed`` values."""
        dim = self.dims[j]
        if dim.kind == "cont":  # a wide integer range: the value is what from_unit makes of it
            values = [dim.param.from_unit(u) for u in column.tolist()]
            return np.array([v in allowed for v in values], dtype=bool)
        hits = [i for i, value in enumerate(dim.values) if value in allowed]
        if dim.kind == "cat":
            return np.isin(column, np.array(hits, dtype=np.float64))
        assert dim.codes is not None
        return np.isin(column, dim.codes[hits])

    def canonical(self, codes: FloatArray) -> FloatArray:
        """Put the filler in every inactive coordinate, in place."""
        if self.conditional:
            off = ~self.mask(codes)
            codes[off] = np.broadcast_to(self.filler, codes.shape)[off]
        return codes

    def impute(self, features: FloatArray, codes: FloatArray, col_dim: npt.NDArray[np.int64],
               col_cat: npt.NDArray[np.int64]) -> FloatArray:
        """Features with the fixed values of inactive parameters, in place: 0.5 for a numeric
        column, 0 for every one-hot column."""
        if self.conditional:
            off = ~self.mask(codes)[:, col_dim]
            fixed = np.where(col_cat >= 0, 0.0, INACTIVE_FEATURE)
            features[off] = np.broadcast_to(fixed, features.shape)[off]
        return features
