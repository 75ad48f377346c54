"""gpusched: hyperparameter search on the NVIDIA GPUs of one Linux host.

What a trainer needs is here: ``from gpusched import trial`` (``trial.params()``,
``trial.report(...)``, ``trial.checkpoint_dir()``) and the two errors that end a trial on
purpose, :class:`FailedTrialError` (no retry) and :class:`FatalError` (stop the experiment).
"""

from __future__ import annotations

import os

from gpusched.errors import FailedTrialError, FatalError, GpuschedError

TYPE_CHECKING = False  # typing is imported for the type checker only: the CLI starts faster
if TYPE_CHECKING:
    from typing import Any

    from gpusched import trial

__all__ = ["__version__", "FailedTrialError", "FatalError", "GpuschedError", "trial"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `trial` installs an excepthook when imported: only do that for code that asks for it.
    if name == "trial":
        import importlib

        return importlib.import_module("gpusched.trial")
    raise AttributeError(f"module 'gpusched' has no attribute {name!r}")


if os.environ.get("GPUSCHED_REPORT_FILE"):
    # In a trial, `import gpusched` is enough for an uncaught FailedTrialError / FatalError to
    # reach the daemon (SPEC section 5): the trial module's excepthook writes the status line.
    # Elsewhere (the CLI, the daemon) nothing is installed.
    import gpusched.trial  # noqa: F401
