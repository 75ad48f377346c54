"""`gpusched export` without a daemon: CSV cells that a spreadsheet would run as formulas, the
search's columns (budget, continues, point), and a TensorBoard export that fails leaving
nothing behind (so that trying again works)."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

import pytest

from gpusched import export, tb_hparams
from gpusched.errors import UsageError


def trial(number: int, **overrides: Any) -> dict[str, Any]:
    t: dict[str, Any] = {
        "number": number, "id": f"e1/{number}", "state": "completed", "objective": 0.5,
        "params": {"lr": 0.01}, "created_at": 1001.0, "started_at": 1002.0,
        "ended_at": 1010.0, "duration_s": 8.0, "devices": [], "attempts": 1, "reports": 1,
        "exit_code": 0, "exit_signal": None, "reason": "exited 0",
        "last_report": {"training_iteration": 1, "acc": 0.5},
    }
    t.update(overrides)
    return t


def read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-adam", "'-adam"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("-0.5", "-0.5"), ("+3", "+3"), ("-inf", "-inf"),  # numbers written as text: left alone
    ("adam", "adam"), ("a=b", "a=b"), ("", ""),
    (-0.5, "-0.5"), (-3, "-3"),  # numbers are written as they are
])
def test_csv_defuses_text_a_spreadsheet_would_run(value: Any, cell: str) -> None:
    rows = export.trial_rows([trial(0, params={"opt": value}, reason=value)])
    (row,) = read(export.to_csv(rows))
    assert row["params.opt"] == cell and row["reason"] == cell


def test_csv_defuses_headers_and_report_fields_too() -> None:
    reports = {0: [{"training_iteration": 1, "=cmd()": "-x", "loss": -1.5}]}
    text = export.to_csv(export.report_rows([trial(0)], reports))
    header, line = text.splitlines()
    assert header == "number,id,state,params.lr,training_iteration,'=cmd(),loss"
    assert line == "0,e1/0,completed,0.01,1,'-x,-1.5"


def test_csv_says_where_each_trials_params_came_from() -> None:
    rows = export.trial_rows([trial(0, budget=3, continues=None, point=0),
                              trial(1, budget=9.5, continues="e1/0", point=None)])
    text = export.to_csv(rows)
    assert text.splitlines()[0].startswith(
        "number,id,state,objective,params.lr,budget,continues,point,last_report.")
    got = [(r["budget"], r["continues"], r["point"]) for r in read(text)]
    assert got == [("3", "", "0"), ("9.5", "e1/0", "")]


@pytest.mark.parametrize("reason", ["a\nb", "a\rb", "a\r\nb"])
def test_csv_keeps_line_breaks_inside_a_quoted_cell(reason: str) -> None:
    rows = export.trial_rows([trial(0, reason=reason), trial(1)])
    assert [r["reason"] for r in read(export.to_csv(rows))] == [reason, "exited 0"]


def test_a_lone_surrogate_is_written_escaped_not_a_crash(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    export._write(export.to_csv(export.trial_rows([trial(0, reason="bad \ud800")])),
                  str(target))
    assert read(target.read_text())[0]["reason"] == "bad \\ud800"


# --- the tensorboard export through the command ---------------------------------------------

EXPERIMENT = {"id": "e1", "name": "x", "owner": "alice", "metric": "acc", "submitted_at": 1000.0,
              "spec": {"params": [{"name": "lr", "type": "double", "min": 1e-4, "max": 0.1}]}}


def run_export(monkeypatch: pytest.MonkeyPatch, out: Path,
               reports: dict[int, list[dict[str, Any]]]) -> int:
    trials = [trial(0), trial(1, objective=None, state="failed")]
    monkeypatch.setattr(export, "Client", lambda socket: None)

    def collect(client: Any, experiment: str, *, reports: bool) -> Any:
        return EXPERIMENT, trials, by_number

    by_number = reports
    monkeypatch.setattr(export, "collect", collect)
    args = argparse.Namespace(format="tensorboard", out=str(out), socket=None,
                              experiment="e1", reports=False)
    return export.cmd_export(args)


def test_a_diverging_loss_exports_and_a_failed_export_can_be_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    diverged = {0: [{"training_iteration": 1, "acc": 0.5, "loss": 4.1e39}],
                1: [{"training_iteration": 1, "acc": float("nan"), "loss": -4.1e39}]}
    out = tmp_path / "tb"
    real = tb_hparams._write_trial
    calls: list[int] = []

    def full_disk(folder: Path, t: Any, rows: Any, metrics: Any) -> Path:
        calls.append(t["number"])
        if t["number"] == 1:
            raise OSError(28, "No space left on device")
        return real(folder, t, rows, metrics)

    monkeypatch.setattr(tb_hparams, "_write_trial", full_disk)
    with pytest.raises(UsageError, match=r"cannot write .*No space left on device"):
        run_export(monkeypatch, out, diverged)
    assert calls == [0, 1] and not out.exists()  # nothing left: not even the folder
    monkeypatch.setattr(tb_hparams, "_write_trial", real)
    assert run_export(monkeypatch, out, diverged) == 0
    assert capsys.readouterr().out.startswith("3 event files under")
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["trial-0", "trial-1"]
    with pytest.raises(UsageError, match="already holds a TensorBoard export"):
        run_export(monkeypatch, out, diverged)
