"""A test trial reporting the way Google's cloudml-hypertune does: the whole file rewritten at
each report (here, with a half-written moment in between), values as strings."""

import json
import os
import time

path = os.environ["CLOUD_ML_HP_METRIC_FILE"]
tag = os.environ["CLOUD_ML_HP_METRIC_TAG"]
entries = []
for step in range(5):
    entries.append({"timestamp": time.time(), "trial": os.environ["CLOUD_ML_TRIAL_ID"],
                    tag: str(0.5 + step / 10), "global_step": str(step)})
    body = "\n".join(json.dumps(e) for e in entries[-100:]) + "\n"
    with open(path, "w") as fh:
        fh.write(body[: len(body) // 2])  # what a reader may see mid-rewrite
        fh.flush()
        time.sleep(0.03)
        fh.seek(0)
        fh.write(body)
    time.sleep(0.03)
