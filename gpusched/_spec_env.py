"""The rules of a trial's environment variables, wherever a file writes them: our ``env:``
mapping, or a Vertex AI container's ``env: [{name, value}]`` list (each problem at its place)."""

from __future__ import annotations

import re
from typing import Any

from gpusched._spec_check import Problems, as_text, describe, text, unusable_char

__all__ = ["RESERVED_ENV", "env_name", "env_value"]

RESERVED_ENV = frozenset({
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
    "CLOUD_ML_HP_METRIC_FILE", "CLOUD_ML_HP_METRIC_TAG", "CLOUD_ML_TRIAL_ID",
})  # fmt: skip
"""Variables gpusched sets for each trial (and every ``GPUSCHED_*`` one): an experiment's ``env``
may not set them, or it could pin a trial to another trial's GPU."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RULE = "must be a variable name: letters, digits and _, not starting with a digit"


def env_name(p: Problems, place: str, name: Any) -> str | None:
    """A variable's name that an experiment may set; a problem at ``place`` otherwise."""
    checked = text(p, place, name, pattern=_ENV_NAME, rule=_RULE)
    if checked is not None and (checked in RESERVED_ENV or checked.startswith("GPUSCHED_")):
        p.add(place, "is set by gpusched for each trial and cannot be set here")
        return None
    return checked


def env_value(p: Problems, place: str, value: Any) -> str | None:
    """A variable's value: text, or a number written as it reads; a problem at ``place``
    otherwise."""
    checked = as_text(value)
    if checked is None:
        p.add(place, f"must be text or a number (got {describe(value)})")
    elif (problem := unusable_char(checked)) is not None:
        p.add(place, problem)
    else:
        return checked
    return None
