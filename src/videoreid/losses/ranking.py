"""Margin ranking loss with in-batch mining (AlignNet, Rambhatla & Jones 2019, eq. 10).

``L = max(0, −y·(d_an − d_ap) + m)`` with ``y = 1`` (``d_an`` should rank above ``d_ap``),
i.e. PyTorch's ``margin_ranking_loss(d_an, d_ap, 1, margin)``. The paper mines anchor,
positive and negative "from a batch … as [7] (Hermans et al.) suggests", so the default is
batch-hard mining (hardest positive, hardest negative per anchor), which makes it the hinge
batch-hard triplet loss. ``mining="batch_all"`` averages over every valid in-batch triplet
(zero-loss triplets included). Distances: Euclidean on ``out.metric_feature``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoreid.losses.triplet import hard_mining, label_masks, mean_over_valid, pairwise_distance
from videoreid.models.output import ReIDOutput

MINING: tuple[str, ...] = ("batch_hard", "batch_all")


class MarginRankingLoss(nn.Module):
    """AlignNet's margin ranking loss (eq. 10) on in-batch mined triplets.

    Args:
        weight: factor in the objective's total.
        margin: ``m`` in eq. 10.
        mining: ``"batch_hard"`` (default, Hermans et al.) or ``"batch_all"``.
    """

    kind = "margin_ranking"

    def __init__(
        self, weight: float = 1.0, margin: float = 0.3, mining: str = "batch_hard"
    ) -> None:
        super().__init__()
        if mining not in MINING:
            raise ValueError(f"unknown mining {mining!r}; valid: {list(MINING)}")
        self.name = self.kind
        self.weight = float(weight)
        self.margin = float(margin)
        self.mining = mining

    def forward(self, out: ReIDOutput, batch: dict[str, Tensor]) -> Tensor:
        dist = pairwise_distance(out.metric_feature)
        labels = batch["pids"]
        if self.mining == "batch_hard":
            d_ap, d_an, valid = hard_mining(dist, labels)
            d_ap = torch.where(valid, d_ap, torch.zeros_like(d_ap))
            d_an = torch.where(valid, d_an, torch.zeros_like(d_an))
            y = torch.ones_like(d_an)
            losses = F.margin_ranking_loss(d_an, d_ap, y, margin=self.margin, reduction="none")
            return mean_over_valid(losses, valid)
        pos, neg = label_masks(labels)
        triplets = pos[:, :, None] & neg[:, None, :]  # (anchor, positive, negative)
        gap = dist[:, :, None] - dist[:, None, :]  # d_ap - d_an
        losses = F.relu(gap + self.margin)
        return mean_over_valid(losses, triplets)
