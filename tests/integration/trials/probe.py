"""A test trial: records what it saw, reports a metric computed from its params, obeys flags.

Flags beyond the hyperparameters come from the experiment's command:
  --out DIR        write <DIR>/<exp>-<trial>-<attempt>.json with env, argv, start/end times
  --sleep S        sleep S seconds before reporting (also a param: --sleep=S)
  --no-metric      exit 0 without reporting
  --exit N         exit with code N after reporting
  --steps K        report K times
"""

import json
import os
import sys
import time

from trial_flags import parse_flags  # next to this script


def main() -> int:
    opts, flags = parse_flags(sys.argv[1:])
    start = time.time()
    record = {
        "start": start, "argv": sys.argv[1:], "pid": os.getpid(),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("GPUSCHED_", "CLOUD_ML_", "CUDA_"))},
        "has_home": "HOME" in os.environ,
        "leaked": os.environ.get("GPUSCHED_TEST_LEAK"),
        # Who it runs as, and its whole environment (a root daemon runs trials as submitters).
        "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
        "environ": dict(os.environ), "cwd": os.getcwd(),
    }
    out = opts.get("out")
    name = f"{os.environ.get('GPUSCHED_EXPERIMENT')}-{os.environ.get('GPUSCHED_TRIAL')}"

    def save() -> None:
        if out:
            path = os.path.join(out, f"{name}-{start:.6f}.json")
            with open(path + ".tmp", "w") as fh:
                json.dump(record, fh)
            os.replace(path + ".tmp", path)

    save()
    time.sleep(float(opts.get("sleep", 0)))
    x = float(opts.get("x", 0))
    steps = int(opts.get("steps", 1))
    if "no-metric" not in flags:
        with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
            for step in range(steps):
                fh.write(json.dumps({"step": step, "score": x * (step + 1) / steps}) + "\n")
    record["end"] = time.time()
    save()
    return int(opts.get("exit", 0))


sys.exit(main())
