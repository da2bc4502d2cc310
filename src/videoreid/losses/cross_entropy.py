"""Identity cross-entropy on clip logits and on frame logits (RGSA/RGTR, eq. 11).

Every loss term in :mod:`videoreid.losses` is an ``nn.Module`` with ``kind`` (its name in a
loss spec), ``name`` (its key in the objective's output), ``weight`` and
``forward(out: ReIDOutput, batch: dict) -> Tensor`` (a scalar).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from videoreid.models.output import ReIDOutput


def require(value: Tensor | None, what: str, term: str) -> Tensor:
    """Return ``value`` or raise an error saying which model output the term needs."""
    if value is None:
        raise ValueError(
            f"loss {term!r} needs out.{what}, but the model returned None "
            "(models return logits only in training mode)"
        )
    return value


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy on ``out.logits (B, C)`` against ``batch["pids"] (B,)``.

    Args:
        weight: factor in the objective's total.
        label_smoothing: ε of Szegedy et al. 2016: the target is ``(1-ε)·onehot + ε/C``.
    """

    kind = "ce"

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.name = self.kind
        self.weight = float(weight)
        self.label_smoothing = float(label_smoothing)

    def forward(self, out: ReIDOutput, batch: dict[str, Tensor]) -> Tensor:
        logits = require(out.logits, "logits", self.kind)
        return F.cross_entropy(logits.float(), batch["pids"], label_smoothing=self.label_smoothing)


class FrameCrossEntropyLoss(nn.Module):
    """Cross-entropy on ``out.frame_logits (B, T, C)``, each frame labelled with its clip's pid.

    Padded frames (``batch["frame_mask"]`` false) are left out of the mean.

    Args:
        weight: factor in the objective's total.
        label_smoothing: as in :class:`CrossEntropyLoss`.
    """

    kind = "frame_ce"

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.name = self.kind
        self.weight = float(weight)
        self.label_smoothing = float(label_smoothing)

    def forward(self, out: ReIDOutput, batch: dict[str, Tensor]) -> Tensor:
        logits = require(out.frame_logits, "frame_logits", self.kind)
        b, t, c = logits.shape
        labels = batch["pids"][:, None].expand(b, t)
        losses = F.cross_entropy(
            logits.reshape(b * t, c).float(),
            labels.reshape(-1),
            label_smoothing=self.label_smoothing,
            reduction="none",
        )
        mask = batch.get("frame_mask")
        if mask is None:
            return losses.mean()
        m = mask.reshape(-1).to(losses.dtype)
        return (losses * m).sum() / m.sum().clamp_min(1.0)
