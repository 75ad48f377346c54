"""Issue 4, point 5: the example third-party plugin package (examples/plugin-package) is
pip-installed, offline, beside gpusched, and its plugins are then found by entry-point name:
its own contract tests pass, gpusched's suite checks it like a built-in, and a real daemon runs
a search with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.harness import running_daemon

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "examples" / "plugin-package"
CURVE = """\
import json, os, sys, time
x = float(next(a for a in sys.argv if a.startswith("--x=")).split("=")[1])
for step in range(5):
    time.sleep(0.1)
    with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
        fh.write(json.dumps({"score": x}) + "\\n")
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The package installed with pip into a folder of its own (put on PYTHONPATH to use it).

    Offline and without build isolation: its build backend, hatchling, is one of gpusched's
    dev dependencies, so this works wherever ./test.sh's venv does."""
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target),
         str(PACKAGE)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    yield target


def with_site(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}


def run_pytest(site: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *args], cwd=cwd, env=with_site(site), capture_output=True,
                          text=True, timeout=300, check=False)


def test_the_package_is_listed_by_its_distribution(site: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "gpusched", "plugins", "--json"],
                         env=with_site(site), capture_output=True, text=True, timeout=60,
                         check=True)
    found = {(p["kind"], p["name"]): p for p in json.loads(out.stdout)}
    for key in (("search", "halton"), ("stopping", "floor")):
        assert found[key]["distribution"] == "gpusched-example-plugins", found[key]
        assert found[key]["error"] is None


def test_its_own_contract_tests_pass(site: Path) -> None:
    done = run_pytest(site, "tests", cwd=PACKAGE)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_gpuscheds_own_plugin_checks_cover_it_once_installed(site: Path) -> None:
    # Found through the entry points: the contract over every plugin, and a daemon killed
    # mid-search suggesting what an undisturbed one does, now include halton and floor.
    done = run_pytest(site, "tests/plugins/test_contract_all.py",
                      "tests/integration/test_pure_over_the_log.py", "-k", "halton or floor",
                      "-rA")
    assert done.returncode == 0, done.stdout[-3000:]
    passed = [line for line in done.stdout.splitlines() if line.startswith("PASSED ")]
    assert any(line.endswith("suggests_what_an_undisturbed_one_does[halton]") for line in passed)
    assert any("TestEverySearchPlugin" in line and "-halton-" in line for line in passed)
    assert any("TestEveryStoppingPlugin" in line and "-floor]" in line for line in passed)


def expected_params(site: Path, seed: int, count: int) -> list[dict[str, Any]]:
    """What the installed halton plugin proposes for trials 0 .. count - 1 (it ignores the
    history), asked in a process that has the package on its path."""
    code = (
        "import json, sys\n"
        "from gpusched.spec import parse_experiment\n"
        "from gpusched.plugins import make_search_plugin\n"
        "spec = parse_experiment(json.loads(sys.argv[1]), base_dir='/')\n"
        "plugin = make_search_plugin('halton', spec.space(), goal=spec.goal, seed=int(sys.argv[2]),"
        " options={})\n"
        "print(json.dumps([dict(plugin.suggest(n, ()) or {}) for n in range(int(sys.argv[3]))]))\n"
    )
    spec = {"name": "x", "command": "true", "metric": "score", "params": PARAMS}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(spec), str(seed), str(count)],
                         env=with_site(site), capture_output=True, text=True, timeout=60,
                         check=True)
    params: list[dict[str, Any]] = json.loads(out.stdout)
    return params


PARAMS = [{"name": "x", "type": "double", "min": 0.0, "max": 1.0},
          {"name": "k", "type": "categorical", "values": ["a", "b", "c"]}]


def test_a_real_search_runs_with_the_plugins_chosen_by_name(site: Path, tmp_path: Path) -> None:
    script = tmp_path / "curve.py"
    script.write_text(CURVE)
    with running_daemon(tmp_path / "d", env={"PYTHONPATH": str(site)}) as d:
        exp = d.submit({"command": [sys.executable, str(script)], "metric": "score",
                        "max_trials": 6, "max_parallel_trials": 2,
                        "search": {"algorithm": "halton", "seed": 3},
                        "early_stopping": {"policy": "floor", "floor": 0.5, "grace_period": 2},
                        "params": PARAMS})
        view = d.wait_experiment(exp)
        trials = d.client.trials(exp)
        refused = d.cli("submit", str(write(tmp_path, {"search": {"algorithm": "halton",
                                                                   "skp": 1}})))
    assert view["state"] == "completed", view
    assert [t["params"] for t in trials] == expected_params(site, 3, 6)
    for t in trials:  # floor stops exactly the trials that stay below 0.5
        if t["params"]["x"] < 0.5:
            assert t["state"] == "stopped" and t["reason"].startswith("floor: best score")
            assert t["reports"] < 5
        else:
            assert (t["state"], t["reports"]) == ("completed", 5)
    assert {t["state"] for t in trials} == {"stopped", "completed"}
    # A typo in the plugin's options is refused at submit with the plugin's own message.
    assert refused.returncode != 0 and "unknown option(s) skp" in refused.stderr


def write(tmp_path: Path, overrides: dict[str, Any]) -> Path:
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"name": "typo", "command": "true", "metric": "score",
                                    "params": PARAMS, **overrides}))
    return path
