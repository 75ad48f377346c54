"""One trial attempt's reports, from both of its files, auto-filled and in arrival order."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.reports import (
    AutoFill,
    HypertuneFileReader,
    ReportFileReader,
    regular_file_size,
)
from gpusched._daemon.store import ReadPosition

__all__ = ["ReportCollector"]


class ReportCollector:
    """Polls ``GPUSCHED_REPORT_FILE`` and ``CLOUD_ML_HP_METRIC_FILE`` of one attempt.

    A retried or resumed trial keeps its folder: what an earlier attempt wrote was stored
    then, so this attempt starts past it (``training_iteration`` and ``time_total_s`` keep
    counting).
    """

    def __init__(
        self, files: TrialFiles, *, metric_tag: str, first_iteration: int = 0,
        resume_at: ReadPosition | None = None, last_report: Mapping[str, Any] | None = None,
        started_at: float | Literal["now"] | None = "now", status_from: int = 0,
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
        """
        if resume_at is not None:
            self._reports = ReportFileReader(files.reports, offset=resume_at.report_offset,
                                             status_from=status_from)
            self._hypertune = HypertuneFileReader(files.hypertune, metric_tag,
                                                  taken_through=resume_at.hypertune_ts)
        else:
            self._reports = ReportFileReader(files.reports, offset=regular_file_size(files.reports))
            self._hypertune = HypertuneFileReader(files.hypertune, metric_tag)
            if regular_file_size(files.hypertune):
                self._hypertune.poll(final=True)  # earlier attempts' entries: already stored
        start = time.time() if started_at == "now" else started_at
        self._autofill = AutoFill.after(last_report or {}, start, iteration=first_iteration)
        self._problems_seen = 0

    @property
    def position(self) -> ReadPosition:
        """How far both files have been read (to be stored with the reports of the poll)."""
        return ReadPosition(self._reports.read_through, self._hypertune.last_ts)

    @property
    def status(self) -> tuple[str, str] | None:
        """The trial's last ``{"status": "failed"|"fatal", "reason": ...}`` line, if any."""
        return self._reports.status

    def poll(self, final: bool = False) -> list[dict[str, Any]]:
        """New reports since the last poll, with Ray Tune's auto-filled fields."""
        now = time.time()
        new = self._reports.poll(final=final) + self._hypertune.poll(final=final)
        return [self._autofill.fill_report(r, now) for r in new]

    def unread_bytes(self) -> int:
        """About how many bytes the next :meth:`poll` reads (two stats)."""
        return self._reports.unread_bytes() + self._hypertune.unread_bytes()

    def take_problems(self) -> list[str]:
        """Descriptions of skipped lines not yet handed out (for the daemon's log)."""
        problems = self._reports.problems + self._hypertune.problems
        fresh = problems[self._problems_seen:]
        self._problems_seen = len(problems)
        return fresh
