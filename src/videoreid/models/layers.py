"""Small shared blocks used by several models."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def fold_time(x: Tensor) -> Tensor:
    """``(B, T, *rest)`` → ``(B·T, *rest)`` so 2D layers see frames as a batch."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def unfold_time(x: Tensor, batch: int) -> Tensor:
    """``(B·T, *rest)`` → ``(B, T, *rest)``; the inverse of :func:`fold_time`."""
    return x.reshape(batch, x.shape[0] // batch, *x.shape[1:])


def spatial_softmax(logits: Tensor) -> Tensor:
    """Softmax over the last two (spatial) dims: ``(..., H, W)`` → same shape, sums to 1."""
    shape = logits.shape
    return torch.softmax(logits.flatten(-2), dim=-1).reshape(shape)


def masked_mean(x: Tensor, mask: Tensor | None, dim: int = 1) -> Tensor:
    """Mean over ``dim`` counting only positions where ``mask`` is true.

    Args:
        x: ``(B, T, ...)`` values.
        mask: ``(B, T)`` bool (``True`` = real frame) or ``None`` for a plain mean.
    """
    if mask is None:
        return x.mean(dim)
    m = mask.to(x.dtype).reshape(*mask.shape, *([1] * (x.dim() - mask.dim())))
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


class BNNeck(nn.Module):
    """Batch-norm bottleneck (Luo et al. 2019): BN without shift before the classifier.

    The metric loss acts on the feature before BN, the classifier and retrieval on the one
    after it.

    Args:
        dim: feature size ``D``.
        num_classes: classifier outputs; 0 for none.
    """

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False) if num_classes > 0 else None
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(B, D)`` → (BN feature ``(B, D)``, logits ``(B, num_classes)`` or ``None``)."""
        bn = self.bn(feat)
        logits = self.classifier(bn) if self.classifier is not None and self.training else None
        return bn, logits
