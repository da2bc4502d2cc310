"""Online Instance Matching loss (Xiao et al., "Joint Detection and Identification Feature
Learning for Person Search", CVPR 2017), used by STAN (Li et al. 2018, sec. 3.5).

A lookup table ``V (num_classes, D)`` holds one L2-normalised feature per identity. For an
L2-normalised feature ``x`` with label ``y`` the logits are ``scalar · V x`` (``scalar = 1/τ``,
τ = 1/30 in the paper) and the loss is cross-entropy over them. Gradients flow into ``x``
only; ``V`` is not a parameter. After each training forward, every sample updates its row
``V_y ← normalize(γ V_y + (1 − γ) x)`` (γ = ``momentum`` = 0.5), one sample at a time in
batch order (as the reference code does in its backward), so K samples of one identity are
applied sequentially. The logits of the current step use the table before the update, as
in the reference. The table starts at zero and lives in a buffer, so it is checkpointed
with the objective's ``state_dict``.

Several processes (DDP): each rank's features and labels are all-gathered before the update,
which then runs over the concatenated batch in rank order on every rank. Every rank (and so
the checkpoint) holds the same table — the table one process would hold after updating with
the global batch in that order. The logits still use only the local features (against the
shared table), as DDP's per-rank loss does.

Not implemented: the circular queue of unlabeled identities (person search only; video
re-id training sets are fully labelled).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoreid.models.output import ReIDOutput
from videoreid.utils.collectives import all_gather_cat


class OIMLoss(nn.Module):
    """OIM loss on ``out.metric_feature (B, D)``.

    Args:
        num_classes: rows of the lookup table (training identities).
        feat_dim: ``D``.
        weight: factor in the objective's total.
        scalar: ``1/τ``, the logit scale (30).
        momentum: γ, the share of the old table row kept in an update (0.5).
    """

    kind = "oim"

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        weight: float = 1.0,
        scalar: float = 30.0,
        momentum: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.name = self.kind
        self.weight = float(weight)
        self.scalar = float(scalar)
        self.momentum = float(momentum)
        self.register_buffer("lut", torch.zeros(num_classes, feat_dim))

    def forward(self, out: ReIDOutput, batch: dict[str, Tensor]) -> Tensor:
        feat = out.metric_feature
        labels = batch["pids"]
        if feat.shape[1] != self.lut.shape[1]:
            raise ValueError(
                f"oim: feature size {feat.shape[1]} differs from the table's {self.lut.shape[1]} "
                "(feat_dim passed to build_objective)"
            )
        x = F.normalize(feat.float(), dim=1)
        logits = self.scalar * (x @ self.lut.t())
        loss = F.cross_entropy(logits, labels)
        if self.training:
            # Under DDP every rank applies the same update, from all ranks' features in rank
            # order, so the tables (and the checkpoint, written by rank 0) stay identical.
            self.update(all_gather_cat(x.detach()), all_gather_cat(labels))
        return loss

    @torch.no_grad()
    def update(self, x: Tensor, labels: Tensor) -> None:
        """Sequential momentum update of the table rows of ``labels`` with features ``x``.

        The new table replaces the buffer (no in-place write), so the logits' autograd graph
        keeps the old one.
        """
        lut = self.lut.clone()
        n = len(labels)
        # rank[i] = how many earlier samples in the batch share labels[i]; samples with the same
        # rank have distinct labels, so each rank is one vectorised step of the sequential loop.
        same = labels[:, None] == labels[None, :]
        earlier = torch.ones(n, n, dtype=torch.bool, device=labels.device).tril(-1)
        rank = (same & earlier).sum(1)
        for r in range(int(rank.max()) + 1 if n else 0):
            sel = rank == r
            y = labels[sel]
            lut[y] = F.normalize(self.momentum * lut[y] + (1.0 - self.momentum) * x[sel], dim=1)
        self.lut = lut
