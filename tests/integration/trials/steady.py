"""A test trial that reports steadily and keeps its own ground truth, outside gpusched.

  --truth DIR     append to DIR/<exp>-<trial>.jsonl: a "start" line (pid, time, devices), a
                  "report" line after each report is appended to $GPUSCHED_REPORT_FILE, and an
                  "end" line, or a "terminated" line when SIGTERM arrives (then exit 143)
  --steps K       how many reports (default 10)
  --interval S    seconds between reports (default 0.1)
  --child         also start a child process that sleeps as long as the trial (a straggler)
  --x=X           the hyperparameter; the reported score is X * (step + 1) / K
"""

import json
import os
import signal
import subprocess
import sys
import time

from trial_flags import parse_flags  # next to this script


def main() -> int:
    opts, flags = parse_flags(sys.argv[1:])
    name = f"{os.environ['GPUSCHED_EXPERIMENT']}-{os.environ['GPUSCHED_TRIAL']}"
    truth_path = os.path.join(opts["truth"], f"{name}.jsonl")
    pid = os.getpid()

    def truth(event: str, **data: object) -> None:
        line = json.dumps({"event": event, "pid": pid, "t": time.time(), **data}) + "\n"
        fd = os.open(truth_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def on_term(signum: int, frame: object) -> None:
        truth("terminated")
        os._exit(143)

    signal.signal(signal.SIGTERM, on_term)
    steps = int(opts.get("steps", 10))
    interval = float(opts.get("interval", 0.1))
    truth("start", devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    if "child" in flags:
        subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({steps * interval})"])
    x = float(opts.get("x", 0))
    for step in range(steps):
        time.sleep(interval)
        report = {"step": step, "score": x * (step + 1) / steps}
        # The report and its truth line go together: SIGTERM waits until both are written.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        fd = os.open(os.environ["GPUSCHED_REPORT_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (json.dumps(report) + "\n").encode())
        finally:
            os.close(fd)
        truth("report", step=step)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    truth("end")
    return 0


sys.exit(main())
