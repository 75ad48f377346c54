"""A test trial that starts a child and a grandchild (one in its own process group), writes
their pids, reports once, then sleeps: cancel must take all three down."""

import json
import os
import subprocess
import sys
import time

sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
child = subprocess.Popen(sleeper)
escapee = subprocess.Popen(sleeper, process_group=0)  # left the group, not the session
out = sys.argv[1]
with open(out + ".tmp", "w") as fh:
    json.dump({"pids": [os.getpid(), child.pid, escapee.pid]}, fh)
os.replace(out + ".tmp", out)
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
    fh.write(json.dumps({"score": 1.0}) + "\n")
time.sleep(300)
