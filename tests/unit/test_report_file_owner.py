"""A root daemon reads the report files of another user's trial only if that user may have
written them: a regular file with one name, owned by that user or the daemon. A hard link to
a file the user may not read (where ``fs.protected_hardlinks`` is off) is not read, by the
running trial's readers, nor by a restarted daemon. The same rule as for stderr.log
(``reports.why_not_read``, shared by ``stderr_tail``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon.experiment import ExperimentRun
from gpusched._daemon.identity import RunAs
from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.report_collector import ReportCollector
from gpusched._daemon.reports import (
    HypertuneFileReader,
    ReportFileReader,
    status_at_end,
    why_not_read,
)
from gpusched._daemon.restore import restore_trials
from gpusched._daemon.store import ReadPosition, open_store
from gpusched.models import TrialState
from gpusched.plugins import make_search_plugin
from gpusched.spec import parse_experiment

SECRET = "root:SECRET-HASH:19000:0:99999:7:::"
# A line each reader would take as a report of the trial (hypertune's numbers are text).
REPORT_LINE = json.dumps({"acc": "0.5", "leak": SECRET, "timestamp": 1000.0}) + "\n"
Reader = Callable[[Path, int | None], ReportFileReader | HypertuneFileReader]
READERS: dict[str, Reader] = {
    "reports": lambda path, owner: ReportFileReader(path, owner=owner),
    "hypertune": lambda path, owner: HypertuneFileReader(path, "acc", owner=owner),
}


def planted(tmp_path: Path, text: str = REPORT_LINE) -> Path:
    """A trial's report file that is also a hard link to a file elsewhere."""
    secret = tmp_path / "secret"
    secret.write_text(text)
    secret.chmod(0o600)
    path = tmp_path / "planted"
    os.link(secret, path)
    return path


# --- the rule -------------------------------------------------------------------------------


def test_the_rule_for_another_users_trial(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    path.write_text(REPORT_LINE)
    uid = os.stat(path).st_uid
    other, third = uid + 1000, uid + 2000
    st = os.stat(path)
    assert why_not_read(st, None) is None  # the daemon's own trial
    assert why_not_read(st, uid, daemon_uid=other) is None  # the trial's user's file
    assert why_not_read(st, other, daemon_uid=uid) is None  # the daemon's
    assert why_not_read(st, other, daemon_uid=third) == (
        f"owned by uid {uid}, neither the trial's user (uid {other}) nor the daemon")
    os.link(path, tmp_path / "elsewhere")
    st = os.stat(path)
    assert why_not_read(st, uid, daemon_uid=uid) == (
        "it has 2 names (a hard link), and the trial runs as another user")
    assert why_not_read(st, None) is None  # nothing to protect from for the daemon's own
    folder = os.stat(tmp_path)
    assert (why_not_read(folder, None) or "").startswith("not a regular file (d")


# --- the readers ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", READERS)
def test_a_hard_link_is_not_read_for_another_users_trial(tmp_path: Path, kind: str) -> None:
    path = planted(tmp_path)
    mine = os.stat(path).st_uid  # the trial's user owns it: only its second name stops it
    reader = READERS[kind](path, mine)
    assert reader.poll() == [] and reader.poll(final=True) == []
    assert reader.problems == [
        "planted: not read: it has 2 names (a hard link), and the trial runs as another user"]
    assert SECRET not in repr(reader.problems)
    # The daemon's own trial: read as before.
    assert [r.values["acc"] for r in READERS[kind](path, None).poll(final=True)] in (
        [0.5], ["0.5"])


@pytest.mark.parametrize("kind", READERS)
def test_a_file_of_neither_the_user_nor_the_daemon_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str,
) -> None:
    path = tmp_path / "reports.jsonl"
    path.write_text(REPORT_LINE)
    uid = os.stat(path).st_uid
    # The daemon's file (it runs as the file's owner): read.
    assert len(READERS[kind](path, uid + 1000).poll(final=True)) == 1
    monkeypatch.setattr(os, "geteuid", lambda: uid + 2000)  # a daemon of another uid
    reader = READERS[kind](path, uid + 1000)
    assert reader.poll(final=True) == []
    assert reader.problems == [f"reports.jsonl: not read: owned by uid {uid}, neither the"
                               f" trial's user (uid {uid + 1000}) nor the daemon"]


def test_a_hard_linked_status_line_is_not_read(tmp_path: Path) -> None:
    path = planted(tmp_path, json.dumps({"status": "failed", "reason": SECRET}) + "\n")
    mine = os.stat(path).st_uid
    assert status_at_end(path, mine) is None
    said = status_at_end(path)
    assert said is not None and said.reason == SECRET  # the daemon's own trial


@pytest.mark.parametrize("position", [None, ReadPosition(0, None)])
def test_the_collector_hands_the_owner_to_both_readers(
    tmp_path: Path, position: ReadPosition | None,
) -> None:
    files = TrialFiles(tmp_path / "t")
    files.dir.mkdir()
    secret = planted(tmp_path)
    mine = os.stat(secret).st_uid
    collector = ReportCollector(files, metric_tag="acc", resume_at=position, owner=mine)
    os.link(secret, files.reports)  # written after the collector started: its to read
    os.link(secret, files.hypertune)
    assert collector.poll(final=True) == []
    problems = collector.take_problems()
    assert len(problems) == 2 and all("(a hard link)" in p for p in problems), problems


# --- a restarted daemon ---------------------------------------------------------------------


async def restored(tmp_path: Path, run_as: RunAs | None) -> tuple[TrialState, list[Any]]:
    """A log whose trial 0 was running when the daemon died, its report file a hard link
    that holds a report and a status line: restored with ``run_as``, the trial's state and
    its reports."""
    spec = parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc",
                             "params": [{"name": "x", "type": "discrete", "values": [1, 2]}]},
                            base_dir=tmp_path)
    files = TrialFiles(tmp_path / "t0")
    files.dir.mkdir(parents=True)
    os.link(planted(tmp_path, json.dumps({"acc": 0.5, "leak": SECRET}) + "\n"
                    + json.dumps({"status": "failed", "reason": SECRET}) + "\n"),
            files.reports)
    async with open_store(tmp_path / "log.db") as store:
        exp_id = await store.create_experiment(name="exp", spec=spec.to_dict(), seed=0,
                                               priority=0, owner_uid=os.getuid())
        await store.create_trial(exp_id, 0, {"x": 1}, str(files.dir))
        await store.update_trial(exp_id, 0, state="running", started_at=1000.0, attempts=1,
                                 report_offset=0)
        search = make_search_plugin("random", spec.space(), goal=spec.goal, seed=0, options={})
        exp = ExperimentRun(exp_id, int(exp_id[1:]), spec, 0, search, [], run_as=run_as)
        await restore_trials(store, exp)
        return exp.trials[0].state, await store.reports(exp_id, 0)


async def test_a_restarted_daemon_does_not_read_a_hard_link_of_another_users_trial(
    tmp_path: Path,
) -> None:
    mine = os.getuid()
    user = RunAs(uid=mine, gid=os.getgid(), groups=(), name="u", home="/", shell="/bin/sh")
    state, reports = await restored(tmp_path / "theirs", user)
    assert (state, reports) == (TrialState.INTERRUPTED, [])  # it runs again, read from 0
    # The daemon's own trial: its report and its status line are read.
    state, reports = await restored(tmp_path / "own", None)
    assert state is TrialState.FAILED
    assert [r["leak"] for r in reports] == [SECRET]
