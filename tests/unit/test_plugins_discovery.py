"""Finding, loading and starting plugins through entry points (gpusched.plugins)."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from gpusched import cli
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
    unreadable_distributions,
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


# -- installed metadata that cannot be parsed ------------------------------------------------

GOOD_MODULE = '''
from gpusched.plugin_api import SearchPlugin


class GoodSearch(SearchPlugin):
    summary = "a third-party search"

    def suggest(self, number, history):
        return None
'''


def dist_info(site: Path, name: str, version: str, entry_points: str) -> Path:
    """A ``name-version.dist-info`` folder in ``site``, as pip installs one."""
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    (folder / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return folder


@pytest.fixture
def broken_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """On sys.path: a valid third-party plugin, and beside it a distribution whose
    entry_points.txt has a malformed line (in another group: it breaks every group at once for
    ``importlib.metadata.entry_points()``)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "contract_goodplugs.py").write_text(GOOD_MODULE, encoding="utf-8")
    dist_info(site, "goodplugs", "1.0",
              "[gpusched.search]\ngoodsearch = contract_goodplugs:GoodSearch\n")
    dist_info(site, "brokenplug", "2.0",
              "[console_scripts]\nnot a valid line\n\n"
              "[gpusched.search]\nlost = brokenplug:Lost\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "contract_goodplugs", raising=False)
    return site


def test_one_malformed_distribution_breaks_nothing_else(broken_site: Path) -> None:
    # What gpusched used to read its plugins through fails for every group (a TypeError on
    # Python 3.11-3.13): every submit, restart and `gpusched plugins` failed with it.
    with pytest.raises(Exception):  # noqa: B017
        importlib.metadata.entry_points(group="gpusched.search")
    found = find_plugins("search")
    assert {"goodsearch", "random", "grid"} <= set(found) and "lost" not in found
    assert found["goodsearch"].dist is not None and found["goodsearch"].dist.name == "goodplugs"
    assert {"bounds"} <= set(find_plugins("stopping"))
    assert load_search_plugin("goodsearch").summary == "a third-party search"
    search = make_search_plugin("random", SPACE, goal=Goal.MAXIMIZE, seed=0, options={})
    assert search.suggest(0, ()) in ({"x": "a"}, {"x": "b"})
    assert make_stopping_plugin("bounds", metric="m", goal=Goal.MAXIMIZE, options={}).summary
    with pytest.raises(PluginError, match=r"unknown search plugin 'lost' \(installed: .*goodsea"):
        load_search_plugin("lost")


def test_a_malformed_distribution_is_named_by_describe(broken_site: Path) -> None:
    [unreadable] = unreadable_distributions()
    assert unreadable.name == "brokenplug" and unreadable.version == "2.0"
    assert unreadable.path == str(broken_site / "brokenplug-2.0.dist-info")
    assert unreadable.error.startswith("TypeError: ")
    rows = describe_plugins()
    by_name = {(r["kind"], r["name"]): r for r in rows}
    good = by_name[("search", "goodsearch")]
    assert good["distribution"] == "goodplugs" and good["error"] is None
    assert good["summary"] == "a third-party search"
    assert by_name[("search", "random")]["error"] is None
    broken = rows[-1]  # after the plugins
    assert (broken["kind"], broken["name"], broken["distribution"]) == ("?", "?", "brokenplug")
    assert broken["version"] == "2.0" and broken["summary"] is None
    error = broken["error"] or ""
    assert str(broken_site / "brokenplug-2.0.dist-info") in error and "TypeError" in error
    # A given entry-point source is all there is: no rows from the environment.
    assert all(r["kind"] != "?" for r in describe_plugins(entry_points=fake()))


def test_gpusched_plugins_lists_the_malformed_distribution(
    broken_site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["plugins"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "goodsearch" in out and "brokenplug" in out and "cannot be read" in out
    assert cli.main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["distribution"] for r in rows if r["kind"] == "?"] == ["brokenplug"]


def test_a_sound_environment_has_no_unreadable_distribution() -> None:
    assert unreadable_distributions() == []
    assert all(r["kind"] in ("search", "stopping") for r in describe_plugins())


def test_only_the_first_copy_of_a_distribution_on_the_path_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As importlib.metadata.entry_points() had it: a shadowed copy of a package (a stale
    # install further down sys.path) adds no second target for a name, so no conflict.
    first, second = tmp_path / "first", tmp_path / "second"
    dist_info(first, "twice", "2.0", f"[gpusched.search]\ntwice = {RANDOM}\n")
    dist_info(second, "twice", "1.0", f"[gpusched.search]\ntwice = {GRID}\n")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    assert find_plugins("search")["twice"].value == RANDOM
    assert load_search_plugin("twice").__name__ == "RandomSearch"
