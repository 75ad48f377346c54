"""The TensorBoard export, read back with TensorBoard's own reader and protobuf classes.

gpusched writes event files with its own encoder (no tensorflow, tensorboard or protobuf at
run time); the ``tensorboard`` package is a test-only dependency (the ``dev`` extra) whose
reader checks every record's CRC and whose hparams plugin parses what we wrote.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from gpusched import tb_hparams
from gpusched.tb_hparams import write_hparams
from gpusched.tfevents import EventWriter, Message, crc32c, masked_crc32c, summary_event

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # tensorboard warns about its missing tensorflow
    tensorboard = pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub import errors as tb_errors
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import metadata as hp_metadata
    from tensorboard.util import tensor_util


def test_crc32c_golden_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert crc32c(b"") == 0
    for data in (b"", b"a", b"123456789", bytes(range(256)) * 3):
        assert masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)


def test_messages_decode_with_tensorboards_protobuf_classes() -> None:
    event = summary_event([Message().string(1, "loss").single(2, 0.25)], step=-3,
                          wall_time=12.5)
    parsed = event_pb2.Event.FromString(event.encode())
    assert parsed.wall_time == 12.5 and parsed.step == -3  # a negative int64 too
    assert parsed.summary.value[0].tag == "loss"
    assert parsed.summary.value[0].simple_value == 0.25


def _events(path: Path) -> list[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(EventFileLoader(str(path)).Load())


def test_a_corrupted_record_is_refused_by_tensorboards_reader(tmp_path: Path) -> None:
    with EventWriter(tmp_path) as writer:
        writer.write(summary_event([Message().string(1, "x").single(2, 1.0)], step=1,
                                   wall_time=1.0))
    assert len(_events(writer.path)) == 2  # the file-version event, then ours
    data = bytearray(writer.path.read_bytes())
    data[-6] ^= 0xFF  # inside the last record's payload
    writer.path.write_bytes(bytes(data))
    reader = pywrap_tensorflow.PyRecordReader_New(str(writer.path))
    reader.GetNext()  # the first record is intact
    with pytest.raises(tb_errors.DataLossError, match="crc32"):
        reader.GetNext()
    assert len(_events(writer.path)) == 1  # the loader drops what fails its check


EXPERIMENT = {
    "id": "e3", "name": "digits", "owner": "alice", "metric": "acc", "submitted_at": 1000.0,
    "spec": {"params": [
        {"name": "lr", "type": "double", "min": 1e-4, "max": 0.1, "scale": "log"},
        {"name": "layers", "type": "discrete", "values": [1, 2, 3]},
        {"name": "opt", "type": "categorical", "values": ["sgd", "adam"]},
    ]},
}


def _trial(number: int, state: str, objective: float | None) -> dict[str, Any]:
    return {"number": number, "id": f"e3/{number}", "state": state, "objective": objective,
            "params": {"lr": 0.01 * (number + 1), "layers": 2, "opt": "adam"},
            "created_at": 1001.0, "started_at": 1002.0 + number, "ended_at": 1010.0}


def test_hparams_export_reads_back_as_tensorboard_sees_it(tmp_path: Path) -> None:
    trials = [_trial(0, "completed", 0.9), _trial(1, "failed", None)]
    reports = {0: [{"training_iteration": i, "acc": 0.3 * i, "loss": 1.0 / i,
                    "timestamp": 1003 + i} for i in (1, 2, 3)],
               1: [{"training_iteration": 1, "acc": 0.1}]}
    paths = write_hparams(tmp_path, EXPERIMENT, trials, reports)
    assert [p.parent.name for p in paths] == [tmp_path.name, "trial-0", "trial-1"]

    top = [v for e in _events(paths[0]) for v in e.summary.value]
    assert [v.tag for v in top] == [hp_metadata.EXPERIMENT_TAG]
    assert top[0].metadata.plugin_data.plugin_name == hp_metadata.PLUGIN_NAME
    experiment = hp_metadata.parse_experiment_plugin_data(top[0].metadata.plugin_data.content)
    assert experiment.name == "digits" and experiment.user == "alice"
    lr, layers, opt = experiment.hparam_infos
    assert (lr.name, lr.type) == ("lr", api_pb2.DATA_TYPE_FLOAT64)
    assert (lr.domain_interval.min_value, lr.domain_interval.max_value) == (1e-4, 0.1)
    assert [v.number_value for v in layers.domain_discrete.values] == [1, 2, 3]
    assert opt.type == api_pb2.DATA_TYPE_STRING
    assert [v.string_value for v in opt.domain_discrete.values] == ["sgd", "adam"]
    assert [m.name.tag for m in experiment.metric_infos] == ["objective", "acc", "loss"]

    first = _events(paths[1])
    start = next(v for e in first for v in e.summary.value
                 if v.tag == hp_metadata.SESSION_START_INFO_TAG)
    info = hp_metadata.parse_session_start_info_plugin_data(start.metadata.plugin_data.content)
    assert info.group_name == "trial-0" and info.start_time_secs == 1002.0
    assert info.hparams["lr"].number_value == 0.01 and info.hparams["opt"].string_value == "adam"
    # Our null tensor is byte for byte the one TensorBoard's own hparams summaries carry.
    assert start.tensor.SerializeToString() == hp_metadata.NULL_TENSOR.SerializeToString()
    scalars = [(e.step, v.tag, float(tensor_util.make_ndarray(v.tensor)))
               for e in first for v in e.summary.value if not v.tag.startswith("_hparams_")]
    acc = [(step, value) for step, tag, value in scalars if tag == "acc"]
    assert [step for step, _ in acc] == [1, 2, 3]
    assert [value for _, value in acc] == pytest.approx([0.3, 0.6, 0.9])
    objective = [(step, value) for step, tag, value in scalars if tag == "objective"]
    assert [step for step, _ in objective] == [3]
    assert objective[0][1] == pytest.approx(0.9)
    end = next(v for e in first for v in e.summary.value
               if v.tag == hp_metadata.SESSION_END_INFO_TAG)
    done = hp_metadata.parse_session_end_info_plugin_data(end.metadata.plugin_data.content)
    assert done.status == api_pb2.STATUS_SUCCESS and done.end_time_secs == 1010.0

    second = [v for e in _events(paths[2]) for v in e.summary.value]
    ended = next(v for v in second if v.tag == hp_metadata.SESSION_END_INFO_TAG)
    failed = hp_metadata.parse_session_end_info_plugin_data(ended.metadata.plugin_data.content)
    assert failed.status == api_pb2.STATUS_FAILURE
    assert "objective" not in [v.tag for v in second]  # a failed trial has no result


def _scalars(path: Path) -> list[tuple[int, str, float]]:
    return [(e.step, v.tag, float(tensor_util.make_ndarray(v.tensor)))
            for e in _events(path) for v in e.summary.value if not v.tag.startswith("_hparams_")]


def test_numbers_beyond_float32_are_written_as_infinities_and_nan_as_nan(tmp_path: Path) -> None:
    trials = [_trial(0, "failed", None), _trial(1, "completed", 5e38)]
    trials[0]["params"]["lr"] = 10**400  # an int no double holds
    reports = {0: [{"training_iteration": 1, "acc": 0.5, "loss": 4.1e39},
                   {"training_iteration": 2, "acc": -4.1e39, "loss": float("nan")},
                   {"training_iteration": 3, "acc": float("inf"), "loss": 10**400}]}
    paths = write_hparams(tmp_path, EXPERIMENT, trials, reports)
    got = _scalars(paths[1])
    assert [(s, v) for s, t, v in got if t == "acc"] == [(1, 0.5), (2, float("-inf")),
                                                         (3, float("inf"))]
    loss = [(s, v) for s, t, v in got if t == "loss"]
    assert loss[0] == (1, float("inf")) and loss[2] == (3, float("inf"))
    assert loss[1][0] == 2 and loss[1][1] != loss[1][1]  # NaN
    assert [(t, v) for _, t, v in _scalars(paths[2])] == [("objective", float("inf"))]
    start = next(v for e in _events(paths[1]) for v in e.summary.value
                 if v.tag == hp_metadata.SESSION_START_INFO_TAG)
    info = hp_metadata.parse_session_start_info_plugin_data(start.metadata.plugin_data.content)
    assert info.hparams["lr"].number_value == float("inf")


def _failing_on_trial(number: int) -> Any:
    real = tb_hparams._write_trial

    def write(folder: Path, trial: Any, rows: Any, metrics: Any) -> Path:
        if trial["number"] == number:
            raise OSError(28, "No space left on device")
        return real(folder, trial, rows, metrics)

    return write


@pytest.mark.parametrize("exists", [False, True])
def test_a_failed_export_leaves_nothing_behind_and_a_retry_works(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exists: bool) -> None:
    out = tmp_path / "new" / "tb"
    if exists:
        out.mkdir(parents=True)
        (out / "notes.txt").write_text("mine")
        (out / "trial-1").mkdir()  # a run folder without events: kept, and used
    trials = [_trial(0, "completed", 0.9), _trial(1, "completed", 0.8), _trial(2, "failed", None)]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.setattr(tb_hparams, "_write_trial", _failing_on_trial(2))
    with pytest.raises(OSError, match="No space"):
        write_hparams(out, EXPERIMENT, trials, {})
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    monkeypatch.undo()
    paths = write_hparams(out, EXPERIMENT, trials, {})
    assert [p.relative_to(out).parts[:-1] for p in paths] == [(), ("trial-0",), ("trial-1",),
                                                             ("trial-2",)]
    assert all(p.is_file() and len(_events(p)) >= 2 for p in paths)
    assert not list(out.glob(".gpusched-export-*"))  # the staging folder is gone
    if exists:
        assert (out / "notes.txt").read_text() == "mine"
