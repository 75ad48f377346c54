"""What the two side-by-side benchmarks against Optuna share (``quality.py``, ``pruning.py``).

- :func:`ensure_optuna`: install the ``bench`` extra (Optuna 5, scipy, torch, greenlet) into
  the running interpreter's environment when it is missing, and import Optuna. Torch comes
  from a local CPU wheel when pip finds one without an index (PyPI's Linux wheels pull in 3 GB
  of CUDA libraries that a CPU benchmark never uses), otherwise from PyPI.
- :func:`write_section`: replace one benchmark's section of ``docs/benchmarks.md`` (between
  ``<!-- bench:NAME -->`` markers), so each command rewrites its own tables and nothing else.
- :func:`quartiles` and :func:`fmt`: the summary statistics and number format of the tables.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

__all__ = ["DOC", "BENCH_REQUIREMENTS", "ensure_optuna", "fmt", "progress", "quartiles",
           "single_thread_env",
           "write_section"]

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BENCH_REQUIREMENTS = ("optuna>=5,<6", "scipy", "torch>=2.2", "greenlet")  # the `bench` extra


def progress(message: str) -> None:
    """A progress line on stderr (the tables go to stdout)."""
    print(message, file=sys.stderr, flush=True)


def _missing() -> list[str]:
    missing = []
    for module in ("optuna", "scipy", "torch", "greenlet"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               *args]
    progress("installing: " + " ".join(command[3:]))
    subprocess.run(command, check=True)


def ensure_optuna() -> ModuleType:
    """Optuna 5, installed first (with scipy and torch, which its GPSampler needs) if missing."""
    if _missing():
        if "torch" in _missing():
            # A CPU build from a local wheel folder, if pip has one; deps come with the next step.
            try:
                _pip("--no-deps", "--no-index", "torch")
            except subprocess.CalledProcessError:
                progress("no local torch wheel; torch comes from PyPI")
        _pip(*BENCH_REQUIREMENTS)
        importlib.invalidate_caches()
    if _missing():
        raise SystemExit(f"could not import {', '.join(_missing())} after installing; "
                         f"run: {sys.executable} -m pip install -e '.[bench]'")
    optuna = importlib.import_module("optuna")
    if not str(optuna.__version__).startswith("5."):
        _pip(BENCH_REQUIREMENTS[0])
        raise SystemExit(f"found Optuna {optuna.__version__}, installed Optuna 5: run again")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    torch = importlib.import_module("torch")
    # One thread, as our numpy plugins get (OMP_NUM_THREADS below): the same cores for both.
    torch.set_num_threads(1)
    return optuna


def single_thread_env() -> None:
    """Limit BLAS and torch to one thread each; call before numpy is imported anywhere."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """The 25th, 50th and 75th percentiles (numpy's linear interpolation)."""
    q1, q2, q3 = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return float(q1), float(q2), float(q3)


def fmt(value: float) -> str:
    """Three significant digits, scientific below 0.001."""
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e5:
        return f"{value:.2e}"
    return f"{value:.3g}"


def write_section(name: str, text: str) -> None:
    """Put ``text`` between this benchmark's markers in docs/benchmarks.md (appended if new)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks against Optuna\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        doc = head + block + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(doc)
    progress(f"wrote the {name} tables into {DOC}")
