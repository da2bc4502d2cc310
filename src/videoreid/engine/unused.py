"""Parameters the objective never reaches, found by one probe step (for DDP).

``DistributedDataParallel`` expects a gradient for every parameter that requires one, at
every step; a parameter outside the loss graph — a classifier head when the config trains
with OIM or a metric loss only, RGSA/RGTR's frame classifier without ``frame_ce`` — makes the
second step fail ("Expected to have finished reduction in the prior iteration"). DDP's own
remedy, ``find_unused_parameters=True``, walks the autograd graph at every step.

Instead, before wrapping, :func:`find_unused_parameters` runs one forward + backward of the
model and objective on a small real training batch, on deep copies (so batch-norm statistics,
an OIM table and the RNG streams of the run are untouched), and lists the parameters left
without a gradient. :func:`exclude_parameters` sets ``requires_grad=False`` on them: DDP
then ignores them, and nothing changes numerically (optimisers skip parameters without a
gradient anyway, in one process as under DDP). Which parameters are excluded is logged.

Parameters that are used only in some epochs (``freeze_epochs``) still need DDP's
``find_unused_parameters`` fallback; the trainer builder logs when it uses it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from videoreid.engine.checkpoint import preserve_rng
from videoreid.engine.trainer import move_to_device, outputs_to_float

log = logging.getLogger(__name__)

__all__ = ["probe_indices", "find_unused_parameters", "exclude_parameters"]


def probe_indices(pids: Sequence[int], identities: int = 2, per_identity: int = 2) -> list[int]:
    """Dataset indices of a small P×K-like batch: the first identities with most items.

    Args:
        pids: identity of each dataset item.
        identities: how many identities (2: enough for batch statistics and in-batch mining).
        per_identity: items per identity (fewer when an identity has fewer).
    """
    pids_arr = np.asarray(pids)
    ids, counts = np.unique(pids_arr, return_counts=True)
    chosen = ids[np.argsort(-counts, kind="stable")[:identities]]
    out: list[int] = []
    for pid in chosen:
        out.extend(int(i) for i in np.flatnonzero(pids_arr == pid)[:per_identity])
    return out


def find_unused_parameters(
    model: nn.Module,
    objective: nn.Module,
    batch: Mapping[str, Any],
    device: torch.device | str = "cpu",
    batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> list[str]:
    """Names of ``model``'s trainable parameters that get no gradient from ``objective``.

    Args:
        model: in training mode it must accept ``batch`` (``images (B, T, 3, H, W)`` ...).
        objective: ``forward(out, batch) -> {"total": ...}``.
        batch: one training batch (B ≥ 2 for batch statistics).
        device: where the probe runs.
        batch_transform: what the trainer applies to a batch on the device (e.g.
            ``ClipTransform.finish_batch``: normalisation of uint8 clips).
    Returns:
        qualified names, in ``named_parameters`` order.
    """
    probe = copy.deepcopy(model).to(device).train()
    probe_objective = copy.deepcopy(objective).to(device).train()
    batch = move_to_device(batch, torch.device(device))
    with preserve_rng():
        if batch_transform is not None:
            batch = batch_transform(batch)
        losses = probe_objective(outputs_to_float(probe(batch)), batch)
        losses["total"].backward()
    return [n for n, p in probe.named_parameters() if p.requires_grad and p.grad is None]


def exclude_parameters(model: nn.Module, names: Sequence[str]) -> None:
    """``requires_grad=False`` on the named parameters of ``model``, and say so."""
    if not names:
        return
    wanted = set(names)
    for n, p in model.named_parameters():
        if n in wanted:
            p.requires_grad_(False)
    log.info("%d parameter tensors receive no gradient from the objective and are left out of "
             "training (DDP needs every trained parameter in the loss graph): %s",
             len(wanted), ", ".join(names))
