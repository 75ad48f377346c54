"""The keys of a report that gpusched fills in itself, and the ``stop:`` keys that look like a
misspelling of one (``training_iteraton``): such a bound stops nothing, unless the trainer
happens to report that very key.

Client-side (the experiment file's checks may use it) and shared with the daemon, which warns
of a ``stop:`` key that no trial reports (``trial_runner.unreported_stop_key_warning``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from gpusched.models import AUTO_FILLED_FIELDS

__all__ = ["AUTO_FILLED_KEYS", "auto_filled_near_miss", "stop_key_near_misses"]

AUTO_FILLED_KEYS = frozenset(AUTO_FILLED_FIELDS)
"""Ray Tune's fields, which the daemon adds to every report: not what a trainer reported."""

# How alike a key must be to an auto-filled one to be taken for its misspelling before any trial
# ran (difflib's ratio): a trainer may report a key of its own that is merely similar
# (`iteration`, 0.67), so only a slip of a letter or two counts (`time_total` is 0.91).
_NEAR_MISS = 0.8


def auto_filled_near_miss(key: str, *, cutoff: float = _NEAR_MISS) -> str | None:
    """The auto-filled key that ``key`` looks like a misspelling of (the same but for case, or
    at least ``cutoff`` alike), None when there is none or ``key`` is one itself."""
    if key in AUTO_FILLED_KEYS:
        return None
    by_case = {k.lower(): k for k in AUTO_FILLED_KEYS}
    if key.lower() in by_case:
        return by_case[key.lower()]
    close = difflib.get_close_matches(key, sorted(AUTO_FILLED_KEYS), n=1, cutoff=cutoff)
    return close[0] if close else None


def stop_key_near_misses(stop: Iterable[str], metric: str) -> tuple[str, ...]:
    """A warning for each key of ``stop`` (in its order) that looks like a misspelling of an
    auto-filled key: the experiment file's, for ``gpusched submit`` to print. The ``metric``
    is not one: a trial that never reports it fails, saying so."""
    warnings = []
    for key in stop:
        if key != metric and (meant := auto_filled_near_miss(key)) is not None:
            warnings.append(
                f"stop: {key!r} looks like a misspelling of {meant!r}, which gpusched fills in"
                f" for every report: unless the trainer reports {key!r} itself, that bound"
                f" stops nothing; write {meant!r}")
    return tuple(warnings)
