"""What a trial with a budget gets on top of its params: a flag and environment variables.

A search plugin that returns a :class:`~gpusched.plugin_api.Suggestion` with a ``budget`` (e.g.
``hyperband``'s epochs) has it reach the trial as ``GPUSCHED_BUDGET`` and, when the plugin
names one (:attr:`~gpusched.plugin_api.SearchPlugin.budget_flag`), as a flag after the params
(``--epochs=9``; after the command's own words, so an argparse trainer takes it over a default
written into the command). A trial that continues another gets the other one's budget as
``GPUSCHED_INITIAL_BUDGET`` (KerasTuner's ``tuner/initial_epoch``) and its number as
``GPUSCHED_CONTINUES`` (KerasTuner's ``tuner/trial_id``).
"""

from __future__ import annotations

__all__ = ["fmt_budget", "budget_argv", "budget_environment"]


def fmt_budget(budget: int | float) -> str:
    """``9`` for 9 and 9.0 (the log keeps a whole budget as an integer), ``0.25`` otherwise."""
    if isinstance(budget, float) and budget.is_integer():
        return str(int(budget))
    return repr(budget) if isinstance(budget, float) else str(budget)


def budget_argv(flag: str | None, budget: int | float | None) -> list[str]:
    """``["--epochs=9"]``, or nothing without a flag or a budget."""
    if flag is None or budget is None:
        return []
    return [f"{flag}={fmt_budget(budget)}"]


def budget_environment(
    budget: int | float | None, *, initial: int | float | None, continues: int | None
) -> dict[str, str]:
    """The ``GPUSCHED_BUDGET`` family for a trial (empty without a budget).

    ``initial``: the budget of the trial it continues (None: a fresh start, given as 0).
    """
    env: dict[str, str] = {}
    if budget is not None:
        env["GPUSCHED_BUDGET"] = fmt_budget(budget)
        env["GPUSCHED_INITIAL_BUDGET"] = fmt_budget(initial) if initial is not None else "0"
    if continues is not None:
        env["GPUSCHED_CONTINUES"] = str(continues)
    return env
