"""A test trial for conditional parameters: records the hyperparameters it was given, three ways.

``--out DIR`` (from the experiment's command) names the folder; it writes
``<DIR>/<trial number>.json`` with its ``--NAME=VALUE`` flags, ``GPUSCHED_PARAMS`` and
``gpusched.trial.params()``, then reports ``score`` (1 for sgd, else 0.5).
"""

import json
import os
import sys

from trial_flags import parse_flags  # next to this script

from gpusched import trial

opts, _ = parse_flags(sys.argv[1:])
out = opts.pop("out")
record = {
    "flags": [a for a in sys.argv[1:] if a.startswith("--") and "=" in a],
    "env": json.loads(os.environ["GPUSCHED_PARAMS"]),
    "api": trial.params(),
}
path = os.path.join(out, f"{os.environ['GPUSCHED_TRIAL']}.json")
with open(path + ".tmp", "w") as fh:
    json.dump(record, fh)
os.replace(path + ".tmp", path)
trial.report(score=1.0 if opts.get("optimizer") == "sgd" else 0.5)
