"""One trial attempt's reports, from both of its files, auto-filled and in arrival order."""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Mapping
from typing import Any, Literal

from gpusched._daemon.experiment import TrialRun
from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.reports import (
    AutoFill,
    HypertuneFileReader,
    Report,
    ReportFileReader,
    regular_file_size,
)
from gpusched._daemon.store import ReadPosition

__all__ = ["ReportCollector", "count_start"]

_MAX_METRIC_PROBLEMS = 3  # of a trial's metric values that cannot be results, said at most


def count_start(trial: TrialRun, trials: Mapping[int, TrialRun]
                ) -> tuple[int, Mapping[str, Any]]:
    """Where the auto-filled fields of ``trial``'s next reports go on from: the
    ``training_iteration`` before them and the report whose ``time_total_s`` they add to
    (``first_iteration`` and ``last_report`` of its :class:`ReportCollector`).

    A trial counts on from its own reports (a retry, a resume: see :class:`ReportCollector`).
    One that continues another (``continues``: hyperband's promotion) goes on with that one's
    curve, as Ray Tune's HyperBand, which pauses and resumes the same trial, counts: its
    ``training_iteration`` after the last of the trial it continues, its ``time_total_s`` on
    from that one's. A predecessor that reported nothing is skipped for the one before it; with
    none that reported, it counts from 0 as a fresh trial does. Its own ``reports`` count
    stays its own. ``trials``: its experiment's, by number.
    """
    if trial.continues is None:  # nearly every trial: nothing to look up
        return trial.reports, trial.last_report
    before = _last_reported(trial.continues, trials, seen={trial.number})
    if before is None:
        return trial.reports, trial.last_report
    iteration = before.last_report.get("training_iteration")
    # The log's reports always have it; a count of reports stands in for one edited away.
    offset = iteration if type(iteration) is int and iteration >= 0 else before.reports
    if trial.reports:  # a retry, a resume, a restart: its own last report has the time
        return offset + trial.reports, trial.last_report
    return offset, before.last_report


def _last_reported(number: int | None, trials: Mapping[int, TrialRun], *, seen: set[int]
                   ) -> TrialRun | None:
    """The nearest trial of a chain of continued trials, from ``number`` back, that has
    reported; None when none has (``seen``: those of the chain already looked at, so that a
    log edited into a cycle ends)."""
    while number is not None and number not in seen:
        trial = trials.get(number)
        if trial is None:
            return None
        if trial.reports:
            return trial
        seen.add(number)
        number = trial.continues
    return None


def _in_time_order(reports: list[Report], hypertune: list[Report], now: float) -> list[Report]:
    """One poll's reports from both files, merged by when each was written (a report without
    its time by ``now``, when it was read, the time it is then given), each file's own order
    kept: a trainer that reports through both (hypertune's callback for the metric, say, and
    ``trial.report`` for the rest) gets its ``training_iteration``s in the order it wrote them,
    not one file's after the other's."""
    if not reports or not hypertune:
        return reports or hypertune
    return list(heapq.merge(reports, hypertune,
                            key=lambda r: now if r.time is None else r.time))


class ReportCollector:
    """Polls ``GPUSCHED_REPORT_FILE`` and ``CLOUD_ML_HP_METRIC_FILE`` of one attempt.

    A retried or resumed trial keeps its folder: what an earlier attempt wrote was stored
    then, so this attempt starts past it (``training_iteration`` and ``time_total_s`` keep
    counting; where from: :func:`count_start`).
    """

    def __init__(
        self, files: TrialFiles, *, metric_tag: str, first_iteration: int = 0,
        resume_at: ReadPosition | None = None, last_report: Mapping[str, Any] | None = None,
        started_at: float | Literal["now"] | None = "now", status_from: int = 0,
        owner: int | None = None,
    ) -> None:
        """``resume_at``: where the trial log says reading stopped. Without it (a trial logged
        before positions were kept), whatever the files hold now counts as stored.

        ``last_report``: the trial's last stored report (of an earlier attempt, or of this one
        when it is read on after a daemon crash): ``time_total_s`` goes on from that report's.
        ``started_at``: when the attempt whose reports are read started: ``"now"`` for one
        that starts now; the start the log has for one read after a crash, None if it has
        none (then its first report stands for it).
        ``status_from``: the report file's size when this attempt started; a status line
        before it is an earlier attempt's, and does not say how this one ended.
        ``owner``: the uid of the other user the trial runs as (a root daemon's trial), None
        for the daemon's own: a file of its folder is read only if it may be
        (:func:`~gpusched._daemon.reports.why_not_read`).

        An attempt that starts now may rewrite the report file (a retry that opens it with
        ``"w"``) rather than append to it: the earlier attempt's last bytes are kept now, and
        if they change the file is read from its start (see :class:`ReportFileReader`). A
        trial folder made just now has none, and costs no syscall. hypertune's file needs no
        such care: its entries are taken by their timestamps, whatever rewrote it.
        """
        now = started_at == "now"
        if resume_at is not None:
            self._reports = ReportFileReader(files.reports, offset=resume_at.report_offset,
                                             status_from=status_from, watch_rewrite=now,
                                             owner=owner)
            self._hypertune = HypertuneFileReader(files.hypertune, metric_tag,
                                                  taken_through=resume_at.hypertune_ts,
                                                  owner=owner)
        else:
            self._reports = ReportFileReader(files.reports, offset=regular_file_size(files.reports),
                                             watch_rewrite=now, owner=owner)
            self._hypertune = HypertuneFileReader(files.hypertune, metric_tag, owner=owner)
            if regular_file_size(files.hypertune):
                self._hypertune.poll(final=True)  # earlier attempts' entries: already stored
        start = time.time() if started_at == "now" else started_at
        self._autofill = AutoFill.after(last_report or {}, start, iteration=first_iteration)
        self._metric = metric_tag
        self._metric_problems: list[str] = []
        self._problems_seen = [0, 0, 0]  # of the reports', hypertune's and the metric's

    @property
    def position(self) -> ReadPosition:
        """How far both files have been read (to be stored with the reports of the poll)."""
        return ReadPosition(self._reports.read_through, self._hypertune.last_ts)

    @property
    def status(self) -> tuple[str, str] | None:
        """The trial's last ``{"status": "failed"|"fatal", "reason": ...}`` line, if any."""
        return self._reports.status

    def poll(self, final: bool = False, *, until: float | None = None,
             untimed_at: float | None = None) -> list[dict[str, Any]]:
        """New reports since the last poll, with Ray Tune's auto-filled fields.

        ``until``: only the reports known to have been written by then are taken (those
        after are read past, and dropped): by their own time (``_t``, hypertune's
        ``timestamp``), else at ``untimed_at`` (the report file's last write: none of its
        lines was written later; None: after ``until``). A restart takes a stopped trial's
        reports so up to the end of its stop's grace period, when the live daemon would
        have killed it."""
        now = time.time()
        new = _in_time_order(self._reports.poll(final=final),
                             self._hypertune.poll(final=final), now)
        if until is not None:
            late = math.inf if untimed_at is None else untimed_at
            new = [r for r in new if (late if r.time is None else r.time) <= until]
        metric = self._metric
        for report in new:
            value = report.values.get(metric)
            if value is None:
                continue
            if isinstance(value, str) or not math.isfinite(value):
                self._not_a_result(value)
        return [self._autofill.fill_report(r, now) for r in new]

    def _not_a_result(self, value: str | float) -> None:
        """Say (the first few times) that a report's metric cannot be a result: text that a
        shell trainer quoted ("0.91"), NaN from a diverging run, an infinity."""
        if len(self._metric_problems) < _MAX_METRIC_PROBLEMS:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            what = "text" if type(value) is str else "not finite"
            self._metric_problems.append(
                f"{self._metric} = {shown}: {what}, not a number a result can be made of")

    def unread_bytes(self) -> int:
        """About how many bytes the next :meth:`poll` reads (two stats)."""
        return self._reports.unread_bytes() + self._hypertune.unread_bytes()

    def take_problems(self) -> list[str]:
        """Descriptions of skipped lines not yet handed out (for the daemon's log)."""
        # Counted per source: each list grows on its own.
        fresh: list[str] = []
        for index, problems in enumerate(
                (self._reports.problems, self._hypertune.problems, self._metric_problems)):
            fresh += problems[self._problems_seen[index]:]
            self._problems_seen[index] = len(problems)
        return fresh
