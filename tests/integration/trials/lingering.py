"""A test trial that reports, leaves a child that ignores SIGTERM behind, and exits (0, or the
code given as ``--exit-code=N``): the daemon then stops the child (SIGTERM, the grace
period, SIGKILL) before it records the end. Writes ``{"leader": pid, "child": pid}`` to the
file given as the first argument."""

import json
import os
import subprocess
import sys

child = subprocess.Popen([sys.executable, "-c", "import signal, time;"
                          " signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready',"
                          " flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
assert child.stdout is not None and child.stdout.readline() == b"ready\n"  # ignoring SIGTERM
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
    fh.write('{"score": 0.5}\n')
out = sys.argv[1]
with open(out + ".tmp", "w") as fh:
    json.dump({"leader": os.getpid(), "child": child.pid}, fh)
os.replace(out + ".tmp", out)
codes = [int(a.split("=", 1)[1]) for a in sys.argv[2:] if a.startswith("--exit-code=")]
sys.exit(codes[0] if codes else 0)
