"""Relation-guided spatial attention and temporal refinement (Li, Zhou, Zhou & Li, AAAI 2020).

Pipeline (paper §3, fig. 1) for a clip ``(B, T, 3, H, W)``:

1. ResNet-50 with ``last_stride=1`` per frame → ``X_t ∈ R^{C×h×w}`` (2048×16×8 for 256×128,
   ``N = h·w = 128`` positions).
2. **RGSA** (eq. 3–6) per frame: relation vectors ``r_ij = RM(X_i, X_j)`` of every position with
   all ``N`` positions, concatenated into ``r̃_i ∈ R^{N·C/r2}`` (1024 for the defaults);
   ``a_i = Sigmoid(BN(W_A [X_i, r̃_i])) ∈ (0, 1)^C``; frame feature
   ``f_t = Σ_i a_i ⊙ X_i / Σ_i a_i`` (a convex combination per channel).
3. **RGTR** (eq. 7–10) per clip: the same construction across the ``T`` frame features,
   ``r̃_t ∈ R^{T·C/r2}``, ``f̃_t = BN(W_R [f_t, r̃_t])``, clip feature ``f̃ = mean_t f̃_t``.
4. Heads: clip-level classifier on ``f̃`` (eq. 11, ``L_cce``), frame-level classifier on the frame
   features (``L_fce``), adaptive weighted triplet on ``f̃`` (eq. 12–14). The losses live in
   :mod:`videoreid.losses`; this model exposes ``logits``, ``frame_logits`` and
   ``metric_feature``.

Relation module (eq. 1–2): ``θ(f) = ReLU(BN(W_θ f))``, ``φ(f) = ReLU(BN(W_φ f))`` with
``W_θ, W_φ: C → C/r1``; ``RM(f1, f2) = ReLU(BN(W (θ(f1) − φ(f2))))`` with ``W: C/r1 → C/r2``.

Efficient form (``relation_impl="projected"``, the default). The naive form materialises the
pairwise difference ``(B·T, N, N, C/r1)`` (268 MB of float32 at B=8, T=8, N=128, r1=32) before
``W``. Because ``W`` is linear, ``W(θ_i − φ_j) = Wθ_i − Wφ_j``: we project the ``N`` embeddings
first and only form the ``(B·T, N, N, C/r2)`` pairs (8× smaller with the defaults), which are
needed anyway as the concatenated relation vectors ``r̃``.

Batch norm over pairs (the decision the issue asks to document). ``BN`` in eq. 2 normalises
over every pair of the batch. In the projected form the pairs are ``d_gij = u_gi − v_gj`` with
``u = Wθ``, ``v = Wφ`` and ``g`` a frame (RGSA) or clip (RGTR); pairs are only formed *within*
a group. :class:`PairDifferenceBatchNorm` computes the batch statistics of ``d`` analytically
from per-group statistics of ``u`` and ``v`` without materialising pairs:

* mean: ``μ = mean_g (ū_g − v̄_g) = mean(u) − mean(v)`` (groups are equally sized);
* variance (population, as BN normalises with): within a group every ``(i, j)`` pair appears
  exactly once, so ``var_ij(u_gi − v_gj) = var_i(u_g) + var_j(v_g)`` exactly; across groups the
  law of total variance adds the variance of the group means:
  ``σ² = mean_g[var(u_g) + var(v_g)] + var_g(ū_g − v̄_g)``.
  (Using the *pooled* variances ``var(u) + var(v)`` would be wrong by ``−2·cov_g(ū_g, v̄_g)``
  because pairs never cross groups.)
* running statistics are updated exactly as :class:`torch.nn.BatchNorm1d` does on the
  materialised tensor: momentum (or the cumulative average when ``momentum=None``),
  ``num_batches_tracked``, and the *unbiased* variance ``σ²·n/(n−1)`` with ``n = G·M·M`` pairs.

The normalisation is then folded into the two factors,
``γ(d − μ)/√(σ²+ε) + β = [γ(u_i − μ)/√(σ²+ε) + β] − [γ v_j/√(σ²+ε)]``, so only one pairwise
subtraction (followed by an in-place ReLU) touches the ``(G, M, M, C/r2)`` tensor. Gradients flow
through the analytic statistics as they do through BN's batch statistics. Both forms share one
parameter set (the module is a ``BatchNorm1d`` subclass), so a checkpoint trained with one form
loads into the other; ``tests/test_rgsa_rgtr.py`` checks output, gradients and running
statistics against ``nn.BatchNorm1d`` on the materialised tensor in train and eval mode.

Choices where the paper is silent (each is a constructor option where it matters):

* ``W_θ, W_φ, W, W_A, W_R`` have no bias: each is followed by BN, which removes a bias.
* ``W_A [X_i, r̃_i]`` is computed as ``W_X X_i + W_r r̃_i`` with ``W_A = [W_X | W_r]`` stored as
  one ``nn.Linear`` (``rgsa.fc``): identical maths, without materialising the concatenation.
* r̃_i is ordered as in eq. 4: ``[r_i1, r_i2, …, r_iN]``, positions in row-major (h, w) order.
  Because ``W_A`` gives every position ``j`` its own weights, ``N`` (hence the input size) is
  fixed at construction: ``image_size`` (default 256×128). Likewise ``W_R`` fixes the clip
  length ``seq_len`` (T of table 3); a clip of another length is an error, not a silent resize.
* Frame-level CE (eq. 11) acts on the RGSA frame features ``f_t`` (``frame_feature="spatial"``;
  eq. 6's output, the "frame-level features" of fig. 1, and in the baseline the spatially
  average-pooled features); ``"refined"`` puts it on RGTR's ``f̃_t`` instead. The frame and clip
  classifiers are separate ``nn.Linear`` layers because ``f_t`` (non-negative, unnormalised)
  and ``f̃`` (batch-normalised) live on different scales.
* Inner-product ablation (table 1, "IP", ``relation="inner_product"``): the relation of two
  features is the scaled inner product of the same embeddings, ``r_ij = θ(X_i)·φ(X_j)/√(C/r1)``,
  a scalar, so ``r̃_i ∈ R^N`` and ``W_A ∈ R^{C×(C+N)}``. Embedding first keeps the comparison
  with the relation module about the relation *function* only; the raw 2048-d inner product
  would also swamp ``X_i`` in ``W_A``'s input by orders of magnitude. The other reading, the
  plain inner product of the features themselves with no embedding and no scale,
  ``r_ij = X_i·X_j``, is ``relation="raw_inner_product"`` (:class:`RawInnerProductRelation`;
  no parameters of its own, and the BN after ``W_A`` / ``W_R`` absorbs its scale).
* ``rgsa=False`` / ``rgtr=False`` replace the module by spatial / temporal average pooling
  (the "Baseline" rows of table 1).
* Padded frames (``frame_mask`` false; repeat-padded copies of real frames) still pass through
  the backbone and take part in RGTR's relations, because ``W_R`` has a weight slot for every
  one of the ``T`` frames and a copy keeps that slot on-distribution; they are excluded from the
  temporal mean (eq. 10) via :func:`masked_mean`. ``frame_logits`` covers all ``T`` frames.
* Batch statistics of every BN here include padded frames, as the backbone's do.
* Eq. 6 is computed as ``Σ_i softmax_i(log σ(z_i)) X_i``, which equals ``Σ a_i X_i / Σ a_i``
  exactly and stays finite when every ``a_i`` of a channel underflows (no clamp).
* The loss-side readings (adaptive triplet, :mod:`videoreid.losses.triplet`): the anchor is
  not its own positive (``anchor_in_positives=True`` for eq. 12's literal set), euclidean
  distances, weights not detached. All readings with their switches: docs/methods/rgsa_rgtr.md.

Exposed for visualisation (``ReIDOutput.attention``):

* ``"spatial"``: ``(B, T, h, w)`` channel-mean of the RGSA weights ``a_i`` (each in ``(0, 1)``);
* ``"spatial/channels"``: ``(B, T, C, h, w)`` the per-channel weights (a view, no copy);
* ``"temporal_relation"``: ``(B, T, T)`` channel-mean of RGTR's relation vectors ``r(t, s)``
  (for ``inner_product``: the inner products themselves).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoreid.models.backbones.base import Backbone
from videoreid.models.backbones.resnet import build_backbone
from videoreid.models.layers import fold_time, masked_mean, unfold_time
from videoreid.models.output import ReIDOutput
from videoreid.models.sync_bn import (
    SyncBatchNorm,
    batch_norm_rows,
    folded_affine,
    global_moments,
    update_running_stats,
)
from videoreid.utils.collectives import all_reduce_sum

RELATIONS: tuple[str, ...] = ("difference", "inner_product", "raw_inner_product")
RELATION_IMPLS: tuple[str, ...] = ("projected", "naive")
FRAME_FEATURES: tuple[str, ...] = ("spatial", "refined")


def _reduced(channels: int, ratio: int, name: str) -> int:
    if ratio < 1 or channels // ratio < 1:
        raise ValueError(
            f"rgsa_rgtr: {name}={ratio} reduces C={channels} channels to {channels // max(ratio, 1)}; "
            f"choose 1 ≤ {name} ≤ {channels} (the paper's 32/256 assume ResNet-50's C=2048)"
        )
    return channels // ratio


class PairDifferenceBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` over all within-group pair differences ``u_gi − v_gj``, without pairs.

    :meth:`pairwise` gives the same result (output, gradients, running statistics) as
    ``nn.BatchNorm1d.forward`` applied to the materialised ``(G·M·M, K)`` tensor of
    differences; the plain :meth:`forward` (inherited) is that reference and is what the naive
    relation path uses. See the module docstring for the derivation.
    """

    # train.sync_bn (``to_sync``): statistics over the groups of every rank. Groups never
    # span ranks, so the per-group terms stay local and only their sums are all-reduced:
    # the result equals one process on the concatenated batch.
    sync: bool = False

    def to_sync(self) -> PairDifferenceBatchNorm:
        """This module with its batch statistics pooled over all ranks (``train.sync_bn``)."""
        self.sync = True
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.sync:  # the naive path's materialised pairs, pooled over ranks
            return batch_norm_rows(self, x)
        return super().forward(x)

    def pair_statistics(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Batch mean and population variance of ``{u_gi − v_gj}`` over ``g, i, j``.

        Args:
            u, v: ``(G, M, K)``.
        Returns:
            mean ``(K,)``, variance ``(K,)`` (float32 or wider).
        """
        mean, var, _ = self._pair_moments(u, v)
        return mean, var

    def _pair_moments(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, int]:
        """:meth:`pair_statistics` plus the number of groups they cover (all ranks' if synced)."""
        dtype = torch.promote_types(u.dtype, torch.float32)
        u, v = u.to(dtype), v.to(dtype)
        mu_u, mu_v = u.mean(1), v.mean(1)  # (G, K)
        within = u.var(1, unbiased=False) + v.var(1, unbiased=False)  # exact over the i×j grid
        group_mean = mu_u - mu_v
        if self.sync:
            gm_mean, gm_var, groups = global_moments(group_mean)
            return gm_mean, all_reduce_sum(within.sum(0)) / groups + gm_var, groups
        mean = group_mean.mean(0)
        var = within.mean(0) + group_mean.var(0, unbiased=False)
        return mean, var, u.shape[0]

    def pairwise(self, u: Tensor, v: Tensor, relu: bool = False) -> Tensor:
        """``BN(u_gi − v_gj)`` for every ``g, i, j``.

        Args:
            u, v: ``(G, M, K)`` with ``K = num_features``.
            relu: apply ReLU in place (saves one ``(G, M, M, K)`` temporary).
        Returns:
            ``(G, M, M, K)``, entry ``[g, i, j]`` normalising ``u[g, i] − v[g, j]``.
        """
        if u.shape != v.shape or u.dim() != 3 or u.shape[-1] != self.num_features:
            raise ValueError(
                f"PairDifferenceBatchNorm.pairwise: u, v must both be (G, M, {self.num_features}); "
                f"got {tuple(u.shape)} and {tuple(v.shape)}"
            )
        g, m, _ = u.shape
        n = g * m * m
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        if use_batch_stats:
            if self.training and n <= 1:
                raise ValueError(
                    f"Expected more than 1 value per channel when training, got {n} pairs"
                )
            mean, var, groups = self._pair_moments(u, v)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean.detach(), var.detach(), groups * m * m)
        else:
            mean, var = self.running_mean, self.running_var
        scale, shift = folded_affine(self, mean, var)
        a = (u * scale + shift).to(u.dtype)
        b = (v * scale).to(v.dtype)
        out = a.unsqueeze(2) - b.unsqueeze(1)
        return out.relu_() if relu else out

    def _update_running_stats(self, mean: Tensor, var: Tensor, n: int) -> None:
        # As torch.nn.modules.batchnorm._BatchNorm.forward + F.batch_norm do for n values.
        update_running_stats(self, mean, var, n)


def _embedding(channels: int, out: int) -> nn.Sequential:
    """``ReLU(BN(W f))`` applied to ``(..., C)`` features (BN over all leading dims)."""
    return nn.Sequential(nn.Linear(channels, out, bias=False), _TokenBN(out), nn.ReLU(inplace=True))


class _TokenBN(nn.BatchNorm1d):
    """``BatchNorm1d`` over the last dim of ``(..., K)``; statistics over all other dims."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)

    def to_sync(self) -> SyncBatchNorm:
        """The synchronised form (``train.sync_bn``): same layout, statistics over all ranks."""
        return SyncBatchNorm.from_module(self, channel_dim=-1)


class RelationModule(nn.Module):
    """Relation module (eq. 1–2) applied to every ordered pair within each group.

    Args:
        channels: feature size ``C``.
        r1: reduction of the embeddings ``θ, φ`` (``C/r1``).
        r2: reduction of the relation vector (``C/r2``).
        impl: ``"projected"`` (``Wθ_i − Wφ_j``) or ``"naive"`` (``W(θ_i − φ_j)``); same
            parameters, same result (see module docstring).

    ``forward(x)``: ``x (G, M, C)`` → ``r (G, M, M, C/r2)`` with ``r[g, i, j] = RM(x_gi, x_gj)``.
    """

    def __init__(self, channels: int, r1: int = 32, r2: int = 256, impl: str = "projected") -> None:
        super().__init__()
        if impl not in RELATION_IMPLS:
            raise ValueError(f"relation_impl must be one of {RELATION_IMPLS}, got {impl!r}")
        d1 = _reduced(channels, r1, "r1")
        d2 = _reduced(channels, r2, "r2")
        self.impl = impl
        self.out_dim = d2
        self.theta = _embedding(channels, d1)
        self.phi = _embedding(channels, d1)
        self.proj = nn.Linear(d1, d2, bias=False)  # W of eq. 2
        self.bn = PairDifferenceBatchNorm(d2)

    def forward(self, x: Tensor) -> Tensor:
        th, ph = self.theta(x), self.phi(x)
        if self.impl == "naive":
            return self.forward_naive(th, ph)
        return self.forward_projected(th, ph)

    def forward_naive(self, th: Tensor, ph: Tensor) -> Tensor:
        """Reference form: materialise ``θ_i − φ_j`` ``(G, M, M, C/r1)``, then ``W``, BN, ReLU."""
        diff = th.unsqueeze(2) - ph.unsqueeze(1)
        z = self.proj(diff)
        shape = z.shape
        return F.relu(self.bn(z.reshape(-1, shape[-1])).reshape(shape))

    def forward_projected(self, th: Tensor, ph: Tensor) -> Tensor:
        """Efficient form: ``Wθ_i − Wφ_j`` with analytic pair BN; ``(G, M, M, C/r2)``."""
        return self.bn.pairwise(self.proj(th), self.proj(ph), relu=True)


class InnerProductRelation(nn.Module):
    """Table 1's "IP" ablation: ``r_ij = θ(x_i)·φ(x_j)/√(C/r1)``, a 1-d relation.

    ``forward(x)``: ``x (G, M, C)`` → ``(G, M, M, 1)``.
    """

    def __init__(self, channels: int, r1: int = 32) -> None:
        super().__init__()
        d1 = _reduced(channels, r1, "r1")
        self.out_dim = 1
        self.scale = 1.0 / math.sqrt(d1)
        self.theta = _embedding(channels, d1)
        self.phi = _embedding(channels, d1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(self.theta(x), self.phi(x).transpose(1, 2)).unsqueeze(-1) * self.scale


class RawInnerProductRelation(nn.Module):
    """The literal reading of table 1's "IP": ``r_ij = x_i·x_j`` on the features themselves.

    ``forward(x)``: ``x (G, M, C)`` → ``(G, M, M, 1)``.
    """

    out_dim = 1

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(x, x.transpose(1, 2)).unsqueeze(-1)


def build_relation(
    relation: str, channels: int, r1: int, r2: int, impl: str
) -> RelationModule | InnerProductRelation | RawInnerProductRelation:
    """``"difference"`` → :class:`RelationModule`; ``"inner_product"`` →
    :class:`InnerProductRelation`; ``"raw_inner_product"`` → :class:`RawInnerProductRelation`."""
    if relation == "difference":
        return RelationModule(channels, r1, r2, impl)
    if relation == "inner_product":
        return InnerProductRelation(channels, r1)
    if relation == "raw_inner_product":
        return RawInnerProductRelation()
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")


class _GlobalRelationLinear(nn.Module):
    """``BN(W [x_i, r̃_i])`` with ``W = [W_x | W_r]`` applied without concatenating.

    Args:
        channels: ``C`` (input feature size and output size).
        relation_dim: ``M · K``, the size of the global relation vector ``r̃_i``.
    """

    def __init__(self, channels: int, relation_dim: int) -> None:
        super().__init__()
        self.channels = channels
        self.fc = nn.Linear(channels + relation_dim, channels, bias=False)
        self.bn = _TokenBN(channels)

    def forward(self, x: Tensor, r_global: Tensor) -> Tensor:
        """``x (G, M, C)``, ``r_global (G, M, M·K)`` → ``(G, M, C)`` (after BN)."""
        w = self.fc.weight
        z = F.linear(x, w[:, : self.channels]) + F.linear(r_global, w[:, self.channels :])
        return self.bn(z)


class RGSA(nn.Module):
    """Relation-guided spatial attention (eq. 3–6).

    Args:
        channels: ``C``.
        num_positions: ``N = h·w`` of the feature map (fixes ``W_A``'s input size).
        r1, r2, relation, relation_impl: see :class:`RGSARGTR`.

    ``forward(x)``: ``x (G, N, C)`` (G frames, row-major positions) → frame features
    ``(G, C)`` and attention weights ``a (G, N, C)`` in ``(0, 1)``.
    """

    def __init__(
        self,
        channels: int,
        num_positions: int,
        r1: int = 32,
        r2: int = 256,
        relation: str = "difference",
        relation_impl: str = "projected",
    ) -> None:
        super().__init__()
        self.num_positions = num_positions
        self.relation = build_relation(relation, channels, r1, r2, relation_impl)
        self.attention = _GlobalRelationLinear(channels, num_positions * self.relation.out_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        g, n, _ = x.shape
        r = self.relation(x)  # (G, N, N, K)
        z = self.attention(x, r.reshape(g, n, -1))  # eq. 4–5 before the sigmoid
        a = torch.sigmoid(z)
        # Eq. 6's a_i / Σ_i a_i is a softmax of log a_i over the positions: exact, and stable
        # when every a_i of a channel underflows (a clamp on Σ_i a_i would change the result).
        f = (torch.softmax(F.logsigmoid(z), dim=1) * x).sum(1)  # eq. 6
        return f, a


class RGTR(nn.Module):
    """Relation-guided temporal refinement (eq. 7–9).

    Args:
        channels: ``C``.
        seq_len: clip length ``T`` (fixes ``W_R``'s input size).
        r1, r2, relation, relation_impl: see :class:`RGSARGTR`.

    ``forward(f)``: ``f (B, T, C)`` → refined ``f̃ (B, T, C)`` and relations ``(B, T, T, K)``.
    """

    def __init__(
        self,
        channels: int,
        seq_len: int,
        r1: int = 32,
        r2: int = 256,
        relation: str = "difference",
        relation_impl: str = "projected",
    ) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.relation = build_relation(relation, channels, r1, r2, relation_impl)
        self.refine = _GlobalRelationLinear(channels, seq_len * self.relation.out_dim)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        b, t, _ = f.shape
        r = self.relation(f)  # (B, T, T, K)
        return self.refine(f, r.reshape(b, t, -1)), r


class RGSARGTR(nn.Module):
    """Backbone → RGSA (or spatial mean) → RGTR (or identity) → temporal mean; two classifiers.

    Args:
        num_classes: training identities (0: no classifiers).
        backbone: a backbone name (see :mod:`videoreid.models.backbones.resnet`) or a
            :class:`Backbone` instance.
        pretrained: local weights file for a named backbone, or ``None``.
        last_stride: ``layer4`` stride of a named backbone (1 in the paper).
        r1, r2: reduction factors of the relation module (table 2; 32 and 256).
        rgsa, rgtr: use the module; ``False`` = average pooling in its place (table 1).
        relation: ``"difference"`` (relation module, eq. 1–2), ``"inner_product"`` ("IP" of
            table 1 on the embeddings ``θ, φ``) or ``"raw_inner_product"`` (``X_i·X_j``).
        relation_impl: ``"projected"`` (efficient) or ``"naive"`` (reference); same maths.
        seq_len: clip length ``T`` every input clip must have when ``rgtr`` is on (table 3).
        image_size: ``(H, W)`` of the input frames; sets ``N`` when ``rgsa`` is on.
        frame_feature: which frame features feed ``frame_logits``: ``"spatial"`` (``f_t``) or
            ``"refined"`` (``f̃_t``).
        channels_last: channels-last backbone (named backbones only).

    ``forward(batch)`` reads ``images (B, T, 3, H, W)`` and optional ``frame_mask (B, T)`` and
    returns :class:`ReIDOutput`: ``embedding (B, C)`` = clip feature ``f̃`` (also
    ``metric_feature``), in training ``logits (B, num_classes)`` and
    ``frame_logits (B, T, num_classes)``, and ``attention`` (see module docstring).
    """

    modalities: tuple[str, ...] = ("images",)

    def __init__(
        self,
        num_classes: int,
        backbone: str | Backbone = "resnet50",
        *,
        pretrained: str | None = None,
        last_stride: int = 1,
        r1: int = 32,
        r2: int = 256,
        rgsa: bool = True,
        rgtr: bool = True,
        relation: str = "difference",
        relation_impl: str = "projected",
        seq_len: int = 8,
        image_size: Sequence[int] = (256, 128),
        frame_feature: str = "spatial",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if relation not in RELATIONS:
            raise ValueError(f"rgsa_rgtr: relation must be one of {RELATIONS}, got {relation!r}")
        if relation_impl not in RELATION_IMPLS:
            raise ValueError(
                f"rgsa_rgtr: relation_impl must be one of {RELATION_IMPLS}, got {relation_impl!r}"
            )
        if frame_feature not in FRAME_FEATURES:
            raise ValueError(
                f"rgsa_rgtr: frame_feature must be one of {FRAME_FEATURES}, got {frame_feature!r}"
            )
        if len(image_size) != 2:
            raise ValueError(f"rgsa_rgtr: image_size must be (H, W), got {image_size!r}")
        if isinstance(backbone, str):
            backbone = build_backbone(
                backbone, last_stride=last_stride, pretrained=pretrained, channels_last=channels_last
            )
        self.backbone = backbone
        channels = backbone.out_channels
        self.channels = channels
        self.feat_dim = channels  # size of embedding / metric_feature (read by the engine)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.feature_size = self._feature_size(backbone, self.image_size)
        self.seq_len = int(seq_len)
        self.frame_feature = frame_feature
        num_positions = self.feature_size[0] * self.feature_size[1]
        self.rgsa = (
            RGSA(channels, num_positions, r1, r2, relation, relation_impl) if rgsa else None
        )
        self.rgtr = (
            RGTR(channels, self.seq_len, r1, r2, relation, relation_impl) if rgtr else None
        )
        self.num_classes = num_classes
        self.classifier = nn.Linear(channels, num_classes) if num_classes > 0 else None
        self.frame_classifier = nn.Linear(channels, num_classes) if num_classes > 0 else None

    @staticmethod
    def _feature_size(backbone: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
        if hasattr(backbone, "feature_size"):
            return tuple(backbone.feature_size(*image_size))  # type: ignore[return-value]
        # A backbone without the arithmetic helper: measure with one dry run (no BN update).
        was_training = backbone.training
        param = next(backbone.parameters())
        backbone.eval()
        with torch.no_grad():
            out = backbone(torch.zeros(1, 3, *image_size, device=param.device, dtype=param.dtype))
        backbone.train(was_training)
        return int(out.shape[-2]), int(out.shape[-1])

    @staticmethod
    def required_clip_length(args: dict) -> tuple[int, str] | None:
        """``(seq_len, "model.args.seq_len")`` when RGTR is on (``W_R`` has one slot per
        frame), else ``None``; read by ``load_config`` to check the sampler and test plan."""
        if not args.get("rgtr", True):
            return None
        return int(args.get("seq_len", 8)), "model.args.seq_len"

    def set_relation_impl(self, impl: str) -> None:
        """Switch every relation module between ``"projected"`` and ``"naive"`` (same weights)."""
        if impl not in RELATION_IMPLS:
            raise ValueError(f"relation_impl must be one of {RELATION_IMPLS}, got {impl!r}")
        for m in self.modules():
            if isinstance(m, RelationModule):
                m.impl = impl

    def forward(self, batch: dict[str, Tensor]) -> ReIDOutput:
        images = batch["images"]
        mask = batch.get("frame_mask")
        if images.dim() != 5:
            raise ValueError(f"rgsa_rgtr: images must be (B, T, 3, H, W), got {tuple(images.shape)}")
        b, t = images.shape[:2]
        if self.rgtr is not None and t != self.seq_len:
            raise ValueError(
                f"rgsa_rgtr: RGTR was built for clips of seq_len={self.seq_len} frames, got T={t}; "
                "set model.args.seq_len to the sampler/test-plan clip length"
            )
        fmap = self.backbone(fold_time(images))  # (B·T, C, h, w)
        h, w = fmap.shape[-2:]
        x = fmap.flatten(2).transpose(1, 2)  # (B·T, N, C), row-major positions
        attention: dict[str, Tensor] = {}
        if self.rgsa is not None:
            if (h, w) != self.feature_size:
                raise ValueError(
                    f"rgsa_rgtr: RGSA was built for image_size={self.image_size} "
                    f"(feature map {self.feature_size}), got a {h}×{w} map from "
                    f"{tuple(images.shape[-2:])} frames; set model.args.image_size"
                )
            f, a = self.rgsa(x)
            a_map = unfold_time(a.transpose(1, 2).reshape(b * t, self.channels, h, w), b)
            attention["spatial"] = a_map.mean(2)
            attention["spatial/channels"] = a_map
        else:
            f = x.mean(1)
        frames = unfold_time(f, b)  # (B, T, C): f_t
        if self.rgtr is not None:
            refined, rel = self.rgtr(frames)
            attention["temporal_relation"] = rel.mean(-1)
        else:
            refined = frames
        clip = masked_mean(refined, mask, dim=1)  # eq. 10, padded frames excluded
        logits = frame_logits = None
        if self.training and self.classifier is not None:
            logits = self.classifier(clip)
            src = frames if self.frame_feature == "spatial" else refined
            frame_logits = self.frame_classifier(src)
        return ReIDOutput(
            embedding=clip,
            logits=logits,
            frame_logits=frame_logits,
            metric_feature=clip,
            attention=attention,
        )


# The class's own constructor is the factory builder: its signature is what
# ``build_model`` validates ``model.args`` against.
build_rgsa_rgtr = RGSARGTR
