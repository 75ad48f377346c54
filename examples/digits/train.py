"""Train a small MLP on synthetic 8x8 "digits", numpy only, and report to gpusched.

The data is made here, deterministically (no download): each sample is one of ten 5x7 glyphs,
shifted by up to three pixels, its strokes randomly dropped, and buried in noise. A good
learning rate reaches about 0.95 validation accuracy in ten epochs; a bad one stays near
chance, so a hyperparameter search visibly matters. Ten epochs take well under a second on
one core. Standalone::

    python train.py --learning_rate 0.01 --optimizer adam

Under gpusched each hyperparameter arrives as ``--NAME=VALUE`` and each epoch is reported
with ``trial.report``. SIGTERM ends the process at once, killed by the signal (Python's
default: a run cut short never exits 0), which is all a trial needs to honour. Under gpusched
it also saves its state after each epoch in the trial's checkpoint folder and goes on from
there when it finds one: a retried or requeued trial loses no finished epoch, and a
configuration that ``hyperband`` promotes to a larger ``--epochs`` trains only the epochs it
has not done yet (see hyperband.yaml).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gpusched import trial

__all__ = ["make_data", "int_like", "parse_args", "train", "main"]

Array = NDArray[np.float64]
Reporter = Callable[[int, dict[str, float]], None]

# 5 columns x 7 rows per digit, one row per string.
_GLYPHS = (
    "01110 10001 10011 10101 11001 10001 01110",  # 0
    "00100 01100 00100 00100 00100 00100 01110",  # 1
    "01110 10001 00001 00010 00100 01000 11111",  # 2
    "11111 00010 00100 00010 00001 10001 01110",  # 3
    "00010 00110 01010 10010 11111 00010 00010",  # 4
    "11111 10000 11110 00001 00001 10001 01110",  # 5
    "00110 01000 10000 11110 10001 10001 01110",  # 6
    "11111 00001 00010 00100 01000 01000 01000",  # 7
    "01110 10001 10001 01110 10001 10001 01110",  # 8
    "01110 10001 10001 01111 00001 00010 01100",  # 9
)


def make_data(n: int = 4000, seed: int = 0) -> tuple[Array, NDArray[np.int64]]:
    """``n`` noisy, shifted glyphs as 64-vectors, and their labels (0-9), always the same."""
    rng = np.random.default_rng(seed)
    glyphs = np.array([[[c == "1" for c in row] for row in g.split()] for g in _GLYPHS], float)
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 8, 8))
    dx, dy = rng.integers(0, 4, n), rng.integers(0, 2, n)
    for i in range(n):
        images[i, dy[i] : dy[i] + 7, dx[i] : dx[i] + 5] = glyphs[labels[i]]
    images *= rng.random(images.shape) > 0.1  # broken strokes
    images += rng.normal(0.0, 0.25, images.shape)  # sensor noise
    return images.reshape(n, 64), labels


class _Mlp:
    """A ReLU MLP with softmax cross-entropy, trained by SGD (with momentum) or Adam."""

    def __init__(self, sizes: Sequence[int], rng: np.random.Generator) -> None:
        self.params: list[Array] = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            self.params.append(rng.normal(0.0, math.sqrt(2.0 / fan_in), (fan_in, fan_out)))
            self.params.append(np.zeros(fan_out))
        self._m = [np.zeros_like(p) for p in self.params]
        self._v = [np.zeros_like(p) for p in self.params]
        self._t = 0

    def forward(self, x: Array) -> tuple[Array, list[Array]]:
        """Logits, and every layer's input (kept for the backward pass)."""
        inputs = []
        for i in range(0, len(self.params), 2):
            inputs.append(x)
            x = x @ self.params[i] + self.params[i + 1]
            if i + 2 < len(self.params):
                x = np.maximum(x, 0.0)
        return x, inputs

    def loss(self, x: Array, y: NDArray[np.int64]) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on ``(x, y)``."""
        logits, _ = self.forward(x)
        probs = _softmax(logits)
        loss = -np.log(probs[np.arange(len(y)), y] + 1e-12).mean()
        return float(loss), float((logits.argmax(1) == y).mean())

    def step(self, x: Array, y: NDArray[np.int64], lr: float, optimizer: str) -> float:
        """One minibatch update; returns the batch's loss before it."""
        logits, inputs = self.forward(x)
        probs = _softmax(logits)
        loss = float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean())
        grad = probs
        grad[np.arange(len(y)), y] -= 1.0
        grad /= len(y)
        grads: list[Array] = []
        for i in range(len(self.params) - 2, -1, -2):
            grads[:0] = [inputs[i // 2].T @ grad, grad.sum(0)]
            if i:
                grad = (grad @ self.params[i].T) * (inputs[i // 2] > 0)
        self._update(grads, lr, optimizer)
        return loss

    def _update(self, grads: list[Array], lr: float, optimizer: str) -> None:
        self._t += 1
        # Slice assignment updates the arrays in place, where the optimizer state lives.
        for p, g, m, v in zip(self.params, grads, self._m, self._v, strict=True):
            if optimizer == "adam":
                m[...] = 0.9 * m + 0.1 * g
                v[...] = 0.999 * v + 0.001 * g * g
                m_hat, v_hat = m / (1 - 0.9**self._t), v / (1 - 0.999**self._t)
                p[...] = p - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
            else:
                m[...] = 0.9 * m + g  # momentum: plain SGD would need far more epochs
                p[...] = p - lr * m


    def save(self, path: Path, rng: np.random.Generator, epoch: int) -> None:
        """Weights, optimizer state, batch-order generator and epoch, written atomically."""
        # Any: numpy's stubs would match the arrays against savez's allow_pickle keyword.
        arrays: dict[str, Any] = {
            f"{kind}{i}": a for kind, group in (("p", self.params), ("m", self._m),
                                                ("v", self._v)) for i, a in enumerate(group)}
        arrays["meta"] = np.array(
            json.dumps({"epoch": epoch, "t": self._t, "rng": rng.bit_generator.state}))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def load(self, path: Path, rng: np.random.Generator) -> int:
        """What :meth:`save` wrote, into this model and ``rng``; the epochs already done (0 when
        there is nothing to load, or it was written by a model of another shape)."""
        try:
            with np.load(path) as data:
                meta = json.loads(str(data["meta"]))
                saved = [[data[f"{kind}{i}"] for i in range(len(self.params))]
                         for kind in "pmv"]
        except (OSError, KeyError, ValueError):
            return 0
        if any(a.shape != b.shape for a, b in zip(saved[0], self.params, strict=True)):
            return 0
        for group, values in zip((self.params, self._m, self._v), saved, strict=True):
            for target, value in zip(group, values, strict=True):
                target[...] = value
        self._t = int(meta["t"])
        rng.bit_generator.state = meta["rng"]
        return int(meta["epoch"])


def _softmax(logits: Array) -> Array:
    z: Array = np.exp(logits - logits.max(1, keepdims=True))
    out: Array = z / z.sum(1, keepdims=True)
    return out


def int_like(text: str) -> int:
    """An integer flag that also takes ``2.0``: a search may hand integers over as floats."""
    value = float(text)
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"not an integer: {text}")
    return int(value)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The trainer's flags: its hyperparameters, given as ``--NAME=VALUE`` by gpusched."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learning_rate", type=float, default=0.01)
    parser.add_argument("--hidden", type=int_like, default=64)
    parser.add_argument("--layers", type=int_like, default=1)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="adam")
    parser.add_argument("--epochs", type=int_like, default=10)
    parser.add_argument("--batch_size", type=int_like, default=32)
    parser.add_argument("--seed", type=int_like, default=0, help="weights and batch order")
    return parser.parse_args(argv)


def train(args: argparse.Namespace, report: Reporter, checkpoint: Path | None = None) -> float:
    """Train as ``args`` say, calling ``report(epoch, metrics)`` after each epoch.

    ``checkpoint``: a file to save the state to after each epoch and, if it exists, to go on
    from (up to ``args.epochs`` in all). Returns the last validation accuracy (0 when no epoch
    was left to train); raises ``FloatingPointError`` if the loss diverges.
    """
    x, y = make_data()
    split = len(x) * 3 // 4
    rng = np.random.default_rng(args.seed)
    model = _Mlp([64] + [args.hidden] * args.layers + [10], rng)
    done = model.load(checkpoint, rng) if checkpoint is not None else 0
    val_accuracy = 0.0
    for epoch in range(done + 1, args.epochs + 1):
        order = rng.permutation(split)
        losses = []
        for start in range(0, split, args.batch_size):
            batch = order[start : start + args.batch_size]
            losses.append(model.step(x[batch], y[batch], args.learning_rate, args.optimizer))
        val_loss, val_accuracy = model.loss(x[split:], y[split:])
        train_loss = float(np.mean(losses))
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training diverged at epoch {epoch}")
        metrics = {"val_accuracy": val_accuracy, "val_loss": val_loss, "train_loss": train_loss}
        if checkpoint is not None:
            model.save(checkpoint, rng, epoch)
        report(epoch, metrics)
    return val_accuracy


def main(argv: Sequence[str] | None = None) -> None:
    """Run standalone or as a gpusched trial."""
    args = parse_args(argv)
    # Only under gpusched: standalone runs always start from scratch and leave no files.
    checkpoint = (trial.checkpoint_dir() / "digits-state.npz"
                  if os.environ.get("GPUSCHED_CHECKPOINT_DIR") else None)
    try:
        train(args, lambda epoch, metrics: trial.report(step=epoch, **metrics), checkpoint)
    except FloatingPointError as exc:
        # Retrying the same hyperparameters would diverge again: fail without retry.
        trial.fail(f"{exc} (learning rate {args.learning_rate} too high?)")


if __name__ == "__main__":
    main()
