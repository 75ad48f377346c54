"""A test trial that waits until the file ``--gate PATH`` exists, then reports ``score`` = x.

It makes an ordering test independent of timing: the test holds a trial running for exactly as
long as it needs (say, while it submits another experiment), then creates the file.
"""

import json
import os
import sys
import time

from trial_flags import parse_flags  # next to this script

opts, _ = parse_flags(sys.argv[1:])
while not os.path.exists(opts["gate"]):
    time.sleep(0.02)
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
    fh.write(json.dumps({"score": float(opts.get("x", 0))}) + "\n")
