"""A test trial whose score depends only on its params: ``-(x - 0.3)^2``, plus 0.1 when
``--k=a``. Sleeps ``$SLEEP`` seconds first (so that a daemon can be killed while it runs) and
ignores flags it does not know (a search may add its own, e.g. a budget)."""

import json
import os
import sys
import time

flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
time.sleep(float(os.environ.get("SLEEP", "0")))
score = -((float(flags.get("x", 0)) - 0.3) ** 2) + (0.1 if flags.get("k") == "a" else 0.0)
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
    fh.write(json.dumps({"score": score}) + "\n")
