"""``random``: independent uniform draws in the unit cube of the search space.

The suggestion for trial ``number`` is a pure function of ``(seed, number)``: a generator seeded
with both draws one coordinate per parameter, and :meth:`SearchSpace.from_unit` maps them to values
(honouring every type, scale and step). The history is not consulted at all, so a restarted daemon,
or one that resumes an experiment, proposes exactly what an uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from gpusched.plugin_api import (
    Goal,
    ParamValue,
    PluginOptionsError,
    SearchPlugin,
    SearchSpace,
    TrialView,
)
from gpusched_plugins._unit_draws import unit_draws

__all__ = ["RandomSearch"]


class RandomSearch(SearchPlugin):
    """Random search, seeded per trial number. It takes no options and never runs out."""

    summary: ClassVar[str] = "uniform random draws on each parameter's scale, seeded per trial"

    def __init__(
        self, space: SearchSpace, *, goal: Goal, seed: int, options: Mapping[str, Any]
    ) -> None:
        super().__init__(space, goal=goal, seed=seed, options=options)
        if self.options:
            unknown = ", ".join(sorted(map(str, self.options)))
            raise PluginOptionsError(f"random search takes no options (got: {unknown})")
        # numpy's SeedSequence refuses negative entries; say so here rather than at suggest time.
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise PluginOptionsError(f"seed must be a non-negative integer (got {seed!r})")

    def suggest(self, number: int, history: Sequence[TrialView]) -> Mapping[str, ParamValue]:
        """Draw trial ``number``'s point; ``history`` is ignored (see the module docstring)."""
        # Seeding with [seed, number] rather than advancing one stream keeps each draw
        # independent of how many suggestions this instance has made before. The numbers are
        # numpy.random.default_rng([seed, number]).random(k)'s, computed without numpy: ~0.1 ms
        # less of the event loop's time per trial (see _unit_draws).
        return self.space.from_unit(unit_draws((self.seed, number), len(self.space)))
