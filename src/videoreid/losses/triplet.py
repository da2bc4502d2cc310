"""Batch-hard triplet loss (Hermans et al. 2017) and the adaptive weighted triplet loss.

Both act on ``out.metric_feature (B, D)`` with labels ``batch["pids"]`` and Euclidean
distances (not squared). The anchor itself is never its own positive. Anchors with no other
positive or no negative in the batch are left out of the mean (a P×K batch with K ≥ 2 has
none); a batch with no valid anchor gives 0.

Adaptive weighted triplet (Ristani & Tomasi 2018; RGSA/RGTR paper eq. 12–14): for each anchor
``a``, positives get weights ``softmax(D(a, p))`` over its positives (hard = far positives
weigh more), negatives ``softmax(-D(a, n))`` over its negatives, and the loss is
``softplus(Σ w_p D(a,p) − Σ w_n D(a,n))`` averaged over anchors. Choices: eq. 12 writes the
positive set as ``{i | y_i = y}``, which includes the anchor at distance 0; by default we
exclude it (as the hard-mining loss does), since it only shrinks the positive term by the
anchor's share ``1/Σ_p e^{D(a,p)}``; ``anchor_in_positives=True`` keeps it (the literal
reading; an anchor is then valid whenever it has a negative). The weights are not detached
(the equations have no stop-gradient), so the loss also moves the weights themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoreid.models.output import ReIDOutput


def pairwise_distance(x: Tensor) -> Tensor:
    """Euclidean distances ``(N, D)`` → ``(N, N)``; clamped at 1e-12 before the sqrt so
    the gradient stays finite for coincident points."""
    x = x.float()
    sq = x.pow(2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    return d2.clamp_min(1e-12).sqrt()


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(N,)`` labels → ``(positive, negative)`` bool masks ``(N, N)``; the diagonal is neither."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def hard_mining(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hardest positive and negative per anchor.

    Returns:
        ``(d_ap (N,), d_an (N,), valid (N,) bool)``; rows with ``valid`` false are meaningless.
    """
    pos, neg = label_masks(labels)
    d_ap = dist.masked_fill(~pos, float("-inf")).amax(1)
    d_an = dist.masked_fill(~neg, float("inf")).amin(1)
    valid = pos.any(1) & neg.any(1)
    return d_ap, d_an, valid


def mean_over_valid(losses: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``losses[valid]``; 0 (still attached to the graph) when none is valid."""
    return torch.where(valid, losses, torch.zeros_like(losses)).sum() / valid.sum().clamp_min(1)


class BatchHardTripletLoss(nn.Module):
    """Batch-hard triplet: ``max(0, d_ap − d_an + margin)`` or ``softplus(d_ap − d_an)``.

    Args:
        weight: factor in the objective's total.
        margin: hinge margin (ignored when ``soft``).
        soft: soft-margin variant of Hermans et al.
    """

    kind = "triplet"

    def __init__(self, weight: float = 1.0, margin: float = 0.3, soft: bool = False) -> None:
        super().__init__()
        self.name = self.kind
        self.weight = float(weight)
        self.margin = float(margin)
        self.soft = bool(soft)

    def forward(self, out: ReIDOutput, batch: dict[str, Tensor]) -> Tensor:
        dist = pairwise_distance(out.metric_feature)
        d_ap, d_an, valid = hard_mining(dist, batch["pids"])
        gap = torch.where(valid, d_ap - d_an, torch.zeros_like(d_ap))
        losses = F.softplus(gap) if self.soft else F.relu(gap + self.margin)
        return mean_over_valid(losses, valid)


class AdaptiveWeightedTripletLoss(nn.Module):
    """Adaptive weighted triplet (RGSA/RGTR eq. 12–14); see the module docstring.

    Args:
        weight: factor in the objective's total.
        anchor_in_positives: count the anchor itself (at distance 0) among its positives, as
            eq. 12's ``{i | y_i = y}`` reads literally.
    """

    kind = "adaptive_triplet"

    def __init__(self, weight: float = 1.0, anchor_in_positives: bool = False) -> None:
        super().__init__()
        self.name = self.kind
        self.weight = float(weight)
        self.anchor_in_positives = bool(anchor_in_positives)

    def forward(self, out: ReIDOutput, batch: dict[str, Tensor]) -> Tensor:
        dist = pairwise_distance(out.metric_feature)
        pos, neg = label_masks(batch["pids"])
        if self.anchor_in_positives:
            pos = pos | torch.eye(len(pos), dtype=torch.bool, device=pos.device)
            # D(a, a) is exactly 0 (pairwise_distance gives √1e-12 on the diagonal).
            dist = dist.masked_fill(torch.eye(len(pos), dtype=torch.bool, device=dist.device), 0.0)
        valid = pos.any(1) & neg.any(1)
        # Rows without positives/negatives get dummy logits so softmax stays finite.
        pos_logits = dist.masked_fill(~pos, float("-inf")).masked_fill(~valid[:, None], 0.0)
        neg_logits = (-dist).masked_fill(~neg, float("-inf")).masked_fill(~valid[:, None], 0.0)
        w_p = torch.softmax(pos_logits, dim=1)
        w_n = torch.softmax(neg_logits, dim=1)
        gap = (w_p * dist).sum(1) - (w_n * dist).sum(1)
        gap = torch.where(valid, gap, torch.zeros_like(gap))
        return mean_over_valid(F.softplus(gap), valid)
