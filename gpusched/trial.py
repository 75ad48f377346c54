"""What a trainer imports: its hyperparameters, its reports, its checkpoint folder.

::

    from gpusched import trial

    params = trial.params()                    # {"learning_rate": 0.01, ...}
    for epoch in range(10):
        ...
        trial.report(step=epoch, val_accuracy=acc, val_loss=loss)

Run by the gpusched daemon, :func:`report` appends one JSON line per call to
``GPUSCHED_REPORT_FILE``; run standalone (no gpusched environment), it prints the metrics to
stderr instead, so the same trainer runs by hand unchanged.

Failures (SPEC section 5): a trainer that raises :class:`gpusched.FailedTrialError` (fail this
trial, no retry) or :class:`gpusched.FatalError` (stop the whole experiment) and does not catch
it gets a last line ``{"status": "failed"|"fatal", "reason": ...}`` written for it: importing
this module wraps ``sys.excepthook`` and ``threading.excepthook`` (the previous hooks still
run), which also look inside exception groups. :func:`fail` and :func:`fatal` do the same
without an exception.
"""

from __future__ import annotations

import json
import numbers
import os
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from gpusched.errors import FailedTrialError, FatalError

__all__ = [
    "params",
    "report",
    "checkpoint_dir",
    "budget",
    "initial_budget",
    "trial_id",
    "experiment_id",
    "attempt",
    "in_gpusched",
    "fail",
    "fatal",
]

# Guards the one open of the report file. Re-entrant: a signal handler that reports (on
# SIGTERM, say) runs in the thread it interrupted, maybe while that thread holds it.
_open_lock = threading.RLock()
_fd: int | None = None
# Each line is one write() to an O_APPEND fd: the kernel appends it whole, so lines from
# several threads, a signal handler or forked workers never mix, and no lock is held while
# writing (a handler that interrupts a write cannot wait for itself).
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
_params: dict[str, Any] | None = None
# The trial log stores 64-bit ints; a larger int is kept as a float.
_INT64 = 2**63


def in_gpusched() -> bool:
    """True when this process is a trial that the gpusched daemon started."""
    return bool(os.environ.get("GPUSCHED_REPORT_FILE"))


def params() -> dict[str, Any]:
    """This trial's hyperparameters (``GPUSCHED_PARAMS``); ``{}`` outside gpusched.

    The same values also arrive as ``--NAME=VALUE`` flags; this is for trainers that would
    rather not parse them. The returned dict is a copy: changing it changes nothing here.
    """
    global _params
    if _params is None:
        raw = json.loads(os.environ.get("GPUSCHED_PARAMS") or "{}")
        if not isinstance(raw, dict):
            raise ValueError(f"GPUSCHED_PARAMS is not a JSON object: {raw!r}")
        _params = raw
    return dict(_params)


def trial_id() -> str | None:
    """This trial's name, ``EXP/N`` as ``gpusched show`` takes it; None outside gpusched."""
    experiment, number = os.environ.get("GPUSCHED_EXPERIMENT"), os.environ.get("GPUSCHED_TRIAL")
    return f"{experiment}/{number}" if experiment and number else None


def attempt() -> int:
    """Which run of this trial this is (``GPUSCHED_ATTEMPT``): 1, then 2 and on when it runs
    again (a retry after a crash, ``gpusched resume``, a restart of the daemon); 1 outside
    gpusched. The reports of every attempt are one curve: ``training_iteration`` goes on."""
    raw = os.environ.get("GPUSCHED_ATTEMPT")
    return int(raw) if raw and raw.isdigit() else 1


def experiment_id() -> str | None:
    """This trial's experiment id (``GPUSCHED_EXPERIMENT``); None outside gpusched."""
    return os.environ.get("GPUSCHED_EXPERIMENT") or None


def checkpoint_dir() -> Path:
    """This trial's checkpoint folder, created; ``./checkpoints`` outside gpusched.

    A retried or resumed trial gets the same folder again, so a trainer that saves here and
    loads what it finds here continues where the previous attempt stopped.
    """
    path = Path(os.environ.get("GPUSCHED_CHECKPOINT_DIR") or "checkpoints").absolute()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _budget_var(name: str) -> int | float | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    value = float(raw)
    return int(value) if value.is_integer() else value


def budget(default: int | float | None = None) -> int | float | None:
    """The budget a budgeted search (``hyperband``) gives this trial: the epochs to train up
    to, counted from the start of its checkpoint chain (``GPUSCHED_BUDGET``); ``default``
    without one (another search, or outside gpusched)."""
    value = _budget_var("GPUSCHED_BUDGET")
    return default if value is None else value


def initial_budget() -> int | float:
    """Where the trial this one continues stopped (``GPUSCHED_INITIAL_BUDGET``, KerasTuner's
    ``initial_epoch``): 0 for a fresh configuration. What :func:`checkpoint_dir` holds is the
    truth; this says what to expect there."""
    value = _budget_var("GPUSCHED_INITIAL_BUDGET")
    return 0 if value is None else value


def _integer(name: str, value: int) -> int | float:
    """``value`` as the trial log stores it: a 64-bit int as it is, a larger one as a float.
    One too large even for a float would be dropped by the daemon without a word: refused."""
    if -_INT64 <= value < _INT64:
        return value
    try:
        return float(value)
    except OverflowError:
        # Not {value!r}: hundreds of digits, and past 4300 repr() itself raises.
        raise TypeError(
            f"trial.report(): {name} is an int of {value.bit_length()} bits, too large to"
            " store (the largest number the trial log holds is a float's, about 1.8e308)"
        ) from None


def _one_value(value: object) -> bool:
    """Whether ``value`` (an array, a tensor) holds exactly one value: 0-d, or of a shape like
    ``[1]`` (a metric after ``dist.all_reduce``). numpy says so with ``.size``; torch with
    ``.numel()``, its ``.size`` being a method. torch is never imported here."""
    if getattr(value, "ndim", None) == 0:
        return True
    size = getattr(value, "size", None)
    if isinstance(size, int) and not isinstance(size, bool):
        return size == 1
    numel = getattr(value, "numel", None)
    return callable(numel) and numel() == 1


def _number(name: str, value: object) -> int | float:
    """``value`` as a plain int or float; numpy and torch scalars, and arrays and tensors that
    hold one value, are converted."""
    if type(value) is float:
        return value
    if type(value) is int:
        return _integer(name, value)
    if not isinstance(value, bool) and isinstance(value, numbers.Integral):
        return _integer(name, int(value))  # numpy integers register as Integral
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)  # numpy floats register as Real
    item = getattr(value, "item", None)
    if callable(item) and _one_value(value):
        return _number(name, item())
    raise TypeError(
        f"trial.report(): {name}={value!r} is a {type(value).__name__}, not a number;"
        " pass an int or a float (a bool as int(flag))"
    )


def _report_fd() -> int:
    """The report file's fd, opened once: an open per report would not keep up with 10,000
    reports a second."""
    global _fd
    with _open_lock:
        if _fd is None:
            # A handler that interrupts this open opens too: one fd is left unused, no harm.
            _fd = os.open(os.environ["GPUSCHED_REPORT_FILE"], _APPEND, 0o666)
        return _fd


def _write(line: dict[str, Any]) -> None:
    """Append ``line`` to the report file, unbuffered, so the daemon sees it at once."""
    data = memoryview((json.dumps(line) + "\n").encode())
    fd = _report_fd()
    while data:
        # One call writes it all; a short write (a full disk, a signal during a huge line)
        # is finished by the next.
        data = data[os.write(fd, data):]


def report(step: int | None = None, **metrics: object) -> None:
    """Report this trial's metrics now, e.g. ``report(step=3, val_accuracy=0.91)``.

    Values must be numbers (numpy and torch scalars, and arrays and tensors of one value, are
    converted); anything else raises ``TypeError``, as does an int too large for a float.
    An int beyond 64 bits is stored as a float. ``step`` is stored as the metric ``step``.
    """
    line: dict[str, Any] = {}
    if step is not None:
        line["step"] = _number("step", step)
        if type(line["step"]) is not int:
            raise TypeError(f"trial.report(): step={step!r} is not an integer (of 64 bits)")
    for name, value in metrics.items():
        line[name] = _number(name, value)
    if not in_gpusched():
        shown = " ".join(
            f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in line.items()
        )
        print(f"[gpusched] {shown}", file=sys.stderr, flush=True)
        return
    line["_t"] = time.time()  # when it happened, not when the daemon got round to reading it
    _write(line)


def _write_status(status: str, reason: str) -> None:
    if in_gpusched():
        _write({"status": status, "reason": reason})
    else:
        print(f"[gpusched] trial {status}: {reason}", file=sys.stderr, flush=True)


def _reason(reason: object) -> str:
    """A status line's reason: a str as it is; anything else (often an exception, as in
    ``except OSError as e: trial.fail(e)``) as str() gives it, or its type's name if empty."""
    if isinstance(reason, str):
        return reason
    return str(reason) or type(reason).__name__


def _end(status: str, reason: object) -> NoReturn:
    _write_status(status, _reason(reason))
    if threading.current_thread() is not threading.main_thread():
        # sys.exit() would end only this thread: the trainer would go on, exit 0, and its
        # status line would be ignored. So the process ends now, as the line says; what the
        # trainer printed is flushed, but no finally block (this thread's or another's) and no
        # atexit handler runs.
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: nothing to keep
                pass
        os._exit(1)
    sys.exit(1)


def fail(reason: object) -> NoReturn:
    """End this trial as failed, not to be retried (like raising ``FailedTrialError``).

    ``reason`` is any object, an exception say, taken as its str(). From a thread other than
    the main one, the process ends at once (``os._exit(1)``)."""
    _end("failed", reason)


def fatal(reason: object) -> NoReturn:
    """End this trial as failed and stop its whole experiment (like raising ``FatalError``).

    ``reason`` is any object, an exception say, taken as its str(). From a thread other than
    the main one, the process ends at once (``os._exit(1)``)."""
    _end("fatal", reason)


def _status_of(exc: BaseException) -> tuple[str, str] | None:
    """The status an uncaught ``exc`` says: ours, or one inside an exception group (asyncio's
    TaskGroup, anyio and trio wrap their tasks' errors in one), at any depth. A FatalError
    anywhere wins over a FailedTrialError: the experiment must stop either way."""
    failed = None
    todo = [exc]
    while todo:  # not recursive: however deep the groups, the hook itself cannot fail
        inner = todo.pop()
        if isinstance(inner, FatalError):
            return "fatal", _reason(inner)
        if isinstance(inner, FailedTrialError):
            failed = failed or ("failed", _reason(inner))
        elif isinstance(inner, BaseExceptionGroup):
            todo.extend(reversed(inner.exceptions))  # in order: the first failure's reason
    return failed


def _write_status_of(exc: BaseException | None) -> None:
    status = None if exc is None else _status_of(exc)
    if status is not None:
        _write_status(*status)


_previous_hook = sys.excepthook
_previous_thread_hook = threading.excepthook


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """Write the status line for our two errors, then let the previous hook print as usual."""
    try:
        _write_status_of(exc)
    finally:
        _previous_hook(kind, exc, tb)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """The same for an error that ends another thread. Only that thread dies, as Python has
    it: the line counts if the process then exits non-zero (and is ignored after exit 0)."""
    try:
        _write_status_of(args.exc_value)
    finally:
        _previous_thread_hook(args)


sys.excepthook = _excepthook
threading.excepthook = _thread_excepthook
