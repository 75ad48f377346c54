"""``random``: independent uniform draws in the unit cube of the search space.

The suggestion for trial ``number`` is a pure function of ``(seed, number)``: a generator seeded
with both draws one coordinate per parameter, and :meth:`SearchSpace.from_unit` maps them to values
(honouring every type, scale and step). A restarted daemon proposes exactly what an uninterrupted
one would have.

With ``resume_from`` the history starts with the earlier experiment's trials (numbered -N ... -1),
and the generator is seeded with more: see :func:`draw_entropy`. Seeded with ``(seed, number)``
alone, an experiment resumed with the same seed (the same file plus ``resume_from``) drew the
earlier one's points again, trial for trial. The history is read for that only: its first trial,
and the last of the earlier experiment's.
"""

from __future__ import annotations

import hashlib
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

__all__ = ["RandomSearch", "draw_entropy"]


def draw_entropy(seed: int, number: int, history: Sequence[TrialView]) -> tuple[int, ...]:
    """The entropy of trial ``number``'s generator, ``numpy.random.default_rng(entropy)``:
    ``(seed, number)``, or ``(seed, number, N, digest)`` when the history starts with trials of
    an earlier experiment (``resume_from``: the daemon puts them first, numbered -N ... -1).

    ``digest`` is 32 bits of a BLAKE2b hash of the first and the last of those trials'
    parameters. Without it (or without ``N``), an experiment resumed from one run with the same
    seed drew that one's points again, trial for trial. Taking the draws as those of trial
    ``N + number`` instead would not do: the history holds only the earlier trials that
    finished with a result, so after a failed one ``N`` falls short of the earlier
    experiment's size and the draws meet its last ones again; and in a chain of resumes of
    equal size, B resumed from A draws what A, resumed from Z, drew. The digest tells those
    histories apart, and ``N >= 1`` alone already makes the stream differ from every
    ``(seed, m)`` stream (numpy's seeding reads ``(seed, m)`` as ``(seed, m, 0, 0)``).

    A function of the log: the earlier experiment has ended, and the trials handed over are
    the same at every suggestion and after a restart, so every trial of the new experiment
    (and a restarted daemon) uses the same ``N`` and digest. Reads two views of the history,
    whatever its length.
    """
    if not history:
        return (seed, number)
    first = history[0]
    if first.number >= 0:
        return (seed, number)
    count = -first.number
    last = history[min(count, len(history)) - 1]
    blake = hashlib.blake2b(digest_size=4)
    for trial in (first, last):
        items = sorted((str(k), repr(v)) for k, v in trial.params.items())
        blake.update(repr(items).encode())
    return (seed, number, count, int.from_bytes(blake.digest(), "little"))


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
        """Draw trial ``number``'s point; of ``history`` only the earlier experiment's trials
        (``resume_from``) matter (see :func:`draw_entropy`)."""
        # Seeding with [seed, number] rather than advancing one stream keeps each draw
        # independent of how many suggestions this instance has made before. The numbers are
        # numpy.random.default_rng(entropy).random(k)'s, computed without numpy: ~0.1 ms
        # less of the event loop's time per trial (see _unit_draws).
        entropy = draw_entropy(self.seed, number, history)
        return self.space.from_unit(unit_draws(entropy, len(self.space)))
