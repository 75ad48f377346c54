"""Dispatch A/B: the daemons of two checkouts of gpusched, side by side with the bare loop.

A change to the daemon's hot path is worth a few percent at most, and this host's speed
drifts by more than that within a minute, so two separate runs of ``dispatch.py`` cannot tell
such a change from the drift. This runs rounds of three runs (the bare loop, checkout A,
checkout B; A and B swap places every round), each with ``dispatch.py``'s own run functions, and
compares within rounds: B / A per round (median), each side's ratio to the bare loop, the
daemon's CPU per trial and the mean idle time between trials on a GPU.

``PYTHONPATH`` chooses the code of each side's daemon and CLI (``DIR`` and ``DIR/plugins``),
with ``PYTHONSAFEPATH`` set so that the folder it is run from cannot shadow it (checked before
the first round): make the checkouts with ``git worktree add``. Run:

    .venv/bin/python bench/dispatch_ab.py A_DIR B_DIR [--rounds 10] [--trials 200]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/dispatch_ab.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dispatch
from bench._daemon import compile_bytecode, print_table


def _side_env(code_dir: Path) -> dict[str, str]:
    """The environment that makes the daemon and CLI run ``code_dir``'s code.

    ``PYTHONSAFEPATH``: ``python -m gpusched`` (how the daemon and CLI are started) puts the
    current folder first on ``sys.path``; run from a checkout, that checkout's code would win
    over ``PYTHONPATH`` and both sides would run it.
    """
    return {"PYTHONPATH": f"{code_dir}:{code_dir / 'plugins'}", "PYTHONSAFEPATH": "1"}


def prepare_side(code_dir: Path) -> None:
    """Compile the side's bytecode (as an installed package has it), then fail unless
    ``python -m gpusched`` with the side's environment imports its code."""
    compile_bytecode(code_dir)
    env = {**os.environ, **_side_env(code_dir)}
    out = subprocess.run(
        [sys.executable, "-c", "import gpusched, gpusched_plugins;"
         " print(gpusched.__file__); print(gpusched_plugins.__file__)"],
        env=env, capture_output=True, text=True, check=True)
    for path in out.stdout.split():
        if not Path(path).resolve().is_relative_to(code_dir):
            raise SystemExit(f"the side {code_dir} would run {path}: not its own code")


@contextlib.contextmanager
def side_environment(code_dir: Path) -> Iterator[None]:
    """Daemons and CLIs started in the block run ``code_dir``'s code (see ``_side_env``)."""
    side = _side_env(code_dir)
    old = {key: os.environ.get(key) for key in side}
    os.environ.update(side)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("a", type=Path, help="checkout A (a folder with gpusched/ and plugins/)")
    parser.add_argument("b", type=Path, help="checkout B")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args(argv)
    dirs = {"A": args.a.resolve(), "B": args.b.resolve()}
    for code_dir in dirs.values():
        if not (code_dir / "gpusched").is_dir():
            parser.error(f"{code_dir} has no gpusched/ folder")
        prepare_side(code_dir)
    runs: dict[str, list[dispatch.RunResult]] = {"bare": [], "A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="gpusched-bench-ab-") as root_name:
        root = Path(root_name)
        script = root / "trial.py"
        script.write_text(dispatch.TRIAL_SCRIPT)
        dispatch.run_bare(script, root, 10, rep=-1)  # warm-up
        for rnd in range(args.rounds):
            runs["bare"].append(dispatch.run_bare(script, root, args.trials, rnd))
            for side in ("A", "B") if rnd % 2 == 0 else ("B", "A"):
                with side_environment(dirs[side]):
                    runs[side].append(dispatch.run_gpusched(script, root, args.trials, rnd))
            print(f"  round {rnd + 1}/{args.rounds}: bare {runs['bare'][-1].rate:.1f},"
                  f" A {runs['A'][-1].rate:.1f}, B {runs['B'][-1].rate:.1f} trials/s",
                  file=sys.stderr, flush=True)

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.3f}"

    rows = []
    for side in ("A", "B"):
        mine = runs[side]
        rows.append([
            f"{side}: {dirs[side]}", f"{statistics.median([r.rate for r in mine]):.1f}",
            med([r.rate / b.rate for r, b in zip(mine, runs["bare"], strict=True)]),
            f"{1000 * statistics.median([r.cpu_scheduler / r.trials for r in mine]):.2f}",
            f"{1000 * statistics.median([statistics.fmean(r.gaps) for r in mine]):.2f}",
            f"{statistics.median([r.host_idle for r in mine]):.1f}",
        ])
    print_table(
        f"dispatch A/B: {args.trials} tiny trials, {dispatch.PARALLEL} at a time on"
        f" {dispatch.GPUS} fake GPUs, {args.rounds} rounds",
        ["each round: the bare loop, then A and B (swapping places every round)",
         f"bare loop median: {statistics.median([r.rate for r in runs['bare']]):.1f} trials/s,"
         f" host CPU idle {statistics.median([r.host_idle for r in runs['bare']]):.1f}%"],
        ["side", "median trials/s", "median ratio to bare", "daemon CPU ms/trial",
         "mean GPU idle between trials, ms", "host CPU idle %"],
        rows,
    )
    per_round = [b.rate / a.rate for a, b in zip(runs["A"], runs["B"], strict=True)]
    print(f"B / A per round: median {med(per_round)}, mean {statistics.fmean(per_round):.3f},"
          f" ahead in"
          f" {sum(x > 1 for x in per_round)} of {len(per_round)}"
          f" ({', '.join(f'{x:.3f}' for x in per_round)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
