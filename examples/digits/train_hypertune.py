"""The digits trainer, reporting as a ``cloudml-hypertune`` user does, not through gpusched.

It shows that a trainer written for AI Platform runs under gpusched unchanged::

    gpusched submit --aip hptuning_config.yaml -- python train_hypertune.py --epochs 10

:class:`HyperTune` below writes the metric file exactly as ``hypertune.HyperTune`` (from the
``cloudml-hypertune`` package) does, so this example needs no package beyond numpy: every
report rewrites the whole ``CLOUD_ML_HP_METRIC_FILE``, one JSON object a line (keys sorted,
every value but the timestamp a string), keeping the last 100 entries. A real trainer would
write ``import hypertune`` and ``hypertune.HyperTune()`` instead.
"""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy sees the repository's layout; at run time train.py is next to us
    from examples.digits.train import parse_args, train
else:
    from train import parse_args, train

__all__ = ["HyperTune", "main"]

_DEFAULT_TAG = "training/hptuning/metric"
_DEFAULT_PATH = "/tmp/hypertune/output.metrics"
_KEEP = 100


class HyperTune:
    """A stand-in for ``hypertune.HyperTune`` that writes the same file, the same way."""

    def __init__(self) -> None:
        self.metric_path = os.environ.get("CLOUD_ML_HP_METRIC_FILE", _DEFAULT_PATH)
        os.makedirs(os.path.dirname(self.metric_path) or ".", exist_ok=True)
        self.trial_id = os.environ.get("CLOUD_ML_TRIAL_ID", "0")
        self.metrics_queue: collections.deque[dict[str, object]] = collections.deque(maxlen=_KEEP)

    def report_hyperparameter_tuning_metric(
        self, hyperparameter_metric_tag: str, metric_value: float, global_step: int | None = None
    ) -> None:
        """Record one value of the tuned metric and rewrite the file."""
        self.metrics_queue.append(
            {
                "timestamp": time.time(),
                "trial": str(self.trial_id),
                (hyperparameter_metric_tag or _DEFAULT_TAG): str(float(metric_value)),
                "global_step": str(int(global_step) if global_step else 0),
            }
        )
        with open(self.metric_path, "w") as metric_file:
            for metric in self.metrics_queue:
                metric_file.write(json.dumps(metric, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Train, reporting the tuned metric (``CLOUD_ML_HP_METRIC_TAG``) after each epoch."""
    args = parse_args(argv)
    tag = os.environ.get("CLOUD_ML_HP_METRIC_TAG", "val_accuracy")
    hpt = HyperTune()

    def report(epoch: int, metrics: dict[str, float]) -> None:
        hpt.report_hyperparameter_tuning_metric(tag, metrics[tag], global_step=epoch)
        print(f"epoch {epoch}: {tag}={metrics[tag]:.4f}", flush=True)

    train(args, report)


if __name__ == "__main__":
    main()
