"""DESIGN.md's import rules and the ``__all__`` rule, held by parsing the source with ``ast``.

anyio's ``tests/test_all_attributes.py`` holds its ``__all__`` rule the same way. Each rule names
the offending module and line, so a failure says what to move.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gpusched"
DAEMON = PACKAGE / "_daemon"
PLUGINS = ROOT / "plugins" / "gpusched_plugins"


@dataclass(frozen=True)
class Import:
    """One imported module (absolute dotted name) and where the import statement is."""

    module: str
    line: int
    in_function: bool


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


class _Collector(ast.NodeVisitor):
    def __init__(self, package: str) -> None:
        self.package = package
        self.depth = 0
        self.found: list[Import] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append(Import(alias.name, node.lineno, self.depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(node, self.package)
        # `from gpusched import _daemon` imports gpusched._daemon, and `from gpusched.errors
        # import X` reads gpusched.errors: `base.name` is within what was imported either way.
        for alias in node.names:
            self.found.append(Import(f"{base}.{alias.name}", node.lineno, self.depth > 0))


def imports_of_source(source: str, package: str) -> list[Import]:
    collector = _Collector(package)
    collector.visit(ast.parse(source))
    return collector.found


@functools.cache
def imports_of(path: Path) -> list[Import]:
    root = ROOT if path.is_relative_to(PACKAGE) else PLUGINS.parent
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_of_source(path.read_text(), package)


def sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


ALL_SOURCES = sources(PACKAGE) + sources(PLUGINS)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def is_within(module: str, top: str) -> bool:
    return module == top or module.startswith(top + ".")


def importers_of(top: str) -> dict[str, list[int]]:
    """Every source file that imports ``top`` (or a submodule), with the lines."""
    out: dict[str, list[int]] = {}
    for path in ALL_SOURCES:
        lines = sorted({i.line for i in imports_of(path) if is_within(i.module, top)})
        if lines:
            out[rel(path)] = lines
    return out


# --- the collector itself -------------------------------------------------------------------


def test_the_collector_sees_every_kind_of_import() -> None:
    source = (
        "import os.path\n"
        "from gpusched import _daemon\n"
        "from . import models\n"
        "from ..errors import StoreError\n"
        "def f():\n"
        "    import gpusched._daemon.main\n"
        "async def g():\n"
        "    from pynvml import nvmlInit\n"
    )
    found = imports_of_source(source, "gpusched.sub")
    modules = {(i.module, i.in_function) for i in found}
    assert ("os.path", False) in modules
    assert ("gpusched._daemon", False) in modules
    assert ("gpusched.sub.models", False) in modules
    assert ("gpusched.errors.StoreError", False) in modules
    assert ("gpusched._daemon.main", True) in modules
    assert ("pynvml.nvmlInit", True) in modules
    assert all(is_within(i.module, "pynvml") for i in found if i.in_function and i.line == 8)


def test_the_scan_covers_the_package_the_daemon_and_the_plugins() -> None:
    names = {rel(p) for p in ALL_SOURCES}
    assert {"gpusched/cli.py", "gpusched/_daemon/store.py", "gpusched/_daemon/nvml.py",
            "plugins/gpusched_plugins/grid_search.py"} <= names
    # The rules below would pass vacuously if the scan missed the imports they look for.
    assert "gpusched/_daemon/store.py" in importers_of("aiosqlite")
    assert "gpusched/_daemon/nvml.py" in importers_of("pynvml")


# --- import direction -----------------------------------------------------------------------


def test_client_side_modules_never_import_the_daemon() -> None:
    bad = []
    for path in sources(PACKAGE):
        if path.is_relative_to(DAEMON):
            continue
        for imp in imports_of(path):
            if not is_within(imp.module, "gpusched._daemon"):
                continue
            # `gpusched daemon` is the one client command that runs the daemon: lazily.
            if rel(path) == "gpusched/cli.py" and imp.in_function:
                continue
            bad.append(f"{rel(path)}:{imp.line} imports {imp.module}")
    assert bad == []


def test_the_cli_imports_the_daemon_only_lazily() -> None:
    cli = imports_of(PACKAGE / "cli.py")
    daemon = [i for i in cli if is_within(i.module, "gpusched._daemon")]
    assert daemon, "cli.py should start the daemon for `gpusched daemon`"
    assert all(i.in_function for i in daemon)


@pytest.mark.parametrize(("top", "owner"), [
    ("pynvml", "gpusched/_daemon/nvml.py"),
    ("aiosqlite", "gpusched/_daemon/store.py"),
])
def test_a_foreign_library_is_imported_by_its_one_module(top: str, owner: str) -> None:
    assert set(importers_of(top)) == {owner}


def test_nothing_imports_torch() -> None:
    assert importers_of("torch") == {}


def test_only_the_plot_module_imports_matplotlib_and_only_when_drawing() -> None:
    assert set(importers_of("matplotlib")) == {"gpusched/plot.py"}
    # `gpusched plot` is the one command that needs the optional extra: imported lazily.
    assert all(i.in_function for i in imports_of(PACKAGE / "plot.py")
               if is_within(i.module, "matplotlib"))
    cli_side = [i for p in (PACKAGE / "cli.py", PACKAGE / "views" / "listing.py")
                for i in imports_of(p) if is_within(i.module, "gpusched.plot")]
    assert cli_side and all(i.in_function for i in cli_side)


@pytest.mark.parametrize("top", ["tensorboard", "tensorflow", "google.protobuf", "tensorboardX"])
def test_the_tensorboard_export_needs_no_tensorboard_at_run_time(top: str) -> None:
    assert importers_of(top) == {}


@pytest.mark.parametrize("name", ["tfevents.py", "tb_hparams.py"])
def test_the_event_file_writer_uses_only_the_standard_library(name: str) -> None:
    ours = ("gpusched.tfevents", "gpusched.render")  # render: plain-text helpers, stdlib only
    bad = [f"{i.line}: {i.module}" for i in imports_of(PACKAGE / name)
           if i.module.split(".")[0] not in sys.stdlib_module_names
           and not any(is_within(i.module, top) for top in ours)]
    assert bad == []
    render = [i.module for i in imports_of(PACKAGE / "render.py")]
    assert all(m.split(".")[0] in sys.stdlib_module_names for m in render)


def _configure_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "structlog" and any(
            a.name == "configure" for a in node.names
        ):
            lines.append(node.lineno)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("configure", "configure_once")
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "structlog"):
            lines.append(node.lineno)
    return lines


def test_only_the_log_module_configures_structlog() -> None:
    callers = {rel(p): lines for p in ALL_SOURCES if (lines := _configure_calls(p))}
    assert set(callers) == {"gpusched/log.py"}


def test_built_in_plugins_import_only_the_plugin_api_numpy_and_the_standard_library() -> None:
    bad = []
    for path in sources(PLUGINS):
        for imp in imports_of(path):
            top = imp.module.split(".")[0]
            if top in sys.stdlib_module_names or top in ("numpy", "gpusched_plugins"):
                continue
            if is_within(imp.module, "gpusched.plugin_api"):
                continue
            bad.append(f"{rel(path)}:{imp.line} imports {imp.module}")
    assert bad == []


# --- __all__ --------------------------------------------------------------------------------


def declares_all(source: str) -> bool:
    for node in ast.parse(source).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


PUBLIC_MODULES = [p for p in sources(PACKAGE) if not p.name.startswith("_")]


def test_there_are_public_modules_to_check() -> None:
    names = {rel(p) for p in PUBLIC_MODULES}
    assert {"gpusched/spec.py", "gpusched/_daemon/devices.py"} <= names
    assert "gpusched/_spec_aip.py" not in names


@pytest.mark.parametrize("path", PUBLIC_MODULES, ids=rel)
def test_every_public_module_has_dunder_all(path: Path) -> None:
    assert declares_all(path.read_text()), f"{rel(path)} has no __all__"


def test_dunder_all_detection_is_not_vacuous() -> None:
    assert declares_all("__all__ = ['x']\n")
    assert declares_all("__all__: list[str] = []\n")
    assert not declares_all("x = 1\ndef f():\n    __all__ = []\n")
    assert not declares_all("# __all__ = []\n")


def test_the_cli_imports_only_what_submit_needs_before_a_command_runs() -> None:
    # Even the whole parser (`gpusched --help`) imports none of the view commands' modules,
    # the daemon or the settings: they are imported when their command runs, so `submit` and
    # the rest start fast.
    code = ("import sys, gpusched.cli; gpusched.cli.build_parser();"
            " print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert "gpusched.client" in loaded
    slow = {"gpusched.views.listing", "gpusched.views.watch", "gpusched.views.query",
            "gpusched.export", "gpusched.config", "gpusched._daemon.main", "tomllib", "yaml",
            "numpy", "anyio",
            # ~30 ms between them at every command's start (typing only for the type checker,
            # errors.Problem a plain class; the daemon parses a submitted file).
            "typing", "dataclasses", "gpusched.spec"}
    assert not slow & loaded, slow & loaded
