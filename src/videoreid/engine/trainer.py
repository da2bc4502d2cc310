"""The training loop: ``forward → objective → backward → (clip) → step``, plus hooks.

The trainer knows only the model, the data loader, the optimiser, the objective and its
hooks (see :mod:`videoreid.engine.hooks` for schedules, freezing, checkpoints, evaluation and
logging). Everything else — what the data is, how evaluation works — is someone else's job.

Epochs and data passes. An epoch is ``iters_per_epoch`` steps (default: one pass of the
loader). Every epoch starts a fresh pass of the loader, and every pass gets its own number
``data_pass`` handed to ``set_epoch`` of the batch sampler and the dataset; when an epoch
needs more batches than one pass holds, a new pass starts. Because an epoch never continues
a previous epoch's pass, a checkpoint at an epoch boundary needs only the counters and the
RNG states to reproduce the rest of the run exactly.

Exact resume. ``state_dict`` holds model, optimiser, grad scaler, objective (e.g. an OIM
lookup table), hook states, the sampler's own state, the counters and the global RNG states
(python, numpy, torch). :meth:`Trainer.resume` loads them; the RNG states are restored
right before the first resumed epoch. A run interrupted after the checkpoint of epoch e and
resumed from it produces the same weights as an uninterrupted run (tested in
tests/test_trainer.py), provided data loading is deterministic — the clip datasets derive
their randomness from ``(seed, epoch, index)``, not from worker scheduling.

Mixed precision (:mod:`videoreid.engine.amp`): the model runs under autocast; the objective
runs in float32 on float32 copies of the outputs (a triplet distance matrix in bf16 loses the
small differences batch-hard mining depends on).

Non-finite loss: the run stops before the update, writes ``nan_stop.pt`` (the state that
produced the bad loss, for inspection; not used by ``resume=true``) and raises
:class:`NonFiniteLossError` with the loss terms and what to try. Under DDP all ranks agree
on the decision (one all-reduce per step) so none is left waiting.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from videoreid.engine.amp import autocast, make_grad_scaler, resolve_amp
from videoreid.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from videoreid.engine.distributed import (
    DistInfo,
    all_reduce_mean,
    any_across_ranks,
    get_dist_info,
    wrap_ddp,
)
from videoreid.engine.hooks import HookBase
from videoreid.utils.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["Trainer", "NonFiniteLossError", "move_to_device", "outputs_to_float"]


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN/inf; the message names the step, the terms and the checkpoint
    (a :class:`UserError`: the CLI prints it without a traceback)."""


def move_to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a batch dict to ``device`` (non-blocking when pinned); others unchanged."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v
        for k, v in batch.items()
    }


def _float(x: Any) -> Any:
    if isinstance(x, Tensor) and x.is_floating_point() and x.dtype != torch.float32:
        return x.float()
    if isinstance(x, dict):
        return {k: _float(v) for k, v in x.items()}
    return x


def outputs_to_float(out: Any) -> Any:
    """A model output (dataclass such as ``ReIDOutput``) with float tensors in float32."""
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return dataclasses.replace(
            out, **{f.name: _float(getattr(out, f.name)) for f in dataclasses.fields(out)
                    if f.init}
        )
    return _float(out)


class Trainer:
    """A plain epoch-based trainer with hooks.

    Args:
        model: the model; ``forward(batch: dict) -> ReIDOutput``. Wrapped in
            ``DistributedDataParallel`` when a process group is initialised.
        objective: ``forward(out, batch) -> dict[str, Tensor]`` with a ``"total"`` entry.
        optimizer: over the model's (and objective's) trainable parameters; groups may
            carry ``base_lr`` for :class:`~videoreid.engine.hooks.LRScheduleHook`.
        train_loader: iterable of batch dicts (``images (B, T, 3, H, W)``, ``pids (B,)`` ...);
            its ``batch_sampler``/``dataset`` get ``set_epoch(data_pass)`` if they have one.
        device: where model and batches live.
        epochs: total number of epochs.
        iters_per_epoch: steps per epoch; ``None`` = ``len(train_loader)``.
        amp: ``"none"``, ``"bf16"`` or ``"fp16"``.
        grad_clip: max global gradient norm, or ``None``.
        hooks: called in order (see :mod:`videoreid.engine.hooks`).
        run_dir: where ``nan_stop.pt`` goes (``None``: no NaN checkpoint).
        progress: tqdm bars on the main process (``disable=None`` hides them off a tty).
        find_unused_parameters: passed to DDP (needed when parameters are frozen for some
            epochs only).
        batch_transform: applied to each batch once it is on the device, e.g.
            ``ClipTransform.finish_batch`` (normalisation and photometric augmentation of
            uint8 clips, batched on the device). Default ``"auto"``: the ``finish_batch``
            of ``train_loader.dataset.transform`` when there is one, else nothing.

    Each epoch logs ``data_wait_s`` (time the loop waited for the loader) and
    ``data_wait_frac`` (its share of the epoch): a share near 1 means loading is the
    bottleneck (raise ``data.workers``).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: Any,
        *,
        device: torch.device | str = "cpu",
        epochs: int = 1,
        iters_per_epoch: int | None = None,
        amp: str = "none",
        grad_clip: float | None = None,
        hooks: Sequence[HookBase] = (),
        run_dir: str | Path | None = None,
        progress: bool = True,
        find_unused_parameters: bool = False,
        batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | str | None = "auto",
    ) -> None:
        self.device = torch.device(device)
        self.dist: DistInfo = get_dist_info()
        self.module = model.to(self.device)
        self.model = wrap_ddp(self.module, self.device, find_unused_parameters)
        self.objective = objective.to(self.device)
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.max_epochs = int(epochs)
        if iters_per_epoch is None:
            iters_per_epoch = len(train_loader)
        if iters_per_epoch < 1:
            raise ValueError(
                f"an epoch needs at least one step, got iters_per_epoch={iters_per_epoch} "
                "(is the training set smaller than one P×K batch?)"
            )
        self.iters_per_epoch = int(iters_per_epoch)
        self.amp = resolve_amp(amp, self.device)
        self.scaler = make_grad_scaler(self.amp)
        self.grad_clip = grad_clip
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        if batch_transform == "auto":
            transform = getattr(getattr(train_loader, "dataset", None), "transform", None)
            batch_transform = getattr(transform, "finish_batch", None)
        self.batch_transform = batch_transform
        self.hooks: list[HookBase] = []
        self.register_hooks(hooks)

        # progress counters (``epoch`` is 0-based and is the one running)
        self.start_epoch = 0
        self.epoch = 0
        self.iter = 0  # global step count
        self.inner_iter = 0  # step within the epoch
        self.data_pass = 0
        self.step_log: dict[str, float] = {}
        self.epoch_log: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self._pending_rng: dict[str, Any] | None = None
        self._pending_epoch_log: dict[str, Any] | None = None

    # ---------------------------------------------------------------- hooks

    def register_hooks(self, hooks: Sequence[HookBase]) -> None:
        for h in hooks:
            h.trainer = self
            self.hooks.append(h)

    def _call(self, stage: str) -> None:
        for h in self.hooks:
            getattr(h, stage)()

    # ---------------------------------------------------------------- state

    def state_dict(self, epoch_complete: bool = True) -> dict[str, Any]:
        """Everything needed to continue the run exactly (see module docstring).

        Args:
            epoch_complete: the current epoch has finished (a resume starts at the next
                one). ``False`` for mid-epoch snapshots such as ``nan_stop.pt``.
        """
        state: dict[str, Any] = {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "objective": self.objective.state_dict(),
            "epoch": self.epoch + int(epoch_complete),  # completed epochs: resume starts here
            "epoch_complete": epoch_complete,
            "iter": self.iter,
            "data_pass": self.data_pass,
            "rng": capture_rng_state(),
            "hooks": {h.state_key: h.state_dict() for h in self.hooks},
            "metrics": dict(self.metrics),
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        sampler = getattr(self.train_loader, "batch_sampler", None)
        if sampler is not None and hasattr(sampler, "state_dict"):
            state["sampler"] = sampler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "objective" in state:
            self.objective.load_state_dict(state["objective"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = self.epoch = int(state["epoch"])
        self.iter = int(state["iter"])
        self.data_pass = int(state["data_pass"])
        self.metrics = dict(state.get("metrics", {}))
        hook_states = state.get("hooks", {})
        for h in self.hooks:
            if h.state_key in hook_states:
                h.load_state_dict(hook_states[h.state_key])
        sampler = getattr(self.train_loader, "batch_sampler", None)
        if "sampler" in state and sampler is not None and hasattr(sampler, "load_state_dict"):
            sampler.load_state_dict(state["sampler"])
        self._pending_rng = state.get("rng")
        # saved before this epoch's evaluation (PreEvalCheckpointHook): finish the epoch first
        self._pending_epoch_log = state.get("pending_epoch_log")

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint written by :class:`~videoreid.engine.hooks.CheckpointHook`."""
        state = load_checkpoint(path, map_location=self.device)
        self.load_state_dict(state)
        log.info("resumed from %s at epoch %d (step %d)", path, self.start_epoch, self.iter)

    # ---------------------------------------------------------------- loop

    def train(self) -> dict[str, Any]:
        """Run the remaining epochs; returns the last evaluation metrics (may be empty)."""
        self._call("before_train")
        if self._pending_rng is not None:
            restore_rng_state(self._pending_rng)
            self._pending_rng = None
        if self._pending_epoch_log is not None:
            self._finish_pending_epoch()
        for epoch in range(self.start_epoch, self.max_epochs):
            self.epoch = epoch
            self.epoch_log = {"epoch": epoch + 1}
            self.model.train()
            self._call("before_epoch")
            self.run_epoch()
            self._call("after_epoch")
        self._call("after_train")
        return self.metrics

    def _finish_pending_epoch(self) -> None:
        """Run the ``after_epoch`` hooks after the resume point for the checkpoint's epoch."""
        self.epoch = self.start_epoch - 1
        self.epoch_log = dict(self._pending_epoch_log)
        self._pending_epoch_log = None
        marks = [i for i, h in enumerate(self.hooks) if getattr(h, "resume_point", False)]
        log.info("finishing epoch %d (its checkpoint was written before evaluation)",
                 self.start_epoch)
        for h in self.hooks[marks[-1] + 1 if marks else 0:]:
            h.after_epoch()

    def _new_pass(self) -> Iterator[Any]:
        for owner in (getattr(self.train_loader, "batch_sampler", None),
                      getattr(self.train_loader, "sampler", None),
                      getattr(self.train_loader, "dataset", None)):
            if owner is not None and hasattr(owner, "set_epoch"):
                owner.set_epoch(self.data_pass)
        self.data_pass += 1
        return iter(self.train_loader)

    def run_epoch(self) -> None:
        it = self._new_pass()
        sums: dict[str, float] = {}
        clips = 0
        wait = 0.0
        start = time.perf_counter()
        bar = tqdm(
            total=self.iters_per_epoch,
            desc=f"epoch {self.epoch + 1}/{self.max_epochs}",
            disable=None if (self.progress and self.dist.is_main) else True,
            dynamic_ncols=True,
            leave=False,
        )
        for i in range(self.iters_per_epoch):
            self.inner_iter = i
            t_wait = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                it = self._new_pass()
                batch = next(it)
            wait += time.perf_counter() - t_wait
            self._call("before_step")
            self.run_step(batch)
            self.iter += 1
            self._call("after_step")
            for k, v in self.step_log.items():
                sums[k] = sums.get(k, 0.0) + v
            clips += int(batch["images"].shape[0]) * self.dist.world_size
            elapsed = time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(loss=f"{sums['total'] / (i + 1):.4f}",
                            clips_s=f"{clips / max(elapsed, 1e-9):.1f}")
        bar.close()
        elapsed = time.perf_counter() - start
        if self.dist.enabled:  # log the mean over ranks, not rank 0's local losses
            keys = sorted(sums)
            mean = all_reduce_mean(torch.tensor([sums[k] for k in keys], dtype=torch.float64,
                                                device=self.device))
            sums = dict(zip(keys, mean.tolist(), strict=True))
        self.epoch_log.update({f"loss/{k}": v / self.iters_per_epoch for k, v in sums.items()})
        self.epoch_log["time_s"] = elapsed
        self.epoch_log["clips_per_s"] = clips / max(elapsed, 1e-9)
        self.epoch_log["data_wait_s"] = wait
        self.epoch_log["data_wait_frac"] = wait / max(elapsed, 1e-9)
        if self.dist.is_main:
            log.info("epoch %d/%d: %s, %.1f clips/s, %.1fs", self.epoch + 1, self.max_epochs,
                     ", ".join(f"{k}={v / self.iters_per_epoch:.4f}" for k, v in sums.items()),
                     self.epoch_log["clips_per_s"], elapsed)

    def run_step(self, batch: Mapping[str, Any]) -> None:
        """One optimisation step on ``batch``; fills ``self.step_log``."""
        batch = move_to_device(batch, self.device)
        if self.batch_transform is not None:
            batch = self.batch_transform(batch)
        with autocast(self.amp):
            out = self.model(batch)
        losses = self.objective(outputs_to_float(out), batch)
        total = losses["total"]
        if any_across_ranks(not bool(torch.isfinite(total.detach()).all()), self.device):
            self._stop_non_finite(losses)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            if self.grad_clip:
                self.scaler.unscale_(self.optimizer)
                grad_norm = self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            total.backward()
            if self.grad_clip:
                grad_norm = self._clip()
            self.optimizer.step()
        self.step_log = {k: float(v.detach()) for k, v in losses.items()}
        if self.grad_clip:
            self.step_log["grad_norm"] = float(grad_norm)

    def _clip(self) -> Tensor:
        params = [p for g in self.optimizer.param_groups for p in g["params"]
                  if p.grad is not None]
        return torch.nn.utils.clip_grad_norm_(params, self.grad_clip)

    def _stop_non_finite(self, losses: Mapping[str, Tensor]) -> None:
        terms = ", ".join(f"{k}={float(v.detach()):.6g}" for k, v in losses.items())
        where = (f"epoch {self.epoch + 1}, step {self.inner_iter + 1}/{self.iters_per_epoch} "
                 f"(global step {self.iter + 1})")
        saved = ""
        if self.run_dir is not None and self.dist.is_main:
            path = save_checkpoint(self.run_dir / "nan_stop.pt",
                                   self.state_dict(epoch_complete=False))
            saved = f"; the state before this step is saved in {path}"
        raise NonFiniteLossError(
            f"non-finite loss at {where}: {terms}{saved}. Training stopped. Try a lower "
            "optim.lr, optim.grad_clip, a longer schedule.warmup_epochs, or train.amp=none."
        )
