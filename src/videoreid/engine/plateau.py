"""Plateau schedule: drop the learning rate when the training loss stops improving.

AlignNet (Rambhatla & Jones 2019, sec. 4.2): "the learning rate is dropped whenever the
training loss saturates". ``schedule.name: plateau`` multiplies the learning rate by
``gamma`` whenever the epoch's mean training loss (``schedule.monitor``, default
``loss/total``) has not improved for ``schedule.patience`` epochs in a row, never below
``schedule.min_factor`` × the base rate (``0`` = no floor).

Improvement: ``loss < best × (1 − threshold)`` (relative, like torch's
``ReduceLROnPlateau(threshold_mode="rel")``). After a drop the count of epochs without
improvement restarts at 0 and ``best`` is kept. Unlike torch's ``ReduceLROnPlateau``, which
drops after ``patience + 1`` bad epochs, ``patience = N`` here drops after N: "not improved
for N epochs". Warm-up (``warmup_epochs``) multiplies as in the other schedules.

The state (best loss, epochs without improvement, number of drops) is saved in the
checkpoint, so a resumed run drops at the same epochs as an uninterrupted one. Under DDP the
monitored loss is the mean over ranks (the trainer all-reduces it), so every rank decides
alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from videoreid.engine.hooks import LRScheduleHook

log = logging.getLogger(__name__)

__all__ = ["PlateauTracker", "PlateauLRHook"]


class PlateauTracker:
    """Counts drops of a monitored value that stops improving.

    Args:
        patience: epochs without improvement that trigger a drop (≥ 1).
        threshold: relative improvement needed to count as better (≥ 0).
        gamma: factor per drop, in (0, 1).
        min_factor: the factor never goes below this (0: no floor).
    """

    def __init__(self, patience: int = 10, threshold: float = 1e-4, gamma: float = 0.1,
                 min_factor: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"plateau schedule: patience must be >= 1, got {patience}")
        if threshold < 0:
            raise ValueError(f"plateau schedule: threshold must be >= 0, got {threshold}")
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"plateau schedule: gamma must be in (0, 1), got {gamma}")
        self.patience = int(patience)
        self.threshold = float(threshold)
        self.gamma = float(gamma)
        self.min_factor = float(min_factor)
        self.best = math.inf
        self.bad_epochs = 0
        self.drops = 0

    @property
    def factor(self) -> float:
        return max(self.gamma ** self.drops, self.min_factor)

    def step(self, value: float) -> bool:
        """Record one epoch's value; returns True when this epoch triggers a drop."""
        if not math.isfinite(value):
            raise ValueError(f"plateau schedule: monitored value is {value}")
        if value < self.best * (1.0 - self.threshold) if self.best > 0 else value < self.best:
            self.best = float(value)
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs < self.patience:
            return False
        self.bad_epochs = 0
        if self.factor <= self.min_factor:
            return False  # at the floor: nothing left to drop
        self.drops += 1
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "drops": self.drops}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.drops = int(state["drops"])


class PlateauLRHook(LRScheduleHook):
    """``lr = base_lr × warm-up × gamma^drops``, drops decided after every epoch.

    Args:
        monitor: key of ``trainer.epoch_log`` to watch (``loss/total``, ``loss/ce`` ...).
        patience, threshold, gamma, min_factor: see :class:`PlateauTracker`.
        warmup_epochs, warmup_factor: linear warm-up as in :func:`~videoreid.engine.hooks.lr_factor`.
    """

    def __init__(self, monitor: str = "loss/total", patience: int = 10,
                 threshold: float = 1e-4, gamma: float = 0.1, min_factor: float = 0.0,
                 warmup_epochs: float = 0.0, warmup_factor: float = 0.01) -> None:
        super().__init__(name="constant", warmup_epochs=warmup_epochs,
                         warmup_factor=warmup_factor)
        self.monitor = monitor
        self.tracker = PlateauTracker(patience, threshold, gamma, min_factor)

    @property
    def state_key(self) -> str:
        return "LRScheduleHook"  # one schedule per run, whichever its kind

    def factor(self) -> float:
        return super().factor() * self.tracker.factor

    def after_epoch(self) -> None:
        super().after_epoch()
        t = self.trainer
        if self.monitor not in t.epoch_log:
            raise KeyError(f"schedule.monitor: {self.monitor!r} is not logged; logged values: "
                           f"{sorted(k for k in t.epoch_log if k.startswith('loss/'))}")
        if self.tracker.step(float(t.epoch_log[self.monitor])):
            log.info("epoch %d: %s has not improved for %d epochs; learning rate × %g "
                     "(now × %g of the base rate)", t.epoch + 1, self.monitor,
                     self.tracker.patience, self.tracker.gamma, self.tracker.factor)
        t.epoch_log["lr_drops"] = self.tracker.drops

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "plateau": self.tracker.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "plateau" not in state:
            raise ValueError("resuming a plateau schedule from a checkpoint of another schedule "
                             "(no plateau state saved)")
        self.tracker.load_state_dict(state["plateau"])
