"""A test trial whose leader exits at once on SIGTERM while its child, in the same process
group, takes ``SAVE_S`` seconds in its SIGTERM handler (a trainer saving a checkpoint).

The child appends to the file given as the first argument: ``ready``, then ``term`` for each
SIGTERM its handler sees, then ``saved`` once the save is done. A stop must SIGTERM it once
and leave it the stop's grace period: not a second SIGTERM when the leader is gone.
"""

import os
import signal
import subprocess
import sys
import time

SAVE_S = 1.0
out = sys.argv[1]


def note(word: str) -> None:
    with open(out, "a") as fh:
        fh.write(word + "\n")


if len(sys.argv) > 2 and sys.argv[2] == "child":
    def save(signum: int, frame: object) -> None:
        note("term")
        time.sleep(SAVE_S)
        note("saved")
        os._exit(0)

    signal.signal(signal.SIGTERM, save)
    note("ready")
    time.sleep(300)
else:
    child = subprocess.Popen([sys.executable, __file__, out, "child"])
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
        fh.write('{"score": 1.0}\n')
    child.wait()
