"""A test trial whose outcome is picked by its trial number, through the environment.

  OUTCOMES  a JSON object: trial number -> "crash" (exit 3), "failed" (raise
            gpusched.FailedTrialError), "fatal" (raise gpusched.FatalError), "slow-fatal" (the
            same after 1 s) or "sleep" (sleep 30 s, then complete); any other trial reports
            score = its number and completes.

It imports only ``gpusched`` (never ``gpusched.trial``) and writes its report by hand: a trainer
that merely raises one of gpusched's errors still has it recorded.
"""

import json
import os
import sys
import time

import gpusched

number = os.environ["GPUSCHED_TRIAL"]
outcome = json.loads(os.environ.get("OUTCOMES", "{}")).get(number, "complete")
if outcome == "crash":
    sys.exit(3)
if outcome == "failed":
    raise gpusched.FailedTrialError(f"bad data in trial {number}")
if outcome == "slow-fatal":
    time.sleep(1.0)
if outcome in ("fatal", "slow-fatal"):
    raise gpusched.FatalError("license expired")
if outcome == "sleep":
    time.sleep(30)
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
    fh.write(json.dumps({"score": float(number)}) + "\n")
