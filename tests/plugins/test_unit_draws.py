"""``unit_draws`` gives numpy's ``default_rng(entropy).random(k)``, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from gpusched_plugins._unit_draws import unit_draws

# Seeds and trial numbers of one, two and more 32-bit words, zero, and the edges of a word.
VALUES = [0, 1, 2, 7, 123, 2**31 - 1, 2**32 - 1, 2**32, 2**32 + 1, 2**40 + 5, 2**63,
          2**64 + 3, 2**100 + 12345]


@pytest.mark.parametrize("seed", VALUES)
def test_the_draws_are_numpys_for_every_seed_and_trial_number(seed: int) -> None:
    for number in VALUES:
        for k in (0, 1, 2, 5, 17):
            expected = np.random.default_rng([seed, number]).random(k).tolist()
            assert unit_draws((seed, number), k) == expected, (seed, number, k)


def test_other_entropy_lengths_are_numpys_too() -> None:
    # One number, or more than the pool's four words: SeedSequence mixes those in last.
    for entropy in ([5], [0], [1, 2, 3], [1, 2, 3, 4, 5, 6], [2**70, 3, 2**33]):
        expected = np.random.default_rng(entropy).random(4).tolist()
        assert unit_draws(entropy, 4) == expected, entropy


def test_many_seeds_in_a_row_are_numpys() -> None:
    rng = np.random.default_rng(0)
    for seed, number in rng.integers(0, 2**62, size=(300, 2)).tolist():
        assert unit_draws((seed, number), 3) == (
            np.random.default_rng([seed, number]).random(3).tolist())


def test_negative_entropy_is_refused_as_numpy_refuses_it() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        unit_draws((-1, 0), 1)
    with pytest.raises(ValueError):
        np.random.default_rng([-1, 0])
