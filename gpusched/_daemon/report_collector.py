"""One trial attempt's reports, from both of its files, auto-filled and in arrival order."""

from __future__ import annotations

import time
from typing import Any

from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.reports import AutoFill, HypertuneFileReader, ReportFileReader
from gpusched._daemon.store import ReadPosition

__all__ = ["ReportCollector"]


class ReportCollector:
    """Polls ``GPUSCHED_REPORT_FILE`` and ``CLOUD_ML_HP_METRIC_FILE`` of one attempt.

    A retried or resumed trial keeps its folder: what an earlier attempt wrote was stored
    then, so this attempt starts past it (``training_iteration`` keeps counting).
    """

    def __init__(
        self, files: TrialFiles, *, metric_tag: str, first_iteration: int = 0,
        resume_at: ReadPosition | None = None,
    ) -> None:
        """``resume_at``: where the trial log says reading stopped. Without it (a trial logged
        before positions were kept), whatever the files hold now counts as stored."""
        if resume_at is not None:
            self._reports = ReportFileReader(files.reports, offset=resume_at.report_offset)
            self._hypertune = HypertuneFileReader(files.hypertune, metric_tag,
                                                  taken_through=resume_at.hypertune_ts)
        else:
            offset = files.reports.stat().st_size if files.reports.exists() else 0
            self._reports = ReportFileReader(files.reports, offset=offset)
            self._hypertune = HypertuneFileReader(files.hypertune, metric_tag)
            if files.hypertune.exists():
                self._hypertune.poll(final=True)  # earlier attempts' entries: already stored
        self._autofill = AutoFill(time.time(), iteration=first_iteration)
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
