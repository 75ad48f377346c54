"""The views on a large experiment: how long `ls`, `watch`, `export` and `plot` take.

A trial log with one finished experiment of ``--trials`` trials (two hyperparameters), each
with ``--reports`` reports of four numbers, is written through the daemon's own ``Store``; then
a real ``gpusched daemon`` (``--fake-gpus 2``) starts on it, and each command runs through the
real CLI (a fresh ``python -m gpusched`` process, as a user types it). Each time is the best of
``--repeats`` runs, wall clock, including the CLI's start-up (about 0.1 s of it). `watch` on an
ended experiment draws one picture and exits, so it measures one refresh.

Run:

    .venv/bin/python bench/views.py [--trials 500] [--reports 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import anyio

if __package__ in (None, ""):  # run as `python bench/views.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._daemon import compile_bytecode, fake_gpus, machine, print_table, running_daemon
from gpusched._daemon.store import open_store
from gpusched.spec import parse_experiment

T0 = 1_796_160_000.0  # any fixed time: the log's timestamps


async def write_log(path: Path, trials: int, reports: int) -> None:
    """One completed experiment of ``trials`` trials with ``reports`` reports each."""
    spec = parse_experiment({
        "name": "big", "command": "true", "metric": "acc", "max_trials": trials,
        "params": [{"name": "lr", "type": "double", "min": 1e-4, "max": 0.1, "scale": "log"},
                   {"name": "opt", "type": "categorical", "values": ["sgd", "adam"]}],
    }, base_dir="/tmp")
    async with open_store(path) as store:
        exp = await store.create_experiment(name="big", spec=spec.to_dict(), seed=1, priority=0,
                                            owner_uid=0)
        for n in range(trials):
            final = (n % 89) / 100
            await store.create_trial(exp, n, {"lr": 1e-3 * (n % 97 + 1),
                                              "opt": ["sgd", "adam"][n % 2]}, f"/tmp/t/{n}")
            await store.add_reports(exp, n, 0, [
                {"training_iteration": i + 1, "acc": final * (i + 1) / reports,
                 "loss": 1.0 / (i + 1), "time_total_s": float(i), "timestamp": T0 + i}
                for i in range(reports)])
            await store.update_trial(exp, n, state="completed", objective=final, attempts=1,
                                     started_at=T0, ended_at=T0 + reports, reason="exited 0")
        await store.update_experiment(exp, state="completed", reason="done", started_at=T0,
                                      ended_at=T0 + reports)


def main() -> int:
    """Build the log, time each command, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--reports", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bytecode = compile_bytecode()
    tmp = Path(tempfile.mkdtemp(prefix="gpusched-bench-views-"))
    try:
        state = tmp / "state"
        state.mkdir()
        print(f"writing {args.trials} trials x {args.reports} reports ...", file=sys.stderr)
        anyio.run(write_log, state / "trials.db", args.trials, args.reports)
        out = tmp / "out"
        commands = [
            ["ls", "e1"],
            ["ls", "e1", "--filter", "acc > 0.5", "--sort=-acc", "--limit", "10"],
            ["watch", "e1"],
            ["export", "e1", "-o", str(out / "trials.csv")],
            ["export", "e1", "--reports", "-o", str(out / "reports.csv")],
            ["export", "e1", "--format", "tensorboard", "--out", str(out / "tb")],
            ["plot", "e1", "--out", str(out / "png")],
        ]
        rows = []
        with running_daemon(tmp / "d", fake=fake_gpus(2), state_dir=state) as daemon:
            for command in commands:
                best = float("inf")
                for _ in range(args.repeats):
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    start = time.perf_counter()
                    done = daemon.cli(*command)
                    best = min(best, time.perf_counter() - start)
                    if done.returncode != 0:
                        raise SystemExit(f"gpusched {' '.join(command)}: {done.stderr.strip()}")
                shown = " ".join(a if " " not in a else repr(a) for a in command
                                 if not a.startswith(str(tmp)))
                rows.append([f"gpusched {shown}", f"{best * 1000:.0f}",
                             str(len(done.stdout.splitlines()))])
        print_table(
            f"views on {args.trials} trials x {args.reports} reports (best of {args.repeats})",
            [machine(), bytecode], ["command", "ms", "lines out"], rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
