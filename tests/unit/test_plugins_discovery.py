"""Finding, loading and starting plugins through entry points (gpusched.plugins)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from gpusched.errors import PluginError
from gpusched.plugin_api import Goal, Param, ParamType, SearchPlugin, SearchSpace
from gpusched.plugins import (
    EntryPointSource,
    describe_plugins,
    find_plugins,
    load_search_plugin,
    load_stopping_plugin,
    make_search_plugin,
    make_stopping_plugin,
)

SPACE = SearchSpace((Param("x", ParamType.CATEGORICAL, values=("a", "b")),))
RANDOM = "gpusched_plugins.random_search:RandomSearch"
GRID = "gpusched_plugins.grid_search:GridSearch"


class ExplodingSearch(SearchPlugin):
    """A plugin whose constructor has a bug."""

    summary = "explodes"

    def __init__(
        self, space: SearchSpace, *, goal: Goal, seed: int, options: Mapping[str, Any]
    ) -> None:
        raise RuntimeError("kaboom")

    def suggest(self, number: int, history: Any) -> None:
        return None


def fake(*specs: tuple[str, str, str]) -> EntryPointSource:
    """An entry-point source holding ``(group suffix, name, value)`` entries."""
    eps = [
        EntryPoint(name=name, value=value, group=f"gpusched.{kind}") for kind, name, value in specs
    ]

    def source(group: str) -> Iterable[EntryPoint]:
        return [ep for ep in eps if ep.group == group]

    return source


def test_the_built_ins_are_installed() -> None:
    assert find_plugins("search")["random"].value == RANDOM
    assert find_plugins("search")["grid"].value == GRID
    assert find_plugins("stopping")["bounds"].value == "gpusched_plugins.bounds:BoundsStopping"


def test_finding_imports_no_plugin_code() -> None:
    code = (
        "import sys; from gpusched.plugins import find_plugins; find_plugins('search'); "
        "find_plugins('stopping'); "
        "print(sorted(m for m in sys.modules if m.startswith('gpusched_plugins.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_finding_survives_broken_entry_points() -> None:
    source = fake(("search", "broken", "nonexistent_mod:X"), ("search", "random", RANDOM))
    assert list(find_plugins("search", entry_points=source)) == ["broken", "random"]


def test_unknown_name_lists_the_installed_ones() -> None:
    source = fake(("search", "random", RANDOM), ("search", "grid", GRID))
    with pytest.raises(PluginError) as err:
        load_search_plugin("foo", entry_points=source)
    assert str(err.value) == "unknown search plugin 'foo' (installed: grid, random)"
    with pytest.raises(PluginError, match=r"unknown stopping plugin 'foo' \(installed: none\)"):
        load_stopping_plugin("foo", entry_points=source)


def test_the_real_environment_lists_its_plugins_too() -> None:
    with pytest.raises(PluginError, match=r"installed: .*grid.*random"):
        load_search_plugin("foo")


def test_a_broken_entry_point_names_itself_and_the_cause() -> None:
    source = fake(("search", "broken", "nonexistent_mod:X"))
    with pytest.raises(PluginError) as err:
        load_search_plugin("broken", entry_points=source)
    message = str(err.value)
    assert "'broken'" in message and "nonexistent_mod:X" in message
    assert "ModuleNotFoundError" in message
    assert isinstance(err.value.__cause__, ModuleNotFoundError)


def test_a_missing_attribute_is_a_load_failure() -> None:
    source = fake(("search", "typo", "gpusched_plugins.random_search:RandomSaerch"))
    with pytest.raises(PluginError, match="failed to load: AttributeError"):
        load_search_plugin("typo", entry_points=source)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (RANDOM, "not a subclass of gpusched.plugin_api.StoppingPlugin"),  # the wrong kind
        ("math:pi", "not a subclass"),  # not a class at all
        ("gpusched.plugin_api:StoppingPlugin", "does not implement should_stop"),  # abstract
    ],
)
def test_the_wrong_type_is_refused(value: str, match: str) -> None:
    with pytest.raises(PluginError, match=match):
        load_stopping_plugin("odd", entry_points=fake(("stopping", "odd", value)))


def test_one_name_registered_twice_is_refused_unless_identical() -> None:
    twice = fake(("search", "random", RANDOM), ("search", "random", GRID))
    with pytest.raises(PluginError, match="registered more than once"):
        load_search_plugin("random", entry_points=twice)
    same = fake(("search", "random", RANDOM), ("search", "random", RANDOM))
    assert load_search_plugin("random", entry_points=same).__name__ == "RandomSearch"


def test_bad_options_become_a_plugin_error() -> None:
    with pytest.raises(PluginError, match=r"^search plugin 'grid': unknown grid option") as err:
        make_search_plugin("grid", SPACE, goal=Goal.MAXIMIZE, seed=0, options={"bogus": 1})
    assert err.value.__cause__ is not None
    with pytest.raises(PluginError, match=r"^stopping plugin 'bounds': stop bounds must be"):
        make_stopping_plugin("bounds", metric="m", goal=Goal.MAXIMIZE, options={"m": "high"})


def test_a_constructor_bug_becomes_a_plugin_error() -> None:
    source = fake(("search", "boom", f"{__name__}:ExplodingSearch"))
    with pytest.raises(PluginError, match=r"^search plugin 'boom': RuntimeError: kaboom$"):
        make_search_plugin(
            "boom", SPACE, goal=Goal.MAXIMIZE, seed=0, options={}, entry_points=source
        )


def test_make_returns_working_instances() -> None:
    search = make_search_plugin("grid", SPACE, goal=Goal.MAXIMIZE, seed=0, options={})
    assert search.suggest(0, ()) == {"x": "a"}
    stopping = make_stopping_plugin("bounds", metric="m", goal=Goal.MAXIMIZE, options={"m": 1})
    assert stopping.summary


def test_describe_lists_the_built_ins_with_their_distribution() -> None:
    rows = {(row["kind"], row["name"]): row for row in describe_plugins()}
    for key in [("search", "random"), ("search", "grid"), ("stopping", "bounds")]:
        row = rows[key]
        assert row["distribution"] == "gpusched" and row["version"]
        assert row["summary"] and row["error"] is None


def test_describe_lists_a_broken_plugin_with_its_error() -> None:
    source = fake(
        ("search", "random", RANDOM),
        ("search", "broken", "nonexistent_mod:X"),
        ("stopping", "odd", "math:pi"),
    )
    rows = describe_plugins(entry_points=source)
    assert [(r["kind"], r["name"]) for r in rows] == [
        ("search", "broken"),
        ("search", "random"),
        ("stopping", "odd"),
    ]
    broken, random, odd = rows
    assert broken["summary"] is None and "nonexistent_mod" in (broken["error"] or "")
    assert broken["module"] == "nonexistent_mod:X" and broken["distribution"] is None
    assert random["error"] is None and random["summary"]
    assert "not a subclass" in (odd["error"] or "")
