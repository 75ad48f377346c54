"""``halton``: a randomly shifted Halton sequence, a low-discrepancy alternative to ``random``.

Trial *n* gets point ``n + skip`` of the Halton sequence (one prime base per parameter),
shifted modulo 1 by an offset drawn from the seed (a Cranley-Patterson rotation, so that two
seeds give two different, equally even designs). It depends only on the seed and the trial
number: a pure function of its inputs, as every gpusched plugin must be.
"""

from __future__ import annotations

import random
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

__all__ = ["HaltonSearch", "halton_point"]

_OPTIONS = {"skip"}


def _primes(count: int) -> list[int]:
    """The first ``count`` primes."""
    primes: list[int] = []
    candidate = 2
    while len(primes) < count:
        if all(candidate % p for p in primes if p * p <= candidate):
            primes.append(candidate)
        candidate += 1
    return primes


def _radical_inverse(index: int, base: int) -> float:
    """``index`` written in ``base``, digits mirrored behind the point: 6 in base 2 -> 0.011."""
    result, scale = 0.0, 1.0 / base
    while index:
        index, digit = divmod(index, base)
        result += digit * scale
        scale /= base
    return result


def halton_point(index: int, dims: int, seed: int) -> list[float]:
    """Point ``index`` of a ``dims``-dimensional Halton sequence, shifted by the seed."""
    shift = random.Random(seed)  # a generator of our own, never the global one
    return [(_radical_inverse(index, base) + shift.random()) % 1.0 for base in _primes(dims)]


class HaltonSearch(SearchPlugin):
    """A shifted Halton sequence over the unit cube of the space."""

    summary: ClassVar[str] = "a randomly shifted Halton sequence (even coverage, no model)"

    def __init__(self, space: SearchSpace, *, goal: Goal, seed: int,
                 options: Mapping[str, Any]) -> None:
        super().__init__(space, goal=goal, seed=seed, options=options)
        unknown = set(self.options) - _OPTIONS
        if unknown:  # refused at submit, with the name, rather than ignored
            raise PluginOptionsError(f"unknown option(s) {', '.join(sorted(unknown))};"
                                     " halton takes: skip")
        skip = self.options.get("skip", 0)
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
            raise PluginOptionsError(f"skip must be a whole number >= 0 (got {skip!r})")
        self.skip = skip

    def suggest(self, number: int,
                history: Sequence[TrialView]) -> Mapping[str, ParamValue] | None:
        """Point ``number + skip`` of the sequence; the history is not needed."""
        # Index 0 is the origin (before the shift) in every base: start at 1.
        return self.space.from_unit(halton_point(number + self.skip + 1, len(self.space),
                                                 self.seed))
