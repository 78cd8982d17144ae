"""Training: ``train_model``, a small ``Trainer``, schedules, seeding and devices.

A batch is a pair ``(inputs, targets)`` of tensors. How a model turns a batch
into a loss depends on the kind of model (:func:`batch_loss`):

- a :class:`~attnlib.models.SequenceModel` says itself, through
  :meth:`~attnlib.models.SequenceModel.teacher_forcing`: an encoder-decoder
  (:class:`~attnlib.transformer.Seq2SeqTransformer`,
  :class:`~attnlib.seq2seq.Seq2Seq`) reads ``targets[:, :-1]`` (``targets``
  start with BOS) and predicts ``targets[:, 1:]``; a language model
  (:class:`~attnlib.transformer.DecoderLM`) predicts each next token of
  ``inputs``;
- anything else (a classifier): ``model(inputs)`` gives logits for ``targets``.

Padding positions (``pad_idx``) count neither in the loss nor in the accuracy.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_positive_int
from .models import SequenceModel

__all__ = [
    "SEED_ENV",
    "base_seed",
    "seed_everything",
    "seeded_generator",
    "get_device",
    "noam_schedule",
    "warmup_cosine_schedule",
    "batch_loss",
    "train_model",
    "Trainer",
]


SEED_ENV = "ATTNLIB_SEED"
"""The environment variable that sets :func:`base_seed` (default 0)."""


def base_seed() -> int:
    """The run's base seed: ``$ATTNLIB_SEED`` if set, else 0.

    Every tutorial draws its randomness from this one number, so that the
    robustness matrix (``nox -s gallery-matrix``) can run the same script on
    other seeds without editing it, and a downloaded script runs as it is.

    Raises
    ------
    ValueError
        If ``ATTNLIB_SEED`` is set to something that is not a non-negative
        integer.
    """
    text = os.environ.get(SEED_ENV, "").strip()
    if not text:
        return 0
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if seed < 0:
        raise ValueError(f"{SEED_ENV} must be a non-negative integer, got {text!r}")
    return seed


def seed_everything(seed: int | None = None, *, offset: int = 0) -> int:
    """Seed Python's, NumPy's and PyTorch's random number generators.

    Parameters
    ----------
    seed : int, optional
        The seed; by default :func:`base_seed` (``$ATTNLIB_SEED``, else 0).
    offset : int
        Added to the seed: a tutorial that trains several models from fresh
        seeds calls ``seed_everything(offset=k)`` for the ``k``-th one.

    Returns
    -------
    int
        The seed that was set (``seed + offset``).
    """
    value = (base_seed() if seed is None else seed) + offset
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
    return value


def seeded_generator(offset: int = 0, *, seed: int | None = None) -> torch.Generator:
    """A fresh :class:`torch.Generator` seeded with ``seed + offset``.

    ``seed`` defaults to :func:`base_seed`, so data drawn from it follows
    ``$ATTNLIB_SEED`` like everything else. A tutorial gives each stream of
    data its own offset (training batches, a test set, ...) so that the
    streams are independent and do not depend on how much the others drew.
    """
    return torch.Generator().manual_seed((base_seed() if seed is None else seed) + offset)


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA if available, else Apple's MPS, else the CPU (or ``prefer`` if given)."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def noam_schedule(
    optimizer: torch.optim.Optimizer, d_model: int, warmup: int, factor: float = 1.0
) -> torch.optim.lr_scheduler.LambdaLR:
    r"""The paper's schedule (Vaswani et al., 2017, section 5.3), stepped per batch.

    .. math::

        lr = factor \cdot d_{model}^{-0.5} \min(step^{-0.5}, step \cdot warmup^{-1.5})

    Set the optimizer's ``lr`` to 1: the schedule gives the whole rate.
    """
    check_positive_int(warmup, "warmup")

    def rate(step: int) -> float:
        step = max(step, 1)
        return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, rate)


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup: int, total: int, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then a cosine decay to
    ``min_ratio`` times the base rate at step ``total``."""
    check_positive_int(total, "total")

    def ratio(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, ratio)


def batch_loss(
    model: nn.Module,
    batch: tuple[Tensor, Tensor],
    *,
    pad_idx: int | None = 0,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, int, int]:
    """Loss, number of correct predictions and number of predictions of one batch.

    See the module docstring for what each kind of model predicts.
    """
    inputs, targets = batch[0], batch[1]  # a pair, or a Batch of attnlib.data
    if isinstance(model, SequenceModel):
        logits, gold = model.teacher_forcing(inputs, targets)
        if model.pad_idx is None:  # a language model reads unpadded token streams
            pad_idx = None
    else:
        logits, gold = model(inputs), targets
        pad_idx = None
    flat_logits, flat_gold = logits.reshape(-1, logits.shape[-1]), gold.reshape(-1)
    ignore = -100 if pad_idx is None else pad_idx
    loss = F.cross_entropy(
        flat_logits, flat_gold, ignore_index=ignore, label_smoothing=label_smoothing
    )
    keep = flat_gold != ignore
    correct = int(((flat_logits.argmax(-1) == flat_gold) & keep).sum())
    return loss, correct, int(keep.sum())


class Trainer:
    """Train with a validation pass per epoch, and keep the history.

    Parameters
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
    scheduler : torch.optim.lr_scheduler.LRScheduler, optional
        Stepped after every batch (warm-up schedules count batches).
    pad_idx : int, optional
        Target padding id, ignored by the loss.
    label_smoothing : float
        Label smoothing of the cross-entropy (0.1 in the paper).
    grad_clip : float, optional
        Clip the gradient norm to this value.
    patience : int, optional
        Early stopping: stop when the validation loss has not improved for
        this many epochs. Whether it stops early or runs every epoch, the
        model ends with the weights of its best validation epoch.
    checkpoint : str or pathlib.Path, optional
        Save a checkpoint there after every epoch (see :meth:`save`).
    loss_fn : callable, optional
        ``loss_fn(model, batch) -> (loss, correct, count)``; default
        :func:`batch_loss`.
    device : torch.device or str, optional
        Default :func:`get_device`.
    progress : bool, optional
        Show a progress bar; default: when writing to a terminal. One line per
        epoch is always printed (``verbose=True``).
    verbose : bool
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler=None,
        *,
        pad_idx: int | None = 0,
        label_smoothing: float = 0.0,
        grad_clip: float | None = None,
        patience: int | None = None,
        checkpoint: str | Path | None = None,
        loss_fn: Callable | None = None,
        device: torch.device | str | None = None,
        progress: bool | None = None,
        verbose: bool = True,
    ) -> None:
        self.device = get_device() if device is None else torch.device(device)
        self.model = model.to(self.device)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.pad_idx, self.label_smoothing, self.grad_clip = pad_idx, label_smoothing, grad_clip
        self.patience = patience
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.loss_fn = loss_fn
        self.progress = sys.stdout.isatty() if progress is None else progress
        self.verbose = verbose
        self.history: list[dict[str, float]] = []
        self._best: tuple[float, dict] | None = None
        self._best_epoch = 0
        self._bad_epochs = 0

    # -- one pass -----------------------------------------------------------------
    def _loss(self, batch) -> tuple[Tensor, int, int]:
        batch = tuple(t.to(self.device) for t in batch)
        if self.loss_fn is not None:
            return self.loss_fn(self.model, batch)
        return batch_loss(
            self.model, batch, pad_idx=self.pad_idx, label_smoothing=self.label_smoothing
        )

    def _run(self, loader: Iterable, train: bool, label: str) -> dict[str, float]:
        self.model.train(train)
        total, correct, count, batches = 0.0, 0, 0, 0
        n = len(loader) if hasattr(loader, "__len__") else None
        with torch.set_grad_enabled(train):
            for i, batch in enumerate(loader):
                loss, c, k = self._loss(batch)
                if train:
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.grad_clip is not None:
                        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
                    self.optimizer.step()
                    if self.scheduler is not None:
                        self.scheduler.step()
                total, correct, count, batches = (
                    total + loss.item(),
                    correct + c,
                    count + k,
                    batches + 1,
                )
                if self.progress and n:
                    bar = "#" * int(20 * (i + 1) / n)
                    print(f"\r{label} [{bar:<20}] {i + 1}/{n} loss {loss.item():.4f}", end="")
        if self.progress and n:
            print("\r" + " " * 60 + "\r", end="")
        return {"loss": total / max(batches, 1), "accuracy": correct / max(count, 1)}

    def evaluate(self, loader: Iterable) -> dict[str, float]:
        """Mean loss and accuracy over ``loader``, without training."""
        return self._run(loader, train=False, label="eval")

    def fit(self, train_loader: Iterable, val_loader: Iterable | None = None, epochs: int = 10):
        """Train for ``epochs`` more epochs (continuing the history); returns the history.

        Returns
        -------
        list of dict
            One entry per epoch: ``epoch``, ``loss``, ``accuracy``, ``val_loss``,
            ``val_accuracy`` (with a validation set), ``lr`` and ``time``.
        """
        check_positive_int(epochs, "epochs")
        for _ in range(epochs):
            start = time.perf_counter()
            epoch = len(self.history) + 1
            row: dict[str, float] = {"epoch": epoch}
            row.update(self._run(train_loader, train=True, label=f"epoch {epoch}"))
            if val_loader is not None:
                val = self.evaluate(val_loader)
                row.update({"val_loss": val["loss"], "val_accuracy": val["accuracy"]})
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            row["time"] = time.perf_counter() - start
            self.history.append(row)
            if self.verbose:
                print(_format_row(row))
            stop = self._early_stopping(row)
            if self.checkpoint is not None:
                self.save(self.checkpoint)
            if stop:
                if self.verbose:
                    print(f"early stopping after epoch {epoch}")
                break
        if self._bad_epochs and self._best is not None:
            if self.verbose:
                print(f"restoring the weights of the best epoch ({self._best_epoch})")
            self.model.load_state_dict(self._best[1])
            self._bad_epochs = 0
        return self.history

    def _early_stopping(self, row: dict[str, float]) -> bool:
        if self.patience is None or "val_loss" not in row:
            return False
        if self._best is None or row["val_loss"] < self._best[0]:
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self._best, self._bad_epochs = (row["val_loss"], state), 0
            self._best_epoch = int(row["epoch"])
            return False
        self._bad_epochs += 1
        return self._bad_epochs >= self.patience

    # -- checkpoints ----------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Save everything needed to resume exactly: weights, optimizer,
        scheduler, history and the random number generators' states."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "history": self.history,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }
        torch.save(state, path)

    def load(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save`; :meth:`fit` then continues."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.history = list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])


def _format_row(row: dict[str, float]) -> str:
    parts = [
        f"epoch {int(row['epoch']):3d}",
        f"loss {row['loss']:.4f}",
        f"acc {row['accuracy']:.3f}",
    ]
    if "val_loss" in row:
        parts += [f"val_loss {row['val_loss']:.4f}", f"val_acc {row['val_accuracy']:.3f}"]
    parts.append(f"{row['time']:.1f}s")
    return " | ".join(parts)


def train_model(
    model: nn.Module, dataloader: Iterable, optimizer: torch.optim.Optimizer, num_epochs: int
) -> list[dict[str, float]]:
    """The seed's training loop: ``num_epochs`` epochs over ``dataloader``.

    A thin wrapper around :class:`Trainer` (padding id 0, no validation).

    Returns
    -------
    list of dict
        Per-epoch ``loss``, ``accuracy``, ``lr`` and ``time``.
    """
    device = next(model.parameters()).device
    trainer = Trainer(model, optimizer, device=device, progress=False)
    return trainer.fit(dataloader, epochs=num_epochs)
