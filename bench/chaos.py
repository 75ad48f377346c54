"""Chaos: SIGKILL the daemon again and again during a search; count what that costs.

A search of 100 short trials (each 0.3-1.0 s, 5 reports) on 2 fake GPUs, 2 at a time, while
the daemon is killed with SIGKILL 20 times at seeded random moments and started again on the
same ``--state-dir`` and socket each time (the experiment goes on from the trial log). Then the
same experiment undisturbed, in a fresh state folder, for comparison.

Every trial attempt records its own ground truth outside gpusched: an append-only JSON Lines
file per attempt (start with pid and GPU, each report right after it is appended to
``$GPUSCHED_REPORT_FILE``, the normal end, or "terminated" on SIGTERM). A watcher thread
polls /proc for each attempt's pid, so an attempt killed without a word still gets an end.
From that, the SQLite trial log (read directly) and /proc, the table gives reports lost, trials
run twice at the same time, two trials on one GPU at once, processes left behind, and more.

Run:

    .venv/bin/python bench/chaos.py [--trials 100] [--kills 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/chaos.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._daemon import (
    DaemonProcess,
    describe_settings,
    fake_gpus,
    kill_daemon,
    log_tail,
    machine,
    print_table,
    start_daemon,
    stop_daemon,
    write_experiment,
)

# The daemon's defaults, written out so that the table says what ran.
SETTINGS: dict[str, object] = {
    "poll_interval_s": 0.5,
    "release_poll_s": 0.05,
    "report_poll_s": 0.1,
}
GPUS = 2
PARALLEL = 2
STEPS = 5  # reports per attempt, evenly spaced over its duration
MIN_S, MAX_S = 0.3, 1.0  # a trial's duration, the hyperparameter `seconds`
FIRST_KILL_MAX_S = 0.25  # the first kill comes within this long after `gpusched submit` returns
WATCH_INTERVAL_S = 0.01  # how often the watcher looks at /proc
ORPHAN_WAIT_S = 2.0  # after the last daemon has stopped, before looking for orphans

TRIAL_SCRIPT = '''\
"""A chaos-bench trial: reports STEPS times over --seconds, recording its own ground truth.

Ground truth: <--gt DIR>/<exp>-<trial>-<attempt>.jsonl, append-only, one JSON line at start,
one after each report is appended to $GPUSCHED_REPORT_FILE, one at the end (or "terminated"
on SIGTERM, then exit 143). Standard library only, so that it starts fast.
"""
import json
import os
import signal
import sys
import time

gt, x, seconds, steps = ".", 0.0, 0.5, 5
args = sys.argv[1:]
for i, arg in enumerate(args):
    if arg == "--gt":
        gt = args[i + 1]
    elif arg.startswith("--x="):
        x = float(arg[4:])
    elif arg.startswith("--seconds="):
        seconds = float(arg[10:])
    elif arg.startswith("--steps="):
        steps = int(arg[8:])
exp = os.environ.get("GPUSCHED_EXPERIMENT", "none")
trial = os.environ.get("GPUSCHED_TRIAL", "-1")
pid = os.getpid()
token = f"{pid}.{time.time_ns()}"
fd = os.open(os.path.join(gt, f"{exp}-{trial}-{token}.jsonl"),
             os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def note(**fields):
    fields["t"] = time.time()
    os.write(fd, (json.dumps(fields) + "\\n").encode())


def on_sigterm(signum, frame):
    note(ev="terminated")
    os._exit(143)


signal.signal(signal.SIGTERM, on_sigterm)
note(ev="start", pid=pid, trial=int(trial), exp=exp, attempt=token,
     gpu=os.environ.get("CUDA_VISIBLE_DEVICES", ""))
report_file = os.environ["GPUSCHED_REPORT_FILE"]
for step in range(steps):
    time.sleep(seconds / steps)
    value = x * (step + 1) / steps
    line = json.dumps({"step": step, "score": value, "attempt": token}) + "\\n"
    rfd = os.open(report_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(rfd, line.encode())
    finally:
        os.close(rfd)
    note(ev="report", step=step, value=value)
note(ev="end")
'''


# -- /proc ---------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, or None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # fields 3.. of proc(5)
    return fields[0], int(fields[19])


def _alive(pid: int, starttime: int | None) -> bool:
    """The process runs (not a zombie) and is the one first seen (not a reused pid)."""
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return starttime is None or stat[1] == starttime


def our_trial_processes(root: Path) -> dict[int, str]:
    """Live processes of this user whose environment has ``GPUSCHED_EXPERIMENT`` and whose
    trial folder is under ``root`` (so that other daemons' trials on this host are not ours):
    pid -> "EXP/N"."""
    uid = os.getuid()
    prefix = str(root) + os.sep
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if entry.stat().st_uid != uid:
                continue
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0")
                   if "=" in item)
        if "GPUSCHED_EXPERIMENT" not in env:
            continue
        if not env.get("GPUSCHED_TRIAL_DIR", "").startswith(prefix):
            continue
        if _alive(pid, None):
            found[pid] = f"{env['GPUSCHED_EXPERIMENT']}/{env.get('GPUSCHED_TRIAL', '?')}"
    return found


def kill_leftovers(root: Path, watcher: Watcher | None) -> int:
    """SIGKILL the process group of every trial process of ours still alive; how many."""
    pids = set(our_trial_processes(root))
    if watcher is not None:
        pids |= watcher.alive_pids()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)  # trials lead their own group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


@dataclass
class PidWatch:
    """What the watcher saw of one attempt's process."""

    pid: int
    starttime: int | None
    last_alive: float | None = None  # the last poll that found it running
    gone_seen: float | None = None  # the first poll that found it gone


class Watcher(threading.Thread):
    """Polls the ground-truth folder for new attempts and /proc for their pids."""

    def __init__(self, gt_dir: Path) -> None:
        super().__init__(name="chaos-watcher", daemon=True)
        self.gt_dir = gt_dir
        self.watches: dict[str, PidWatch] = {}  # attempt token -> watch
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(WATCH_INTERVAL_S):
            self.poll()

    def stop(self) -> None:
        """Stop polling, after one last poll."""
        self._stop_event.set()
        self.join()
        self.poll()

    def poll(self) -> None:
        """One look at the folder and at every attempt not yet seen gone."""
        with self._lock:
            for entry in os.scandir(self.gt_dir):
                token = _token_of(entry.name)
                if token is None or token in self.watches:
                    continue
                pid = int(token.split(".", 1)[0])
                stat = _proc_stat(pid)
                # Seen for the first time: if a process with that pid runs now, it is the one
                # that created the file (it wrote its start line before anything else).
                self.watches[token] = PidWatch(pid, None if stat is None else stat[1])
            now = time.time()
            for watch in self.watches.values():
                if watch.gone_seen is not None:
                    continue
                if watch.starttime is not None and _alive(watch.pid, watch.starttime):
                    watch.last_alive = now
                else:
                    watch.gone_seen = now

    def alive_pids(self) -> set[int]:
        """Attempts' pids still running now."""
        with self._lock:
            return {w.pid for w in self.watches.values()
                    if w.starttime is not None and _alive(w.pid, w.starttime)}


def _token_of(name: str) -> str | None:
    """The attempt token of a ground-truth file name ``EXP-N-PID.NS.jsonl``."""
    if not name.endswith(".jsonl"):
        return None
    parts = name[: -len(".jsonl")].rsplit("-", 1)
    return parts[1] if len(parts) == 2 and "." in parts[1] else None


# -- ground truth and the trial log --------------------------------------------------------------


@dataclass
class Attempt:
    """One attempt of one trial, as its ground-truth file tells it."""

    exp: str
    trial: int
    pid: int
    token: str
    gpu: str
    start: float
    reports: dict[int, float] = field(default_factory=dict)  # step -> time written
    end: float | None = None  # the "end" or "terminated" line's time
    end_kind: str | None = None  # "end" (ran to its end) | "terminated" (SIGTERM) | None
    last_line: float = 0.0
    watch: PidWatch | None = None

    def end_estimate(self, run_end: float) -> tuple[float, str]:
        """When it ended: its own last line; else the last poll that saw it alive (a lower
        bound, so an overlap found with it is certain); else the end of the run."""
        if self.end is not None:
            return self.end, "line"
        if self.watch is not None and self.watch.gone_seen is not None:
            return max(self.last_line, self.watch.last_alive or 0.0), "watched"
        return run_end, "run end"


def read_ground_truth(gt_dir: Path, watcher: Watcher) -> list[Attempt]:
    """Every attempt's file, complete lines only."""
    attempts: list[Attempt] = []
    for path in sorted(gt_dir.glob("*.jsonl")):
        lines = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        if not lines or lines[0].get("ev") != "start":
            continue
        s = lines[0]
        a = Attempt(str(s["exp"]), int(s["trial"]), int(s["pid"]), str(s["attempt"]),
                    str(s["gpu"]), float(s["t"]), watch=watcher.watches.get(str(s["attempt"])))
        for rec in lines:
            a.last_line = max(a.last_line, float(rec["t"]))
            if rec["ev"] == "report":
                a.reports[int(rec["step"])] = float(rec["t"])
            elif rec["ev"] in ("end", "terminated") and a.end is None:
                a.end, a.end_kind = float(rec["t"]), str(rec["ev"])
        attempts.append(a)
    return attempts


@dataclass
class LogData:
    """What the SQLite trial log holds for the experiment, read after the daemon stopped."""

    exp_state: str
    exp_reason: str | None
    trials: list[dict[str, Any]]
    reports: list[tuple[int, dict[str, Any]]]  # (trial number, data)


def read_log(db: Path, exp_id: str) -> LogData:
    """Read the trial log directly (read-only)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        exp = con.execute("SELECT state, reason FROM experiments WHERE id = ?",
                          (exp_id,)).fetchone()
        trials = [dict(r) for r in con.execute(
            "SELECT number, state, attempts, pid, reports FROM trials WHERE experiment_id = ?",
            (exp_id,))]
        reports = [(int(r["trial"]), json.loads(r["data"])) for r in con.execute(
            "SELECT trial, data FROM reports WHERE experiment_id = ?", (exp_id,))]
    finally:
        con.close()
    return LogData(str(exp["state"]), exp["reason"], trials, reports)


# -- the runs ------------------------------------------------------------------------------------


@dataclass
class KillEvent:
    """One SIGKILL and the restart after it."""

    after_s: float  # since the daemon answered hello (or since submit returned, the first)
    restart_s: float  # SIGKILL -> the new daemon answers hello
    alive_at_kill: int  # trial processes of ours alive just before the kill
    outlived: int  # ... of which still alive when the new daemon answered


@dataclass
class RunData:
    """One run of the experiment: what happened and what was recorded."""

    label: str
    exp_id: str
    wall_s: float  # `gpusched submit` start -> the experiment ended (restarts included)
    end_t: float
    kills_planned: int
    kills: list[KillEvent]
    orphans: dict[int, str]
    attempts: list[Attempt]
    log: LogData


def experiment(script: Path, gt_dir: Path, n: int, seed: int) -> dict[str, Any]:
    """The experiment file's content."""
    return {
        "name": "chaos-bench",
        "command": [sys.executable, str(script), "--gt", str(gt_dir), f"--steps={STEPS}"],
        "workdir": str(script.parent),
        "metric": "score",
        "goal": "maximize",
        "max_trials": n,
        "max_parallel_trials": PARALLEL,
        "gpus_per_trial": 1,
        "max_failed_trials": 100 * n,
        "max_consecutive_failed_trials": 100 * n,
        "search": {"algorithm": "random", "seed": seed},
        "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0},
                   {"name": "seconds", "type": "double", "min": MIN_S, "max": MAX_S}],
    }


class Abort(Exception):
    """The run cannot go on (the daemon does not come back); the message says why."""


def run_experiment(root: Path, label: str, script: Path, *, n: int, seed: int,
                   delays: list[float]) -> RunData:
    """Run the experiment in a fresh folder, SIGKILLing the daemon after each of ``delays``."""
    tmp = root / label
    gt_dir = tmp / "ground-truth"
    gt_dir.mkdir(parents=True)
    exp_file = write_experiment(tmp / "experiment.yaml", experiment(script, gt_dir, n, seed))
    fake = fake_gpus(GPUS)
    watcher = Watcher(gt_dir)
    watcher.start()
    daemon: DaemonProcess | None = None
    try:
        daemon = start_daemon(tmp, settings=SETTINGS, fake=fake)
        t0 = time.time()
        exp_id = daemon.submit_file(exp_file)
        kills: list[KillEvent] = []
        for i, delay in enumerate(delays):
            if daemon.client.wait(exp_id, timeout_s=delay)["ended"]:
                break  # it ended before this kill: no more kills
            before = our_trial_processes(tmp)
            t_kill = time.time()
            kill_daemon(daemon.proc)
            try:
                daemon = start_daemon(tmp, settings=SETTINGS, fake=fake)
            except RuntimeError as exc:
                first = str(exc).splitlines()[0] if str(exc) else repr(exc)
                raise Abort(f"restart after kill {i + 1} failed: {first}\n"
                            f"daemon log, last lines:\n{log_tail(tmp / 'daemon.log')}") from exc
            restart_s = time.time() - t_kill
            outlived = len(before.keys() & our_trial_processes(tmp).keys())
            kills.append(KillEvent(delay, restart_s, len(before), outlived))
            print(f"  {label}: kill {i + 1}/{len(delays)} after {delay:.2f} s; back in"
                  f" {restart_s:.2f} s; trial processes alive at the kill {len(before)},"
                  f" still alive after the restart {outlived}", file=sys.stderr, flush=True)
        view = daemon.wait_experiment(exp_id, timeout=max(300.0, 5.0 * n))
        end_t = time.time()
        print(f"  {label}: {exp_id} {view['state']} after {end_t - t0:.1f} s",
              file=sys.stderr, flush=True)
        stop_daemon(daemon.proc)
        time.sleep(ORPHAN_WAIT_S)
        orphans = our_trial_processes(tmp)
        orphans.update({pid: "(pid in ground truth)" for pid in watcher.alive_pids()
                        if pid not in orphans})
        watcher.stop()
        attempts = read_ground_truth(gt_dir, watcher)
        log = read_log(daemon.db_path, exp_id)
        return RunData(label, exp_id, end_t - t0, end_t, len(delays), kills, orphans,
                       attempts, log)
    except Exception as exc:
        if daemon is not None and not isinstance(exc, Abort):  # an Abort says it already
            print(f"  {label}: daemon log, last lines:\n{log_tail(daemon.log_path)}",
                  file=sys.stderr, flush=True)
        raise
    finally:
        if daemon is not None and daemon.proc.poll() is None:
            stop_daemon(daemon.proc, timeout_s=10.0)
        if watcher.is_alive():
            watcher.stop()
        left = kill_leftovers(tmp, watcher)
        if left:
            print(f"  {label}: killed {left} leftover trial process(es)", file=sys.stderr,
                  flush=True)


# -- analysis ------------------------------------------------------------------------------------


@dataclass
class Findings:
    """The numbers of one run."""

    rows: dict[str, str]
    lost: int
    twice: int
    gpu_pairs: int
    orphans: int


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def analyse(run: RunData, n: int) -> Findings:
    """Compare the ground truth with the trial log."""
    log, attempts = run.log, run.attempts
    attempts = [a for a in attempts if a.exp == run.exp_id]
    stored: Counter[tuple[str, int]] = Counter()
    for _, data in log.reports:
        if "attempt" in data and "step" in data:
            stored[(str(data["attempt"]), int(data["step"]))] += 1
    written = {(a.token, step) for a in attempts for step in a.reports}

    finished = [a for a in attempts if a.end_kind == "end"]
    cut_off = [a for a in attempts if a.end_kind != "end"]
    lost = sum(1 for a in finished for step in a.reports if (a.token, step) not in stored)
    cut_off_unstored = sum(1 for a in cut_off for step in a.reports
                           if (a.token, step) not in stored)

    # The final attempt of a completed trial: the pid the log recorded at its last start.
    by_trial: dict[int, list[Attempt]] = defaultdict(list)
    for a in attempts:
        by_trial[a.trial].append(a)
    completed = [t for t in log.trials if t["state"] == "completed"]
    lost_final = 0
    no_finished_final = 0
    for t in completed:
        mine = [a for a in by_trial.get(int(t["number"]), []) if a.pid == t["pid"]]
        final = max(mine, key=lambda a: a.start) if mine else None
        if final is None or final.end_kind != "end":
            no_finished_final += 1
            continue
        lost_final += sum(1 for step in final.reports if (final.token, step) not in stored)

    # Overlaps, from intervals [start line, end estimate].
    spans = {a.token: (a.start, a.end_estimate(run.end_t)[0]) for a in attempts}
    end_kinds = Counter(a.end_estimate(run.end_t)[1] for a in attempts)
    twice, twice_longest = 0, 0.0
    for runs in by_trial.values():
        worst = max((_overlap(spans[a.token], spans[b.token])
                     for i, a in enumerate(runs) for b in runs[i + 1:]), default=0.0)
        if worst > 0:
            twice += 1
            twice_longest = max(twice_longest, worst)
    by_gpu: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        by_gpu[a.gpu].append(a)
    gpu_pairs = sum(1 for runs in by_gpu.values() for i, a in enumerate(runs)
                    for b in runs[i + 1:]
                    if a.trial != b.trial and _overlap(spans[a.token], spans[b.token]) > 0)

    reason = f" ({log.exp_reason})" if log.exp_reason and log.exp_state != "completed" else ""
    rows = {
        "trials completed in the log / expected": f"{len(completed)} / {n}",
        "experiment's final state": f"{log.exp_state}{reason}",
        "wall time, submit -> ended (s)": f"{run.wall_s:.1f}",
        "daemon kills done / planned": f"{len(run.kills)} / {run.kills_planned}",
        "attempts (ground truth)": str(len(attempts)),
        "attempts (trial log, sum of trials.attempts)": str(
            sum(int(t["attempts"]) for t in log.trials)),
        "attempts that ran to their end / SIGTERMed / no end line": (
            f"{len(finished)} / {sum(a.end_kind == 'terminated' for a in attempts)}"
            f" / {sum(a.end_kind is None for a in attempts)}"),
        "trial processes that outlived a killed daemon": str(
            sum(k.outlived for k in run.kills)),
        "reports written (ground truth, all attempts)": str(len(written)),
        "reports stored (trial log)": str(len(log.reports)),
        "REPORTS LOST (attempts that ran to their end)": str(lost),
        "  of which by final attempts of completed trials": str(lost_final),
        "completed trials whose final attempt did not end": str(no_finished_final),
        "reports of cut-off attempts not stored (allowed)": str(cut_off_unstored),
        "reports stored twice": str(sum(c - 1 for c in stored.values() if c > 1)),
        "stored reports the ground truth lacks": str(
            sum(c for key, c in stored.items() if key not in written)
            + sum(1 for _, d in log.reports if "attempt" not in d or "step" not in d)),
        "TRIALS RUN TWICE AT THE SAME TIME": str(twice),
        "  longest overlap of two attempts (s)": f"{twice_longest:.2f}",
        "two trials on one GPU at once (pairs)": str(gpu_pairs),
        "attempt ends from: own line / watcher / run end": (
            f"{end_kinds['line']} / {end_kinds['watched']} / {end_kinds['run end']}"),
        f"ORPHANS ({ORPHAN_WAIT_S:g} s after the last daemon stopped)": str(len(run.orphans)),
    }
    return Findings(rows, lost, twice, gpu_pairs, len(run.orphans))


# -- main ----------------------------------------------------------------------------------------


def kill_delays(rng: random.Random, n: int, kills: int) -> list[float]:
    """The first kill right after submit; the others uniform over [0, 1.5 x (an undisturbed
    run's expected length) / (kills + 1)], so that they spread over most of the run and all of
    them fall inside it (with a top of 2x, a faster daemon could end the search before the
    last one)."""
    if kills <= 0:
        return []
    expected_s = n * ((MIN_S + MAX_S) / 2 + 0.1) / PARALLEL
    top = 1.5 * expected_s / (kills + 1)
    return [rng.uniform(0.0, FIRST_KILL_MAX_S)] + [rng.uniform(0.0, top) for _ in range(kills - 1)]


def main(argv: list[str] | None = None) -> int:
    """Run the chaos run, then the undisturbed one, and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n, kills, seed = int(args.trials), int(args.kills), int(args.seed)
    delays = kill_delays(random.Random(seed), n, kills)

    with tempfile.TemporaryDirectory(prefix="gpusched-bench-chaos-") as root_name:
        root = Path(root_name)
        script = root / "trial.py"
        script.write_text(TRIAL_SCRIPT)
        try:
            chaos = run_experiment(root, "chaos", script, n=n, seed=seed, delays=delays)
            calm = run_experiment(root, "undisturbed", script, n=n, seed=seed, delays=[])
        except Abort as exc:
            print(f"chaos: aborted: {exc}", file=sys.stderr)
            return 1

    found = [analyse(chaos, n), analyse(calm, n)]
    print_table(
        f"chaos: {n} trials ({STEPS} reports over {MIN_S}-{MAX_S} s each), {PARALLEL} at a time"
        f" on {GPUS} fake GPUs; the daemon SIGKILLed {len(chaos.kills)} times",
        [f"machine: {machine()}",
         f"daemon settings: {describe_settings(SETTINGS, fake_gpus(GPUS))}",
         f"seed {seed}: search and kill moments; first kill within {FIRST_KILL_MAX_S} s of"
         " `gpusched submit` returning, the others uniform random after the restarted daemon"
         " answers `hello`",
         "ground truth: each attempt's own JSONL file; the trial log: SQLite, read directly",
         "overlaps: [start line, end]; end = its end/terminated line, else the last /proc poll"
         f" that saw it alive ({WATCH_INTERVAL_S * 1000:g} ms polls; a lower bound, so every"
         " overlap counted is certain)"],
        ["", "chaos", "undisturbed"],
        [[k, found[0].rows[k], found[1].rows[k]] for k in found[0].rows],
    )
    if chaos.kills:
        print_table(
            "the kills", [],
            ["kill", "after (s)", "back in (s)", "trial processes alive", "outlived it"],
            [[str(i + 1), f"{k.after_s:.2f}", f"{k.restart_s:.2f}", str(k.alive_at_kill),
              str(k.outlived)] for i, k in enumerate(chaos.kills)],
        )
    for run in (chaos, calm):
        for pid, what in sorted(run.orphans.items()):
            print(f"orphan in the {run.label} run: pid {pid} {what}")
    met = all(f.lost == 0 and f.twice == 0 and f.gpu_pairs == 0 and f.orphans == 0
              for f in found)
    parts = "; ".join(
        f"{run.label}: {f.lost} lost, {f.twice} run twice ({f.gpu_pairs} GPU pairs shared),"
        f" {f.orphans} orphans" for run, f in zip((chaos, calm), found, strict=True))
    print(f"target: 0 reports lost, 0 trials run twice, 0 orphans ({parts}):"
          f" {'ok' if met else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
