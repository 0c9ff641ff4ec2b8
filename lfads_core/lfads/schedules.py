"""Training schedules: linear ramps of the loss weights and the plateau learning-rate rule."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ramp_weight", "PlateauScheduler"]


def ramp_weight(epoch: int, start: int, length: int) -> float:
    """Linear ramp: 0 before ``start``, then rising to 1 over ``length`` epochs."""
    if epoch < start:
        return 0.0
    if length <= 0:
        return 1.0
    return min(1.0, (epoch - start) / length)


class PlateauScheduler:
    """Multiply the LR by ``factor`` after more than ``patience`` epochs without a
    relative improvement of ``threshold`` in the monitored value; floor ``min_lr``.

    The first value stepped sets the reference (``best``); a later value counts as an
    improvement when it is below ``best * (1 - threshold)`` (for a positive ``best``) and
    then becomes the reference.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float, patience: int, min_lr: float,
                 threshold: float = 1e-4):
        self.optimizer = optimizer
        self.factor, self.patience, self.min_lr, self.threshold = factor, patience, min_lr, threshold
        self.best: float | None = None
        self.bad_epochs = 0

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def set_lr(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = max(lr, self.min_lr)

    def step(self, value: float) -> None:
        if self.best is None or value < self.best - self.threshold * abs(self.best):
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.set_lr(self.lr * self.factor)
                self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.best, self.bad_epochs = d["best"], d["bad_epochs"]
