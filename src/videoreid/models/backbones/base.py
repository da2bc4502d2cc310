"""The backbone contract every method model relies on (docs/architecture.md, "Backbone contract").

Attention modules are inserted *between* stages by the method models; backbones never
contain method-specific code. Stage names are ``"stem"``, ``"layer1"`` … ``"layer4"``.

Activation checkpointing (:meth:`Backbone.set_activation_checkpointing`): the chosen stages
keep only their input during the forward pass and recompute their activations in the
backward pass (``torch.utils.checkpoint``, non-reentrant), trading about one extra forward
of those stages for their activation memory. Gradients are those of the plain forward (the
recomputation is the same computation under the same RNG and autocast state). BatchNorm
running statistics are updated once per step, as without checkpointing: during the
recomputation every BatchNorm of the stage runs with ``momentum = 0`` (the running averages
keep their value exactly) and its ``num_batches_tracked`` is restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

STAGES: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class FeatureInfo:
    """Output of one stage: channel count and total stride w.r.t. the input image."""

    channels: int
    stride: int


@contextlib.contextmanager
def _running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers of ``module`` normalise with batch statistics but leave their running
    statistics (and ``num_batches_tracked``) exactly as they were."""
    bns = [m for m in module.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
           and m.track_running_stats]
    saved = [(m, m.momentum, None if m.num_batches_tracked is None
              else m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged, bit for bit
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


class Backbone(nn.Module):
    """Base class: subclasses set ``feature_info`` and one ``nn.Module`` attribute per stage.

    Attributes set by the builders: ``arch`` (the builder's name, e.g. ``"resnet50"``) and
    ``pretrained_weights`` (what initialised it: see ``models.backbones.weights``).
    """

    feature_info: dict[str, FeatureInfo]
    arch: str = "custom"
    pretrained_weights: dict[str, Any] | None = None
    checkpoint_stages: frozenset[str] = frozenset()

    def set_activation_checkpointing(self, stages: bool | Sequence[str] = True) -> None:
        """Recompute the activations of ``stages`` in the backward pass (``True``: all five,
        ``False``/``[]``: none). Applies in training mode with gradients enabled only."""
        if stages is True:
            chosen = STAGES
        elif stages is False or stages is None:
            chosen = ()
        else:
            chosen = tuple(stages)
        unknown = [n for n in chosen if n not in STAGES]
        if unknown:
            raise ValueError(f"unknown stages {unknown} for activation checkpointing; "
                             f"valid: {list(STAGES)}")
        self.checkpoint_stages = frozenset(chosen)

    def _run_stage(self, name: str, x: Tensor) -> Tensor:
        stage = self.stage(name)
        if name in self.checkpoint_stages and self.training and torch.is_grad_enabled():
            return checkpoint(stage, x, use_reentrant=False,
                              context_fn=lambda: (contextlib.nullcontext(),
                                                  _running_stats_frozen(stage)))
        return stage(x)

    @property
    def out_channels(self) -> int:
        return self.feature_info["layer4"].channels

    def stage(self, name: str) -> nn.Module:
        return getattr(self, name)

    def forward_stages(self, x: Tensor, start: str | None = None, end: str | None = None) -> Tensor:
        """Run stages ``start``..``end`` inclusive (defaults: first and last).

        Args:
            x: ``(N, C, H, W)`` input of stage ``start`` (an image for ``"stem"``).
        Returns:
            ``(N, C_end, H / s, W / s)`` output of stage ``end``.
        """
        i = STAGES.index(start) if start else 0
        j = STAGES.index(end) if end else len(STAGES) - 1
        if i > j:
            raise ValueError(f"start stage {start!r} comes after end stage {end!r}")
        for name in STAGES[i : j + 1]:
            x = self._run_stage(name, x)
        return x

    def forward_intermediates(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """Run all stages up to the last requested one and return the requested outputs."""
        unknown = [n for n in names if n not in STAGES]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; valid: {list(STAGES)}")
        last = max(STAGES.index(n) for n in names)
        out: dict[str, Tensor] = {}
        for name in STAGES[: last + 1]:
            x = self._run_stage(name, x)
            if name in names:
                out[name] = x
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_stages(x)
