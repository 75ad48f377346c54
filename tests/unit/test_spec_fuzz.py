"""Property tests of the experiment file: any input is a spec or a SpecError, never a crash;
every valid spec (in either spelling) survives ``to_dict``/``from_dict`` unchanged."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gpusched._spec_aip import HP_KEYS, NATIVE_KEYS
from gpusched._spec_params import PARAM_KEYS
from gpusched.errors import SpecError
from gpusched.spec import (
    ExperimentSpec,
    load_experiment_file,
    parse_duration,
    parse_experiment,
    parse_memory_mib,
)

KEYS = sorted({*NATIVE_KEYS, *HP_KEYS, *PARAM_KEYS, "trainingInput", "hyperparameters",
               "algorithm", "seed", "policy", "args", "scaleTier"})
# Ints too long for str() (and for hypothesis to print: hence the map), and floats at the edges.
ODD_NUMBERS = (st.integers(4300, 4400).map(lambda digits: -(10**digits))
               | st.sampled_from([2**63, 10**400, math.nan, math.inf, -0.0, 1e308]))
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
           | ODD_NUMBERS | st.sampled_from(["1/2", "2h", "10GiB", "DOUBLE", "log", "grid"]))
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6) | st.integers(), inner,
                      max_size=5),
    max_leaves=25,
)
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=10)
FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | FINITE | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)


def parses_or_refuses(data: Any, **kwargs: Any) -> ExperimentSpec | None:
    """Parse ``data``; a SpecError is fine, anything else fails the test."""
    try:
        return parse_experiment(data, base_dir="/tmp", **kwargs)
    except SpecError as exc:
        assert exc.problems, "a SpecError always lists at least one problem"
        assert all(isinstance(p.place, str) and p.message for p in exc.problems)
        return None


@settings(max_examples=400, deadline=None)
@given(JUNK)
def test_arbitrary_data_is_a_spec_or_a_spec_error(data: Any) -> None:
    parses_or_refuses(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_valid_spec_with_one_value_spoiled(data: st.DataObject) -> None:
    spec_dict = data.draw(valid_specs())
    junk = data.draw(JUNK)
    if data.draw(st.booleans()) and spec_dict.get("params"):
        params = spec_dict["params"]
        item = params[data.draw(st.integers(0, len(params) - 1))]
        item[data.draw(st.sampled_from(sorted(PARAM_KEYS)))] = junk
    else:
        spec_dict[data.draw(st.sampled_from(KEYS))] = junk
    parses_or_refuses(spec_dict)


@st.composite
def numeric_param(draw: st.DrawFn, name: str) -> dict[str, Any]:
    integer = draw(st.booleans())
    step: float | None
    scale = draw(st.sampled_from(["linear", "log", "reverse_log"]))
    if integer:
        low: float = draw(st.integers(1 if scale != "linear" else -1000, 1000))
        high: float = low + draw(st.integers(1, 1000))
        step = draw(st.none() | st.integers(1, int(high - low)))
    else:
        low = draw(st.floats(1e-6 if scale != "linear" else -1e6, 1e6))
        high = low + draw(st.floats(1e-3, 1e6))
        assume(high > low)
        step = draw(st.none() | st.floats(1e-6, high - low))
    param = {"name": name, "type": "integer" if integer else "double", "min": low, "max": high,
             "scale": scale}
    if step is not None:
        param["step"] = step
    return param


@st.composite
def listed_param(draw: st.DrawFn, name: str) -> dict[str, Any]:
    if draw(st.booleans()):
        numbers = st.integers(-100, 100) | FINITE
        values = draw(st.lists(numbers, min_size=1, max_size=5, unique_by=float))
        return {"name": name, "type": "discrete", "values": values}
    texts = draw(st.lists(TEXT, min_size=1, max_size=5, unique=True))
    return {"name": name, "type": "categorical", "values": texts}


_AIP_PARAM = {"name": "parameterName", "min": "minValue", "max": "maxValue", "scale": "scaleType"}
_AIP_SCALE = {"linear": "UNIT_LINEAR_SCALE", "log": "UNIT_LOG_SCALE",
              "reverse_log": "UNIT_REVERSE_LOG_SCALE"}


def aip_spelling(param: dict[str, Any]) -> dict[str, Any]:
    """``param`` as AI Platform's ParameterSpec writes it."""
    out: dict[str, Any] = {}
    for key, value in param.items():
        if key == "values":
            out[f"{param['type']}Values"] = value
        elif key == "scale":
            out["scaleType"] = _AIP_SCALE[value]
        else:
            out[_AIP_PARAM.get(key, key)] = value.upper() if key == "type" else value
    return out


def parent_values(param: dict[str, Any]) -> list[Any]:
    """Values a condition on ``param`` (our spelling, not a double) may name."""
    if param["type"] != "integer":
        return list(param["values"])
    step = param.get("step", 1)
    count = (param["max"] - param["min"]) // step + 1
    return [param["min"] + k * step for k in range(min(count, 20))]


@st.composite
def conditions_of(draw: st.DrawFn, params: list[dict[str, Any]]
                  ) -> dict[int, tuple[int, Any]]:
    """Conditions for some parameters: child index → (an earlier parent's index, its values:
    one value or a list). One parent each, so they can always hold together."""
    out: dict[int, tuple[int, Any]] = {}
    for i in range(1, len(params)):
        parents = [j for j in range(i) if params[j]["type"] != "double"]
        if not parents or not draw(st.booleans()):
            continue
        j = draw(st.sampled_from(parents))
        values = draw(st.lists(st.sampled_from(parent_values(params[j])), min_size=1,
                               max_size=3, unique=True))
        out[i] = (j, values[0] if len(values) == 1 and draw(st.booleans()) else values)
    return out


_PARENT_KEY = {"categorical": "parentCategoricalValues", "discrete": "parentDiscreteValues",
               "integer": "parentIntValues"}


def aip_with_conditions(draw: st.DrawFn, params: list[dict[str, Any]],
                        conditions: dict[int, tuple[int, Any]]) -> list[dict[str, Any]]:
    """``params`` in AI Platform's spelling; each condition either a ``when`` or the child
    nested in its parent's ``conditionalParameterSpecs``."""
    out = [aip_spelling(p) for p in params]
    nested = set()
    for i, (j, values) in sorted(conditions.items()):
        if draw(st.booleans()):
            listed = values if isinstance(values, list) else [values]
            key = _PARENT_KEY[params[j]["type"]]
            out[j].setdefault("conditionalParameterSpecs", []).append(
                {"parameterSpec": out[i], key: {"values": listed}})
            nested.add(i)
        else:
            out[i]["when"] = {params[j]["name"]: values}
    return [p for i, p in enumerate(out) if i not in nested]


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid experiment in our spelling, AI Platform's, or a mix."""
    names = draw(st.lists(st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,8}", fullmatch=True),
                          min_size=1, max_size=4, unique=True))
    params = [draw(numeric_param(n) | listed_param(n)) for n in names]
    conditions = draw(conditions_of(params))
    if draw(st.booleans()):
        params = aip_with_conditions(draw, params, conditions)
    else:
        for i, (j, values) in conditions.items():
            params[i]["when"] = {params[j]["name"]: values}
    hp: dict[str, Any] = {"params": params}
    spec: dict[str, Any] = {"command": draw(st.lists(TEXT, min_size=1, max_size=3))}
    optional = {
        "name": st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
        "env": st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True),
                               # env takes numbers below 10**30 (as_text refuses huger)
                               TEXT | st.integers(-(10**29), 10**29), max_size=3),
        "goal": st.sampled_from(["maximize", "minimize", "MAXIMIZE", "min"]),
        "objective": st.sampled_from(["last", "best", "BEST"]),
        "max_trials": st.integers(1, 10**6),
        "max_retries_per_trial": st.integers(0, 5),
        "gpus_per_trial": st.sampled_from([0, 1, 2, 8, 0.5, 0.25, 1 / 3, "1/7"]),
        "trial_timeout": st.sampled_from(["2h", "1h30m", 45, 0.5, "10 min"]),
        "fail_fast": st.booleans(),
        "search": st.sampled_from(["random", "grid"]) | st.fixed_dictionaries(
            {"algorithm": st.sampled_from(["random", "tpe"]), "seed": st.integers(0, 2**63 - 1)},
            optional={"opts": PLAIN, "points": st.integers(1, 9)}),
        "early_stopping": st.sampled_from(["median"]) | st.fixed_dictionaries(
            {"policy": st.just("asha")}, optional={"grace": PLAIN}),
        "stop": st.dictionaries(TEXT, st.integers(-9, 9) | FINITE, max_size=3),
        "priority": st.integers(-100, 100),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        spec[key] = draw(optional[key])
    aip = {"metric": "hyperparameterMetricTag", "max_parallel_trials": "maxParallelTrials",
           "max_failed_trials": "maxFailedTrials", "resume_from": "resumePreviousJobId"}
    values = {"metric": TEXT, "max_parallel_trials": st.integers(1, 64),
              "max_failed_trials": st.integers(1, 64), "resume_from": TEXT}
    for key, theirs in aip.items():
        if key == "metric" or draw(st.booleans()):
            target, spelled = (hp, theirs) if draw(st.booleans()) else (spec, key)
            target[spelled] = draw(values[key])
    if draw(st.booleans()):
        spec.update(hp)
    else:
        spec["trainingInput"] = {"scaleTier": "BASIC", "hyperparameters": hp}
    return spec


@settings(max_examples=300, deadline=None)
@given(valid_specs())
def test_valid_specs_round_trip(data: dict[str, Any]) -> None:
    spec = parse_experiment(data, base_dir="/tmp")
    stored = json.loads(json.dumps(spec.to_dict(), allow_nan=False))
    assert ExperimentSpec.from_dict(stored) == spec
    assert ExperimentSpec.from_dict(stored).to_dict() == stored
    spec.space()  # conditions name earlier parameters that can be conditioned on


# Pieces of YAML that reach PyYAML's odd corners: explicit tags, anchors, merges, flow syntax.
YAML_BITS = st.sampled_from([
    "!!timestamp x", "!!bool yes", "!!int 0x", "!!float x", "!!binary 3", "!!set {a}",
    "!!omap [a: 1]", "!!python/name:os.system", "&a [*a]", "*nope", "<<: {a: 1}", "? [a]",
    "[", "{", "]", ": ", "- ", "\n", "\n  ", "\t", "'", '"', "#", "%YAML 1.1\n---\n", "---",
    "1e400", "0o9", "params", "max_trials", "1" * 5000,
])
YAML_TEXT = st.lists(YAML_BITS | st.text(max_size=5), max_size=12).map("".join)


VALID_HEAD = "command: t\nmetric: m\nparams: [{name: a, type: discrete, values: [1]}]\n"


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["", "metric: ", "env: {A: ", VALID_HEAD]),
       YAML_TEXT | st.text(max_size=200),
       st.lists(YAML_TEXT | st.text(max_size=30), max_size=3))
def test_any_file_and_overrides_give_a_spec_or_a_spec_error(head: str, text: str,
                                                            overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "exp.yaml"
        path.write_text(head + text, encoding="utf-8", errors="surrogatepass")
        try:
            load_experiment_file(path, overrides=overrides)
        except SpecError as exc:
            assert exc.problems


@settings(max_examples=300, deadline=None)
@given(JUNK | st.text(max_size=12))
def test_units_return_a_number_or_raise_value_error(value: Any) -> None:
    for parse in (parse_duration, parse_memory_mib):
        try:
            result = parse(value)
        except ValueError:
            continue
        assert isinstance(result, float) and math.isfinite(result) and result >= 0
