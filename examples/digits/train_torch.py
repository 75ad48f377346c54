"""Train a small PyTorch MLP on the synthetic digits of train.py, on the trial's GPU.

The gpusched trainer to copy: hyperparameters as ``--NAME=VALUE`` flags, its GPU as
``cuda:0``, a report each epoch, a checkpoint each epoch and when gpusched stops it, and a
retried, requeued or promoted trial that goes on where it stopped. The data and its labels
are train.py's (``make_data``); a good learning rate reaches about 0.95 validation accuracy
in a few epochs, a bad one stays near chance. Standalone (torch installed: ``pip install -e
'.[torch]'`` or ``pip install torch``)::

    python train_torch.py --learning_rate=0.01 --optimizer=adam

Standalone it prints its reports, starts from scratch and writes no file. Under gpusched
(torch.yaml) it saves its state to the trial's checkpoint folder after each epoch and, on
SIGTERM, between two batches; it resumes from there, mid-epoch included, so a stopped and
resumed trial reports exactly what an undisturbed one would (on the CPU; a GPU's kernels may
differ in the last bits). A configuration that ``hyperband`` promotes to a larger ``--epochs``
trains only the epochs it has not done (see hyperband.yaml). Stopped by SIGTERM, it saves,
then dies of that SIGTERM, as if it had no handler: a run cut short never looks finished.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from gpusched import trial

if TYPE_CHECKING:  # mypy sees the repository's layout; at run time train.py is next to us
    # torch is an optional extra: without it, mypy checks this file with torch as Any.
    import torch  # type: ignore[import-not-found, unused-ignore]

    from examples.digits.train import int_like, make_data
else:
    # torch is imported inside the functions that use it: reading the flags (--help, a test of
    # the experiment file) does not pay the seconds its import takes.
    from train import int_like, make_data

__all__ = ["build_parser", "parse_args", "SigtermFlag", "Progress", "train", "main"]

Reporter = Callable[[int, dict[str, float]], None]
CHECKPOINT_NAME = "digits-torch.pt"


class SigtermFlag:
    """A SIGTERM handler that only takes note: the training loop asks between two batches.

    gpusched stops a trial (early stopping, a ``stop:`` bound, a cancel, its timeout, the
    daemon's shutdown) with SIGTERM to every process of the trial, then SIGKILL after
    ``grace_period_s`` (10 s by default): the time to save. Python's default would end the
    process at once; raising from the handler could interrupt a checkpoint half written.
    Once saved, :func:`main` ends the process by the signal all the same (:func:`_die_of`).

    A ``DataLoader`` with ``num_workers > 0`` needs one line more: its workers get the
    SIGTERM too, and their deaths raise ``RuntimeError: DataLoader worker (pid(s) ...) exited
    unexpectedly`` in this process. Give it ``worker_init_fn=lambda _: signal.signal(
    signal.SIGTERM, signal.SIG_IGN)``: the workers go on until the loader shuts them down.
    """

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


@dataclass
class Progress:
    """Where training stands: what a checkpoint holds besides the weights."""

    epoch: int = 0  # epochs finished
    start: int = 0  # samples of the next epoch trained already (a stop mid-epoch)
    order: torch.Tensor | None = None  # that epoch's sample order, once drawn
    loss_sum: float = 0.0  # that epoch's training loss so far, summed over its samples


def build_parser() -> argparse.ArgumentParser:
    """The trainer's flags: its hyperparameters, given as ``--NAME=VALUE`` by gpusched.

    A flag given twice takes its last value: ``hyperband`` appends ``--epochs=N`` after the
    params, over the ``--epochs`` written in the experiment's command.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--learning_rate", type=float, default=0.01)
    parser.add_argument("--hidden", type=int_like, default=64)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="adam")
    parser.add_argument("--batch_size", type=int_like, default=32)
    parser.add_argument("--epochs", type=int_like, default=10)
    parser.add_argument("--seed", type=int_like, default=0, help="weights and sample order")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags in ``argv`` (the command line when None); imports no torch."""
    return build_parser().parse_args(argv)


def _cpu_threads() -> int:
    """``OMP_NUM_THREADS`` when it is a count, else 1: torch would take every core, and two
    trials side by side (``max_parallel_trials: 2``) would only contend for them."""
    raw = os.environ.get("OMP_NUM_THREADS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def _device() -> torch.device:
    """The GPU when there is one, else the CPU (with :func:`_cpu_threads`); said on stderr."""
    import torch

    if torch.cuda.is_available():
        # Under gpusched, CUDA_VISIBLE_DEVICES holds the UUIDs of this trial's GPUs only, so
        # its (first) GPU is cuda:0 whatever its number on the host.
        device = torch.device("cuda:0")
        where = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        # No GPU: a CPU-only build of torch, no driver, or fake GPUs (`--fake-gpus`, whose
        # UUIDs in CUDA_VISIBLE_DEVICES match no device).
        torch.set_num_threads(_cpu_threads())
        device = torch.device("cpu")
        where = f"cpu ({torch.get_num_threads()} threads)"
    print(f"train_torch: training on {where}", file=sys.stderr, flush=True)
    return device


def _model(args: argparse.Namespace, device: torch.device
           ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The MLP, its weights drawn from ``args.seed``, and its optimizer."""
    import torch

    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, args.hidden), torch.nn.ReLU(), torch.nn.Linear(args.hidden, 10)
    ).to(device)
    optimizer: torch.optim.Optimizer
    if args.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    else:  # momentum: plain SGD would need far more epochs
        optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate, momentum=0.9)
    return model, optimizer


def _save(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
          generator: torch.Generator, progress: Progress) -> None:
    """Everything needed to go on, written atomically: a temporary file in the same folder,
    synced, then renamed over the old one. A SIGKILL or a crash at any moment leaves the
    previous checkpoint or this one, never half of one."""
    import torch

    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "generator": generator.get_state(), "epoch": progress.epoch,
             "start": progress.start, "order": progress.order, "loss_sum": progress.loss_sum}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as file:
        torch.save(state, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def _load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
          generator: torch.Generator, device: torch.device) -> Progress:
    """What :func:`_save` wrote, into ``model``, ``optimizer`` and ``generator``."""
    import torch

    # weights_only: a checkpoint is data; unpickling arbitrary objects could run code.
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])  # onto the model's device
    optimizer.load_state_dict(state["optimizer"])  # likewise
    generator.set_state(state["generator"])  # a CPU generator: its state stays on the CPU
    order = state["order"]
    return Progress(epoch=int(state["epoch"]), start=int(state["start"]),
                    order=None if order is None else order.to(device),
                    loss_sum=float(state["loss_sum"]))


def _evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on ``(x, y)``."""
    import torch

    with torch.no_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        right = int((logits.argmax(1) == y).sum().item())
    return float(loss.item()), right / len(y)  # 0.95, not float32's 0.949999988


def _train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                 y: torch.Tensor, progress: Progress, *, batch_size: int, stop: SigtermFlag
                 ) -> bool:
    """Train on ``x[progress.order]`` from ``progress.start`` on, keeping ``progress`` up to
    date; False when ``stop`` was set before the epoch's end."""
    import torch

    assert progress.order is not None
    # Summed on the device: .item() after every batch would wait for the GPU each time.
    loss_sum = torch.tensor(progress.loss_sum, device=x.device)
    finished = True
    for start in range(progress.start, len(progress.order), batch_size):
        if stop.requested:
            progress.start, finished = start, False
            break
        batch = progress.order[start : start + batch_size]
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call, unused-ignore]  # (torch's typing)
        optimizer.step()
        loss_sum += loss.detach() * len(batch)
    progress.loss_sum = float(loss_sum.item())
    return finished


def train(args: argparse.Namespace, report: Reporter, checkpoint: Path | None,
          stop: SigtermFlag) -> bool:
    """Train as ``args`` say, calling ``report(epoch, metrics)`` after each epoch.

    ``checkpoint``: a file to save the state to after each epoch and when ``stop`` is set,
    and, if it exists, to go on from (up to ``args.epochs`` epochs in all). Returns False
    when stopped before the end; raises ``FloatingPointError`` if the loss diverges.
    """
    import torch

    device = _device()
    images, labels = make_data()
    x = torch.as_tensor(images, dtype=torch.float32, device=device)
    y = torch.as_tensor(labels, device=device)
    split = len(x) * 3 // 4
    model, optimizer = _model(args, device)
    generator = torch.Generator().manual_seed(args.seed)  # the sample order, saved with it
    progress = Progress()
    if checkpoint is not None and checkpoint.exists():
        progress = _load(checkpoint, model, optimizer, generator, device)
        print(f"train_torch: resuming after epoch {progress.epoch} and {progress.start}"
              " samples of the next", file=sys.stderr, flush=True)
    for epoch in range(progress.epoch + 1, args.epochs + 1):
        if progress.order is None:
            progress.order = torch.randperm(split, generator=generator).to(device)
        if not _train_epoch(model, optimizer, x, y, progress, batch_size=args.batch_size,
                            stop=stop):
            _save_on_stop(checkpoint, model, optimizer, generator, progress)
            return False
        train_loss = progress.loss_sum / split
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training diverged at epoch {epoch}")
        val_loss, val_accuracy = _evaluate(model, x[split:], y[split:])
        progress = Progress(epoch=epoch)
        if checkpoint is not None:
            _save(checkpoint, model, optimizer, generator, progress)
        report(epoch, {"val_accuracy": val_accuracy, "val_loss": val_loss,
                       "train_loss": train_loss})
    return True


def _save_on_stop(checkpoint: Path | None, model: torch.nn.Module,
                  optimizer: torch.optim.Optimizer, generator: torch.Generator,
                  progress: Progress) -> None:
    """The checkpoint of a stop mid-epoch (at an epoch's start, the last epoch's is it)."""
    if checkpoint is not None and progress.start > 0:
        _save(checkpoint, model, optimizer, generator, progress)
    if checkpoint is None:
        saved = "nothing saved (standalone)"
    else:
        saved = f"saved to {checkpoint}" if checkpoint.exists() else "nothing to save yet"
    print(f"train_torch: SIGTERM after epoch {progress.epoch} and {progress.start} samples"
          f" of the next: {saved}", file=sys.stderr, flush=True)


def _report(epoch: int, metrics: dict[str, Any]) -> None:
    trial.report(step=epoch, **metrics)


def _die_of(signum: signal.Signals) -> NoReturn:
    """End the process by ``signum``, its handler set back to the default, once the
    checkpoint is saved: the parent sees what a trainer without a handler would show.

    Not ``exit(0)``: after a SIGTERM gpusched did not send (a ``kill``, ``docker stop``,
    systemd stopping a unit) gpusched would record the run cut short as ``completed``, with a
    result. Not ``exit(128 + signum)`` either: a shell shows both as 143, but gpusched would
    say ``exited with code 143`` where this reads ``killed by signal SIGTERM`` (a crash, run
    again from the checkpoint under ``max_retries_per_trial``). A stop gpusched sent (early
    stopping, a cancel, its shutdown) ends as that stop says, whatever the exit.
    """
    sys.stdout.flush()  # a signal's death flushes nothing
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)  # to this thread: delivered before raise_signal returns
    # Reached only if the signal is blocked (a mask inherited from the parent): the same
    # status as a shell reports for that death.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> None:
    """Run standalone or as a gpusched trial: exit 0 once trained, die of the SIGTERM that
    stopped it (after saving its checkpoint) otherwise."""
    args = parse_args(argv)  # --help ends here, before torch is imported
    stop = SigtermFlag()
    signal.signal(signal.SIGTERM, stop)  # before torch's import: no SIGTERM goes unheard
    # Only under gpusched: standalone runs always start from scratch and leave no files.
    checkpoint = (trial.checkpoint_dir() / CHECKPOINT_NAME
                  if os.environ.get("GPUSCHED_CHECKPOINT_DIR") else None)
    try:
        finished = train(args, _report, checkpoint, stop)
    except FloatingPointError as exc:
        # Retrying the same hyperparameters would diverge again: fail without retry.
        trial.fail(f"{exc} (learning rate {args.learning_rate} too high?)")
    if not finished:
        # Stopped: under gpusched a trial it stopped ends as the stop says (stopped,
        # cancelled, interrupted and run again) whatever the exit; any other SIGTERM is a
        # crash, not a completed trial.
        _die_of(signal.SIGTERM)


if __name__ == "__main__":
    main()
