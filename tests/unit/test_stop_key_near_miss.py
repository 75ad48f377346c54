"""A ``stop:`` key that looks like a misspelling of a key gpusched fills in itself
(``training_iteraton``): which keys count as near misses, and the warning ``gpusched submit``
can print for them (gpusched/_spec_stop_keys.py)."""

from __future__ import annotations

import pytest

from gpusched._spec_stop_keys import (
    AUTO_FILLED_KEYS,
    auto_filled_near_miss,
    stop_key_near_misses,
)


@pytest.mark.parametrize(("key", "meant"), [
    ("training_iteraton", "training_iteration"),
    ("training_iterations", "training_iteration"),
    ("Training_Iteration", "training_iteration"),  # by case first
    ("time_total", "time_total_s"),
    ("time_this_iter", "time_this_iter_s"),
    ("timestmp", "timestamp"),
])
def test_a_slip_of_a_letter_or_two_is_a_near_miss(key: str, meant: str) -> None:
    assert auto_filled_near_miss(key) == meant


@pytest.mark.parametrize("key", [
    *sorted(AUTO_FILLED_KEYS),  # the keys themselves are right
    "iteration", "epoch", "val_acc", "step", "time",  # a trainer's own keys, merely similar
])
def test_other_keys_are_not(key: str) -> None:
    assert auto_filled_near_miss(key) is None


def test_a_looser_cutoff_guesses_further() -> None:
    # After a trial ended without the key, a guess is worth showing (did you mean's bar).
    assert auto_filled_near_miss("iteration") is None
    assert auto_filled_near_miss("iteration", cutoff=0.6) == "training_iteration"


def test_the_submit_warning_names_the_key_and_the_metric_is_left_out() -> None:
    stop = {"val_accuracy": 0.9, "training_iteraton": 20, "epoch": 5, "time_total": 60}
    assert stop_key_near_misses(stop, metric="val_accuracy") == (
        "stop: 'training_iteraton' looks like a misspelling of 'training_iteration', which"
        " gpusched fills in for every report: unless the trainer reports 'training_iteraton'"
        " itself, that bound stops nothing; write 'training_iteration'",
        "stop: 'time_total' looks like a misspelling of 'time_total_s', which gpusched fills"
        " in for every report: unless the trainer reports 'time_total' itself, that bound"
        " stops nothing; write 'time_total_s'",
    )
    assert stop_key_near_misses({"timestmp": 1}, metric="timestmp") == ()
    assert stop_key_near_misses({}, metric="acc") == ()
