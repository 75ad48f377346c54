"""A test trainer for budgeted search (hyperband): trains from its checkpoint to --epochs.

  --epochs N    train up to epoch N (the budget flag; the command may carry a default too)
  --x=X         the hyperparameter; the score at epoch e is X * e (more epochs, better)
  --truth DIR   append one line to DIR/<exp>-<trial>.json: what this trial saw and did

The checkpoint (``$GPUSCHED_CHECKPOINT_DIR/state.json``) holds the epochs done so far and the
trials that trained in this folder: a promoted trial goes on from where the trial it continues
stopped, and reports one line per epoch it trains itself.
"""

import json
import os
import sys
from pathlib import Path

from trial_flags import parse_flags  # next to this script


def main() -> int:
    opts, _ = parse_flags(sys.argv[1:])
    epochs = int(opts["epochs"])
    x = float(opts["x"])
    ckpt_dir = Path(os.environ["GPUSCHED_CHECKPOINT_DIR"])
    state_file = ckpt_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    first: int = state.get("done", 0)
    trained_by: list[int] = state.get("trained_by", [])
    name = f"{os.environ['GPUSCHED_EXPERIMENT']}-{os.environ['GPUSCHED_TRIAL']}"
    seen_file = Path(opts["truth"]) / f"{name}.json"
    if seen_file.exists():  # a rerun: where its first run started is what the test checks
        resumed_at = json.loads(seen_file.read_text())["resumed_at"]
    else:
        # Noted before training: a run stopped after saving its state but before its final
        # record must not make its rerun look as if it had started from that state.
        resumed_at = first
        _write(seen_file, {"resumed_at": resumed_at})
    with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as out:
        for epoch in range(first + 1, epochs + 1):
            out.write(json.dumps({"epoch": epoch, "score": x * epoch}) + "\n")
            out.flush()
    me = int(os.environ["GPUSCHED_TRIAL"])
    if trained_by[-1:] != [me]:  # a rerun (after an interruption) is the same trial
        trained_by.append(me)
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"done": max(first, epochs), "trained_by": trained_by}))
    tmp.replace(state_file)
    seen = {
        "argv_epochs": epochs, "resumed_at": resumed_at, "checkpoint_dir": str(ckpt_dir),
        "trained_by": trained_by,
        **{k: os.environ.get(k) for k in (
            "GPUSCHED_BUDGET", "GPUSCHED_INITIAL_BUDGET", "GPUSCHED_CONTINUES")},
    }
    _write(seen_file, seen)
    return 0


def _write(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


sys.exit(main())
