"""Where the daemon's event loop spends its CPU per trial, function by function, in place.

Runs dispatch.py's experiment (200 tiny trials, 2 at a time on 2 fake GPUs) against a daemon
whose main thread's CPU time is accounted per function (``bench/_inplace_profile.py``), and
prints, per function, the CPU milliseconds per trial (inclusive of what it calls) and the calls
per trial: the median of the runs. The costs that matter are tens of microseconds that are
several times larger here than in a micro-benchmark, which is why this measures them in place.
Run from the repository, on its own code or another checkout's:

    .venv/bin/python bench/dispatch_profile.py [CHECKOUT] [--runs 3] [--trials 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/dispatch_profile.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dispatch
from bench._daemon import print_table
from bench._inplace_profile import ENV, TOTAL
from bench.dispatch_ab import prepare_side, side_environment

REPO = Path(__file__).resolve().parent.parent
SITECUSTOMIZE = f"""\
import sys
sys.path.append({str(REPO)!r})
from bench._inplace_profile import arm
arm()
"""


def main(argv: list[str] | None = None) -> int:
    """Profile the runs and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("checkout", type=Path, nargs="?", default=REPO,
                        help="a folder with gpusched/ and plugins/ (default: this repository)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args(argv)
    code_dir = args.checkout.resolve()
    prepare_side(code_dir)
    cpu: dict[str, list[float]] = {}
    calls: dict[str, list[float]] = {}
    daemon_cpu: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gpusched-bench-profile-") as root_name:
        root = Path(root_name)
        hook = root / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
        script = root / "trial.py"
        script.write_text(dispatch.TRIAL_SCRIPT)
        for run in range(args.runs):
            out = root / f"profile-{run}.json"
            with side_environment(code_dir):
                os.environ["PYTHONPATH"] = f"{hook}{os.pathsep}{os.environ['PYTHONPATH']}"
                os.environ[ENV] = str(out)
                try:
                    result = dispatch.run_gpusched(script, root, args.trials, run)
                finally:
                    del os.environ[ENV]
            daemon_cpu.append(1000 * result.cpu_scheduler / result.trials)
            data = json.loads(out.read_text())
            for name, ns in data["cpu_ns"].items():
                cpu.setdefault(name, []).append(ns / 1e6 / args.trials)
            for name, count in data["calls"].items():
                calls.setdefault(name, []).append(count / args.trials)
            print(f"  run {run + 1}/{args.runs}: {result.rate:.1f} trials/s", file=sys.stderr,
                  flush=True)
    rows = [[name, f"{statistics.median(values):.3f}",
             f"{statistics.median(calls[name]):.2f}" if name in calls else "-"]
            for name, values in sorted(cpu.items(), key=lambda kv: -statistics.median(kv[1]))]
    print_table(
        f"dispatch profile: {code_dir}, {args.trials} tiny trials, {args.runs} runs",
        [f"daemon CPU per trial, all threads (/proc): {statistics.median(daemon_cpu):.2f} ms",
         "main thread's CPU per trial inside each function, inclusive, median of the runs",
         "each wrapped call adds ~2-3 us; the daemon's whole life is counted (start-up, the"
         " final `show`), divided by the trials"],
        ["function", "ms per trial", "calls per trial"],
        [row for row in rows if row[0] == TOTAL] + [row for row in rows if row[0] != TOTAL],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
