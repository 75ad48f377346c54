"""An experiment as TensorBoard's HParams dashboard reads it, written by ``tfevents.py``.

The layout is the one ``tensorboard.plugins.hparams.api`` writes: the folder's own event file
holds the experiment (each hyperparameter's type and domain, each metric), and each trial is a
run of its own (``trial-N/``) holding its session start (its hyperparameters), one scalar per
reported number at its ``training_iteration``, its ``objective``, and its session end (success
or failure). Message field numbers are those of the plugin's ``api.proto`` and
``plugin_data.proto``.

Every reported number is written, NaN and infinities included (TensorBoard shows them); one
beyond float32's range, which scalars are, is written as ±inf. The files are written into a
hidden folder inside the target and moved into place at the end, so that a failure (a full
disk) leaves nothing behind, and a retry finds the folder as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gpusched.render import finite_number
from gpusched.tfevents import EventWriter, Message, scalar_value, summary_event

__all__ = ["write_hparams", "numeric_metrics", "EXPERIMENT_TAG", "SESSION_START_TAG",
           "SESSION_END_TAG", "OBJECTIVE_TAG"]

PLUGIN_NAME = "hparams"
EXPERIMENT_TAG = "_hparams_/experiment"
SESSION_START_TAG = "_hparams_/session_start_info"
SESSION_END_TAG = "_hparams_/session_end_info"
OBJECTIVE_TAG = "objective"
_FLOAT64, _STRING, _BOOL = 3, 1, 2  # hparams.DataType
_SUCCESS, _FAILURE, _RUNNING = 1, 2, 3  # hparams.Status
# Ray Tune's auto-filled fields: bookkeeping, not metrics to compare trials by.
_NOT_METRICS = frozenset({"training_iteration", "timestamp", "time_this_iter_s", "step"})
# The null tensor TensorBoard's own hparams summaries carry: DT_FLOAT, shape [0].
_NULL_TENSOR = Message().varint(1, 1).message(2, Message().message(2, Message()))


def _is_number(value: Any) -> bool:
    return finite_number(value) is not None


def _is_reported_number(value: Any) -> bool:
    """An int or a float, finite or not (a diverging loss is worth seeing), not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def numeric_metrics(metric: str, reports: Mapping[int, Sequence[Mapping[str, Any]]]) -> list[str]:
    """The experiment's metric first, then every other number the trials reported."""
    names = [metric]
    for rows in reports.values():
        for row in rows:
            names += [k for k, v in row.items()
                      if k not in names and k not in _NOT_METRICS and _is_reported_number(v)]
    return names


def _plugin_value(tag: str, number: int, data: Message) -> Message:
    content = Message().varint(1, 0).message(number, data)  # HParamsPluginData, version 0
    plugin = Message().string(1, PLUGIN_NAME).raw(2, content.encode())
    return (Message().string(1, tag).message(9, Message().message(1, plugin))
            .message(8, _NULL_TENSOR))


def _proto_value(value: Any) -> Message:
    """A ``google.protobuf.Value``."""
    if isinstance(value, bool):
        return Message().varint(4, value)
    if isinstance(value, int | float):
        return Message().double(2, value)
    return Message().string(3, str(value))


def _hparam_info(param: Mapping[str, Any]) -> Message:
    info = Message().string(1, param["name"])
    values = param.get("values")
    if values is None:  # a numeric range
        return (info.varint(4, _FLOAT64)
                .message(6, Message().double(1, param["min"]).double(2, param["max"])))
    kind = (_BOOL if all(isinstance(v, bool) for v in values)
            else _FLOAT64 if all(_is_number(v) for v in values) else _STRING)
    domain = Message()
    for v in values:
        domain.message(1, _proto_value(v if kind != _STRING else str(v)))
    return info.varint(4, kind).message(5, domain)


def _experiment(exp: Mapping[str, Any], metrics: Sequence[str]) -> Message:
    out = Message().string(6, exp["name"]).string(1, f"gpusched experiment {exp['id']}")
    out.string(2, exp.get("owner") or "").double(3, exp["submitted_at"])
    for param in exp["spec"]["params"]:
        out.message(4, _hparam_info(param))
    for name in [OBJECTIVE_TAG, *metrics]:
        out.message(5, Message().message(1, Message().string(2, name)))
    return out


def _status(state: str) -> int:
    if state in ("completed", "stopped"):
        return _SUCCESS
    return _RUNNING if state in ("queued", "running") else _FAILURE


def _write_trial(folder: Path, trial: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                 metrics: Sequence[str]) -> Path:
    start = trial.get("started_at") or trial["created_at"]
    run = f"trial-{trial['number']}"
    with EventWriter(folder / run, wall_time=start) as writer:
        session = Message().string(4, run).double(5, start)
        for name, value in trial["params"].items():
            session.message(1, Message().string(1, name).message(2, _proto_value(value)))
        writer.write(summary_event([_plugin_value(SESSION_START_TAG, 3, session)], step=0,
                                   wall_time=start))
        step = 0
        for i, row in enumerate(rows):
            step = int(row.get("training_iteration") or i + 1)
            values = [scalar_value(m, row[m]) for m in metrics
                      if _is_reported_number(row.get(m))]
            if values:
                writer.write(summary_event(values, step=step,
                                           wall_time=float(row.get("timestamp") or start)))
        end = trial.get("ended_at")
        if trial.get("objective") is not None:
            writer.write(summary_event([scalar_value(OBJECTIVE_TAG, trial["objective"])],
                                       step=step, wall_time=end or start))
        if trial["state"] not in ("queued", "running"):
            done = Message().varint(1, _status(trial["state"])).double(2, end or start)
            writer.write(summary_event([_plugin_value(SESSION_END_TAG, 4, done)], step=step,
                                       wall_time=end or start))
        return writer.path


def write_hparams(folder: Path, exp: Mapping[str, Any], trials: Sequence[Mapping[str, Any]],
                  reports: Mapping[int, Sequence[Mapping[str, Any]]]) -> list[Path]:
    """Write the experiment ``exp`` (a `show` view, with ``spec``) and its ``trials`` (with
    their ``reports`` by number) under ``folder``; return the event files written. All or
    nothing: on any failure, what it wrote (and the folders it made) is removed again."""
    metrics = numeric_metrics(exp["metric"], reports)
    made = [p for p in [folder, *folder.parents] if not p.exists()]  # innermost first
    staging: Path | None = None
    placed: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".gpusched-export-", dir=folder))
        with EventWriter(staging, wall_time=exp["submitted_at"]) as writer:
            writer.write(summary_event(
                [_plugin_value(EXPERIMENT_TAG, 2, _experiment(exp, metrics))],
                step=0, wall_time=exp["submitted_at"]))
        runs = [_write_trial(staging, trial, reports.get(trial["number"], []), metrics)
                for trial in trials]
        paths = [_place(writer.path, folder, placed)]  # what TensorBoard reads, moved in
        for run in runs:
            paths.append(_place(run, folder / run.parent.name, placed))
            if run.parent.exists():  # its file went into a run folder that was there
                run.parent.rmdir()
        staging.rmdir()
    except BaseException:
        for path in reversed(placed):
            _remove(path)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for path in made:  # now empty again
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    return paths


def _place(path: Path, folder: Path, placed: list[Path]) -> Path:
    """Move the event file ``path`` into ``folder`` (made if missing); note what was made."""
    if not folder.is_dir():
        os.rename(path.parent, folder)  # a trial's run folder, whole
        placed.append(folder)
        return folder / path.name
    target = folder / path.name
    if target.exists() or target.is_symlink():
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    os.rename(path, target)
    placed.append(target)
    return target


def _remove(path: Path) -> None:
    # Best effort: the error that brought us here is the one to report.
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
