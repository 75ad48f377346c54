"""Report ingestion: one trial writes 100,000 reports as fast as it can through a real daemon.

The trial is a Python script calling ``gpusched.trial.report(step=i, loss=...)`` in a loop. The
daemon (``--fake-gpus 1``) tails its report file, auto-fills Ray Tune's fields and stores every
report in the SQLite trial log. Measured per run:

- reports stored: ``COUNT(*)`` of the ``reports`` table of ``<state_dir>/trials.db`` (all
  100,000 must be there);
- reports/s: stored / (trial ``started_at`` -> ``ended_at`` from the trial log; ``ended_at`` is
  written after the final batch of reports is committed), and stored / (``gpusched submit``
  start -> ``Client.wait`` returns);
- the daemon's peak memory: ``VmHWM`` of ``/proc/<pid>/status`` (pid from ``hello``), read at
  the end, before the daemon is stopped; also right after start, for the baseline; then once
  more after one ``show EXP/0`` request (what ``gpusched show`` costs on such a trial);
- the same script run bare (no daemon, ``GPUSCHED_REPORT_FILE`` pointing at a temp file): how
  fast the trainer itself writes.

Run:

    .venv/bin/python bench/ingest.py [--reports 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/ingest.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._daemon import (
    describe_settings,
    fake_gpus,
    machine,
    median,
    print_table,
    running_daemon,
    vm_hwm_kib,
    write_experiment,
)

# The daemon's defaults, written out so that the table says what ran.
SETTINGS: dict[str, object] = {
    "poll_interval_s": 0.5,
    "release_poll_s": 0.05,
    "report_poll_s": 0.1,
}
TARGET_RATE = 10_000.0

TRAINER = '''\
"""A trainer that reports N times as fast as it can, then prints how long that took."""
import json
import sys
import time

from gpusched import trial

n = int(sys.argv[1])
t0 = time.perf_counter()
for i in range(n):
    trial.report(step=i, loss=1.0 / (i + 1))
print(json.dumps({"write_s": time.perf_counter() - t0}))
'''


@dataclass
class IngestRun:
    """One daemon run."""

    stored: int
    trial_s: float  # trial started_at -> ended_at (all reports committed)
    submit_to_end_s: float  # `gpusched submit` start -> `Client.wait` returns
    trainer_write_s: float  # the trainer's own loop time, as it printed it
    hwm_start_kib: int
    hwm_end_kib: int
    state: str
    show_s: float  # then: one `show EXP/0` request
    hwm_show_kib: int  # VmHWM after that request

    def rate(self, seconds: float) -> float:
        """Stored reports per second over ``seconds``."""
        return self.stored / seconds


def run_bare(script: Path, root: Path, n: int) -> tuple[float, float]:
    """The trainer without a daemon: (its own loop time, process wall time) in seconds."""
    work = Path(tempfile.mkdtemp(prefix="bare-", dir=root))
    report_file = work / "reports.jsonl"
    env = {**os.environ, "GPUSCHED_REPORT_FILE": str(report_file)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(script), str(n)], env=env, cwd=work,
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    lines = report_file.read_bytes().count(b"\n")
    if lines != n:
        raise RuntimeError(f"bare trainer wrote {lines} lines, not {n}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["write_s"]), wall


def experiment(script: Path, n: int) -> dict[str, Any]:
    """One trial running the trainer."""
    return {
        "name": "ingest-bench",
        "command": [sys.executable, str(script), str(n)],
        "workdir": str(script.parent),
        "metric": "loss",
        "goal": "minimize",
        "max_trials": 1,
        "max_parallel_trials": 1,
        "gpus_per_trial": 1,
        "search": {"algorithm": "random", "seed": 0},
        "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}],
    }


def stored_reports(db: Path, exp_id: str) -> int:
    """Rows of the ``reports`` table for the experiment (read-only; the daemon still runs)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT COUNT(*) FROM reports WHERE experiment_id = ?",
                          (exp_id,)).fetchone()
    finally:
        con.close()
    return int(row[0])


def run_daemon(script: Path, root: Path, n: int, rep: int) -> IngestRun:
    """A fresh daemon, one trial, everything measured before the daemon is stopped."""
    tmp = Path(tempfile.mkdtemp(prefix=f"daemon{rep}-", dir=root))
    exp_file = write_experiment(tmp / "experiment.yaml", experiment(script, n))
    with running_daemon(tmp, settings=SETTINGS, fake=fake_gpus(1)) as daemon:
        pid = daemon.pid
        hwm_start = vm_hwm_kib(pid)
        t0 = time.perf_counter()
        exp_id = daemon.submit_file(exp_file)
        view = daemon.wait_experiment(exp_id, timeout=600.0)
        submit_to_end = time.perf_counter() - t0
        trial = daemon.client.trials(exp_id)[0]  # the trial list loads no reports
        stored = stored_reports(daemon.db_path, exp_id)
        hwm_end = vm_hwm_kib(pid)
        # Then what a user's `gpusched show EXP/0` costs on such a trial (it shows last_report).
        t_show = time.perf_counter()
        daemon.client.show(f"{exp_id}/0")
        show_s = time.perf_counter() - t_show
        hwm_show = vm_hwm_kib(pid)
    stdout = Path(trial["dir"]) / "stdout.log"
    write_s = float(json.loads(stdout.read_text().strip().splitlines()[-1])["write_s"])
    return IngestRun(
        stored=stored, trial_s=float(trial["ended_at"]) - float(trial["started_at"]),
        submit_to_end_s=submit_to_end, trainer_write_s=write_s, hwm_start_kib=hwm_start,
        hwm_end_kib=hwm_end, state=str(view["state"]), show_s=show_s, hwm_show_kib=hwm_show,
    )


def main(argv: list[str] | None = None) -> int:
    """Alternate bare and daemon runs; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    n, repeats = int(args.reports), int(args.repeats)

    bare: list[tuple[float, float]] = []
    runs: list[IngestRun] = []
    with tempfile.TemporaryDirectory(prefix="gpusched-bench-ingest-") as root_name:
        root = Path(root_name)
        script = root / "trainer.py"
        script.write_text(TRAINER)
        for rep in range(repeats):
            bare.append(run_bare(script, root, n))
            runs.append(run_daemon(script, root, n, rep))
            print(f"  run {rep + 1}/{repeats}: bare {n / bare[-1][0]:,.0f}/s,"
                  f" daemon {runs[-1].rate(runs[-1].trial_s):,.0f}/s stored", file=sys.stderr,
                  flush=True)

    def cols(values: list[float], fmt: str) -> list[str]:
        return [fmt.format(v) for v in values] + [fmt.format(median(values))]

    rows = [
        ["bare: trainer loop, reports/s", *cols([n / w for w, _ in bare], "{:,.0f}")],
        ["bare: process wall time, s", *cols([wall for _, wall in bare], "{:.2f}")],
        ["gpusched: reports stored", *cols([float(r.stored) for r in runs], "{:,.0f}")],
        ["gpusched: stored/s, trial start -> end", *cols([r.rate(r.trial_s) for r in runs],
                                                          "{:,.0f}")],
        ["gpusched: stored/s, submit -> completed",
         *cols([r.rate(r.submit_to_end_s) for r in runs], "{:,.0f}")],
        ["gpusched: trial start -> end, s", *cols([r.trial_s for r in runs], "{:.2f}")],
        ["gpusched: trainer loop under daemon, s", *cols([r.trainer_write_s for r in runs],
                                                         "{:.2f}")],
        ["gpusched: daemon VmHWM after start, MiB",
         *cols([r.hwm_start_kib / 1024 for r in runs], "{:.1f}")],
        ["gpusched: daemon VmHWM at end, MiB", *cols([r.hwm_end_kib / 1024 for r in runs],
                                                     "{:.1f}")],
        ["then `show EXP/0`: latency, s", *cols([r.show_s for r in runs], "{:.2f}")],
        ["then `show EXP/0`: daemon VmHWM, MiB",
         *cols([r.hwm_show_kib / 1024 for r in runs], "{:.1f}")],
    ]
    header = ["", *(f"run {i + 1}" for i in range(repeats)), "median"]
    print_table(
        f"ingest: one trial, {n:,} reports via gpusched.trial.report(step=i, loss=...)",
        [f"machine: {machine()}",
         f"daemon settings: {describe_settings(SETTINGS, fake_gpus(1))} (1 fake GPU)",
         "stored = COUNT(*) FROM reports in <state_dir>/trials.db, read before the daemon stops",
         "trial start -> end: started_at/ended_at of the trial log (ended_at is written after"
         " the last batch is committed)",
         f"{repeats} runs, bare and daemon alternating; a fresh daemon per run"],
        header, rows,
    )
    rate = median([r.rate(r.trial_s) for r in runs])
    complete = all(r.stored == n and r.state == "completed" for r in runs)
    ratio = rate / median([n / w for w, _ in bare])
    print(f"stored/s (trial start -> end, median): {rate:,.0f}  (target >= {TARGET_RATE:,.0f}:"
          f" {'ok' if rate >= TARGET_RATE else 'BELOW TARGET'})")
    print(f"all {n:,} reports stored in every run: {'yes' if complete else 'NO'}")
    print(f"daemon stored/s vs bare trainer loop reports/s (medians): {ratio:.2f}")
    return 0 if complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
