"""Trainer hooks (detectron2-style) for everything around the optimisation step.

The trainer itself only runs ``forward → objective → backward → step``. Schedules, staged
freezing, checkpoints, evaluation and logging are hooks, called in list order at::

    before_train
      for each epoch:  before_epoch
        for each step: before_step → step → after_step
      after_epoch
    after_train          (only when training completes)

Hooks that carry state across a resume implement ``state_dict``/``load_state_dict``; the
trainer stores them in the checkpoint under ``hooks/<state_key>``.

Order matters in ``after_epoch``: put :class:`CheckpointHook` LAST so that the checkpoint
contains this epoch's metrics and log rows, and the RNG state it captures is the one the
next epoch starts from (which is what makes resume exact).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from videoreid.engine.checkpoint import CheckpointManager, preserve_rng
from videoreid.engine.distributed import barrier
from videoreid.utils.io import atomic_write_text

if TYPE_CHECKING:
    from videoreid.engine.trainer import Trainer

log = logging.getLogger(__name__)

__all__ = [
    "HookBase",
    "lr_factor",
    "LRScheduleHook",
    "FreezeSpec",
    "ParamFreezeHook",
    "CheckpointHook",
    "PreEvalCheckpointHook",
    "EvalHook",
    "CSVLogHook",
    "TensorBoardHook",
]


class HookBase:
    """Base class: override any of the stage methods; ``self.trainer`` is set on register."""

    trainer: Trainer

    @property
    def state_key(self) -> str:
        return type(self).__name__

    def before_train(self) -> None: ...

    def before_epoch(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...

    def after_epoch(self) -> None: ...

    def after_train(self) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


# ------------------------------------------------------------------------- LR schedule


def lr_factor(
    epoch: float,
    *,
    name: str = "constant",
    epochs: int = 1,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    step_size: int = 1,
    warmup_epochs: float = 0.0,
    warmup_factor: float = 0.01,
    min_factor: float = 0.0,
) -> float:
    """Multiplier of the base learning rate at fractional epoch ``epoch`` (0-based).

    ``step``: ``gamma ** floor(epoch / step_size)``; ``multistep``: ``gamma ** (number of
    milestones <= epoch)``; ``cosine``: from 1 to ``min_factor`` over ``epochs``;
    ``constant``: 1. Warm-up multiplies by a linear ramp from ``warmup_factor`` at epoch 0 to
    1 at ``warmup_epochs`` (the decay steps use whole epochs, the warm-up and cosine the
    fractional epoch, so both are smooth within an epoch).
    """
    if name == "constant":
        f = 1.0
    elif name == "step":
        f = gamma ** math.floor(epoch / max(1, step_size))
    elif name == "multistep":
        f = gamma ** sum(1 for m in milestones if math.floor(epoch) >= m)
    elif name == "cosine":
        t = min(1.0, epoch / max(1, epochs))
        f = min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
    else:
        raise ValueError(f"unknown schedule {name!r}; choose constant, step, multistep, cosine")
    if warmup_epochs > 0 and epoch < warmup_epochs:
        alpha = epoch / warmup_epochs
        f *= warmup_factor * (1.0 - alpha) + alpha
    return f


class LRScheduleHook(HookBase):
    """Set every param group's lr to ``base_lr × lr_factor(progress)`` before each step.

    Each optimiser param group must carry ``base_lr`` (the builder sets it to
    ``optim.lr × lr_mult``). The schedule is a pure function of training progress, so
    resuming needs no state beyond the epoch/iteration counters the trainer restores.

    Args:
        schedule: keyword arguments of :func:`lr_factor` (``name``, ``milestones``, ...).
    """

    def __init__(self, **schedule: Any) -> None:
        self.schedule = schedule
        lr_factor(0.0, **schedule)  # validate now, not at the first step

    def factor(self) -> float:
        t = self.trainer
        progress = t.epoch + t.inner_iter / max(1, t.iters_per_epoch)
        return lr_factor(progress, epochs=t.max_epochs, **self.schedule)

    def before_step(self) -> None:
        f = self.factor()
        for group in self.trainer.optimizer.param_groups:
            group["lr"] = group.get("base_lr", group["lr"]) * f

    def after_epoch(self) -> None:
        self.trainer.epoch_log["lr"] = self.trainer.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": dict(self.schedule)}


# --------------------------------------------------------------------------- freezing


class FreezeSpec:
    """Parameters under a name prefix, frozen always or for the first epochs.

    Args:
        prefix: qualified-name prefix (``"backbone."``); matching is on the unwrapped model.
        frozen: frozen for the whole run.
        freeze_epochs: frozen while ``epoch < freeze_epochs``.
        freeze_bn: also keep BatchNorm layers under the prefix in eval mode while frozen
            (their running statistics are part of what "fixed CNN" means).
    """

    def __init__(self, prefix: str, frozen: bool = False, freeze_epochs: int = 0,
                 freeze_bn: bool = True) -> None:
        self.prefix = prefix
        self.frozen = frozen
        self.freeze_epochs = int(freeze_epochs)
        self.freeze_bn = freeze_bn

    def is_frozen(self, epoch: int) -> bool:
        return self.frozen or epoch < self.freeze_epochs

    def __repr__(self) -> str:
        return (f"FreezeSpec({self.prefix!r}, frozen={self.frozen}, "
                f"freeze_epochs={self.freeze_epochs})")


def _matches(name: str, prefix: str) -> bool:
    return name.startswith(prefix)


class ParamFreezeHook(HookBase):
    """Apply :class:`FreezeSpec` s at the start of every epoch (STAN's staged training).

    Frozen parameters get ``requires_grad=False`` (no gradient, so Adam/SGD skip them and
    their optimiser state is untouched); when a spec's epochs run out they train again.
    Only parameters that were trainable when training started are ever toggled, so a
    parameter a model fixes on purpose (e.g. a BNNeck shift) stays fixed.

    BatchNorm layers under a frozen prefix are put in eval mode (running statistics fixed,
    normalisation by them) before every step — not only at the epoch start, because the
    trainer's ``model.train()`` and any hook that evaluates and restores training mode would
    otherwise switch them back; when the spec unfreezes they follow the model's mode again.
    """

    def __init__(self, specs: Sequence[FreezeSpec]) -> None:
        self.specs = list(specs)
        self._trainable: set[str] = set()
        self._bns: list[list[nn.Module]] = []

    def before_train(self) -> None:
        params = list(self.trainer.module.named_parameters())
        self._trainable = {n for n, p in params if p.requires_grad}
        names = [n for n, _ in params]
        for spec in self.specs:
            if not any(_matches(n, spec.prefix) for n in names):
                raise ValueError(
                    f"param group prefix {spec.prefix!r} matches no parameter; "
                    f"top-level modules: {sorted({n.split('.')[0] for n in names})}"
                )
        self._bns = [
            [m for name, m in self.trainer.module.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and _matches(name + ".", spec.prefix)]
            for spec in self.specs
        ]

    def _apply_bn_modes(self) -> None:
        training = self.trainer.module.training
        for spec, bns in zip(self.specs, self._bns, strict=True):
            if not spec.freeze_bn:
                continue
            frozen = spec.is_frozen(self.trainer.epoch)
            for m in bns:
                m.train(training and not frozen)

    def before_epoch(self) -> None:
        epoch = self.trainer.epoch
        module = self.trainer.module
        for spec in self.specs:
            frozen = spec.is_frozen(epoch)
            for name, p in module.named_parameters():
                if name in self._trainable and _matches(name, spec.prefix):
                    p.requires_grad_(not frozen)
            if spec.freeze_epochs and epoch == spec.freeze_epochs:
                log.info("epoch %d: unfreezing parameters under %r", epoch + 1, spec.prefix)
        self._apply_bn_modes()

    def before_step(self) -> None:
        self._apply_bn_modes()


# ------------------------------------------------------------------------ checkpoints


class CheckpointHook(HookBase):
    """Save ``trainer.state_dict()`` every ``every`` epochs and after the last one.

    Only the main process writes. Place this hook last (see the module docstring).
    """

    def __init__(self, manager: CheckpointManager, every: int = 1) -> None:
        self.manager = manager
        self.every = max(1, int(every))
        self.last_path: Path | None = None

    def after_epoch(self) -> None:
        t = self.trainer
        done = t.epoch + 1
        if done % self.every == 0 or done == t.max_epochs:
            if t.dist.is_main:
                self.last_path = self.manager.save(done, t.state_dict())
                log.info("saved checkpoint %s", self.last_path)
            barrier()


class PreEvalCheckpointHook(HookBase):
    """Save the epoch's checkpoint BEFORE evaluation, so a failing evaluation loses no epoch.

    Place it right before :class:`EvalHook`. At epochs where both a checkpoint
    (``every``, and the last epoch) and an evaluation (``eval_every``, and the last epoch) are
    due, it writes the checkpoint with the epoch's log row so far under
    ``"pending_epoch_log"``. Resuming from such a file (the evaluation or anything after it
    failed or was killed) first runs the hooks after this one for that epoch — the
    evaluation, the log row, the final checkpoint — then continues; the final
    :class:`CheckpointHook` rewrites the same file complete. ``resume_point`` marks this hook
    for the trainer.
    """

    resume_point = True

    def __init__(self, manager: CheckpointManager, every: int = 1, eval_every: int = 0) -> None:
        self.manager = manager
        self.every = max(1, int(every))
        self.eval_every = int(eval_every)

    def after_epoch(self) -> None:
        t = self.trainer
        done = t.epoch + 1
        last = done == t.max_epochs
        eval_due = last or (self.eval_every > 0 and done % self.eval_every == 0)
        if eval_due and (last or done % self.every == 0):
            if t.dist.is_main:
                state = t.state_dict()
                state["pending_epoch_log"] = dict(t.epoch_log)
                path = self.manager.save(done, state)
                log.info("saved checkpoint %s (before evaluation)", path)
            barrier()


# ------------------------------------------------------------------------- evaluation


class EvalHook(HookBase):
    """Call ``eval_fn(trainer) -> {name: value}`` every ``every`` epochs and after the last.

    Runs on the main process only (the others wait), with the global RNG states restored
    afterwards so evaluation frequency never changes the training trajectory. Metrics are
    added to ``trainer.epoch_log`` (so they reach the CSV/TensorBoard) and kept in
    ``trainer.metrics``. Names should say dataset, split and protocol, e.g.
    ``"mars/split0/market/mAP"``.

    Args:
        every: period in epochs; 0 = only after the last epoch.
        eval_fn: the evaluation; gets the trainer (use ``trainer.module`` in eval mode).
    """

    def __init__(self, every: int, eval_fn: Callable[[Trainer], Mapping[str, float]]) -> None:
        self.every = int(every)
        self.eval_fn = eval_fn

    def after_epoch(self) -> None:
        t = self.trainer
        done = t.epoch + 1
        due = done == t.max_epochs or (self.every > 0 and done % self.every == 0)
        if not due:
            return
        if t.dist.is_main:
            was_training = t.module.training
            t.module.eval()
            start = time.perf_counter()
            with preserve_rng():
                metrics = dict(self.eval_fn(t))
            t.module.train(was_training)
            log.info("epoch %d evaluation (%.1fs): %s", done, time.perf_counter() - start,
                     ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()))
            t.metrics = metrics
            t.epoch_log.update(metrics)
        barrier()


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------- logging


class CSVLogHook(HookBase):
    """One row per epoch (``trainer.epoch_log``) in a CSV file, rewritten atomically.

    Columns are the union over rows in order of first appearance (evaluation columns appear
    at the epochs that evaluate; other rows leave them empty). The rows are part of the
    checkpoint, so a resumed run continues the same file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def after_epoch(self) -> None:
        t = self.trainer
        if not t.dist.is_main:
            return
        self.rows.append(dict(t.epoch_log))
        self.write()

    def write(self) -> None:
        columns: list[str] = []
        for row in self.rows:
            columns.extend(k for k in row if k not in columns)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        atomic_write_text(self.path, buf.getvalue())

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rows = [dict(r) for r in state.get("rows", [])]


def _csv_value(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


class TensorBoardHook(HookBase):
    """Scalars to TensorBoard when ``tensorboard`` is installed (silently off otherwise).

    Per step: the loss terms and lr every ``every_steps`` steps; per epoch: ``epoch_log``.
    """

    def __init__(self, log_dir: str | Path, every_steps: int = 20) -> None:
        self.log_dir = Path(log_dir)
        self.every_steps = max(1, int(every_steps))
        self.writer = None

    @staticmethod
    def available() -> bool:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            return False
        return True

    def before_train(self) -> None:
        if not self.trainer.dist.is_main or not self.available():
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.log_dir))

    def after_step(self) -> None:
        t = self.trainer
        if self.writer is None or t.iter % self.every_steps:
            return
        for k, v in t.step_log.items():
            self.writer.add_scalar(f"train/{k}", v, t.iter)

    def after_epoch(self) -> None:
        if self.writer is None:
            return
        t = self.trainer
        for k, v in t.epoch_log.items():
            if isinstance(v, (int, float)) and k != "epoch":
                self.writer.add_scalar(f"epoch/{k}", v, t.epoch + 1)
        self.writer.flush()

    def after_train(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
