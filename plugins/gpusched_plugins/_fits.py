"""Whether an earlier trial's value is a value of this experiment's numeric range.

A trial of the experiment named in ``resume_from`` comes as that experiment logged it, and its
space may have been another one: wider, unstepped, a double where this one has an integer. A
model that took such a value in would have :meth:`Param.to_unit` clamp it to the range's edge
(and snap it to a step): an old result at x = 50 taught as if it were measured at x = 3, and the
point x = 3 counted as used. ``gp`` and ``tpe`` ignore a trial with a value that does not fit.
"""

from __future__ import annotations

from gpusched.plugin_api import Param, ParamType

__all__ = ["fits_range"]


def fits_range(param: Param, value: object) -> bool:
    """True when ``value`` is a value of the numeric range ``param`` (a ``double`` or an
    ``integer``): a number (not a bool), inside ``[min, max]`` and on the step
    (:meth:`Param.range_problem`), and for an integer a whole one. A whole float (``3.0``) counts
    for an integer, as a log's JSON may have made it; NaN and infinities never fit."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if (param.type is ParamType.INTEGER and isinstance(value, float)
            and not value.is_integer()):  # False for NaN and infinities too
        return False
    return param.range_problem(value) is None
