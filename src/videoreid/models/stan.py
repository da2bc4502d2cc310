"""STAN: diversity-regularised spatiotemporal attention (Li, Bak, Carr, Wang, CVPR 2018).

Pipeline per clip of ``T`` frames (the paper's ``N``; sec. 3, fig. 2):

1. backbone ``stem..layer4`` per frame → an ``h × w`` grid (8 × 4 for 256 × 128 inputs with
   ``last_stride=2``; ``L = h·w`` cells) of ``D``-dim vectors ``f_{n,l}`` (sec. 3.2);
2. ``K`` spatial attention models, each ``D → d → 1`` with a ReLU (eq. 1) and a softmax over
   the ``L`` cells (eq. 2); spatially gated features ``x_{n,k} = Σ_l s_{n,k,l} f_{n,l}`` (eq. 3);
3. enhancement ``x̂_{n,k} = E(x_{n,k})`` (eq. 4), see "Enhancement E" below;
4. per-component temporal attention (eq. 11–13) → ``x_k``;
5. concatenation of the ``K`` features (eq. 15), FC to ``embed_dim`` (128), BN, L2 norm.

The model returns the receptive fields and temporal weights in ``ReIDOutput.attention``
(``"spatial"``: ``(B, T, K, h, w)``, ``"temporal"``: ``(B, T, K)``); the Hellinger diversity
term (eq. 9) and its ``Q'`` variant (eq. 10) live in :mod:`videoreid.losses.attention` and read
``"spatial"``. Models never compute losses; :func:`receptive_field_overlap` is a diagnostic.

Decisions where the paper is silent or inconsistent:

* **Enhancement E (eq. 4).** The main text says only that E "follows the past work on
  second-order pooling [5]" and defers to the supplementary material. The supplement (sec.
  3.2.1, appended to the paper text we have) defines it: per component ``k`` with
  ``X_k = [x_{1,k} … x_{N,k}]`` (``D × N``), a feature-similarity matrix ``Φ_k = X_kᵀ X_k``
  (the second-order statistic: the Gram matrix of the component's features over time, supp.
  eq. 1), a temporal-similarity matrix ``Ψ = W ⊙ exp(−|i−j|/σ) + b`` (supp. eq. 2), a row
  softmax ``C_k = softmax'(Φ_k + Ψ)`` (supp. eq. 3) and the residual ``X̂_k = FCN(X_k C_k) + X_k``
  (supp. eq. 4). We implement ``enhancement="second_order"`` as exactly that, with these
  readings: (a) the supplement says row ``i`` of ``C_k`` holds the contributions of all frames
  *to frame i*, so frame ``i`` pools ``Σ_j C_k[i, j] x_{j,k}`` (``X_k C_kᵀ`` in the supplement's
  column notation; its literal ``X_k C_k`` would use unnormalised column sums); (b) ``W ∈ R^{N×N}``
  multiplies the distance kernel elementwise and ``b ∈ R^N`` is added per *column* (a learned
  prior on each frame position as a contributor) — a per-row bias would cancel in the row
  softmax and never learn; (c) ``Φ_k`` is scaled by ``1/√D`` (``similarity_scale``): unscaled
  inner products of 2048-dim post-ReLU features are in the hundreds and would make the softmax
  one-hot with vanishing gradients; (d) one FCN (``Linear(D, D)``) shared by the ``K``
  components, as the supplement does not index it by ``k``; (e) ``W`` is initialised to ones,
  ``b`` to zeros, ``σ = 1`` (only the initial shape of ``Ψ`` depends on ``σ`` since ``W`` is a
  free ``N × N`` matrix); (f) padded frames (``frame_mask`` false) get zero weight as
  contributors; (g) clips longer than ``num_frames`` (dense test plans) reuse the last row /
  column of ``W`` and the last entry of ``b`` for positions ``≥ num_frames − 1`` while the
  distance kernel uses the true positions; the configs may not do this: a config whose
  ``data.train_sampler`` or ``data.test_plan`` length differs from ``model.args.num_frames``
  is rejected by :meth:`STAN.required_clip_length` (checked by ``load_config``);
  (h) the FCN is zero-initialised (``zero_init_e=True``, the default; ``False`` keeps
  PyTorch's default init), so E starts as the identity ``x̂ = x`` and training begins from
  the model without E — the supplement gives no initialisation, and a random FCN would add a
  random ``D × D`` map of the pooled features to every gated feature at the start of the
  attention stage. ``enhancement="identity"`` skips E.
* **Temporal attention normalisation (eq. 12).** The text says ``t_{n,k}`` is "the softmax of a
  linear response" but eq. 12 divides the responses by their sum. ``temporal="softmax"``
  (default) follows the text; ``temporal="literal"`` implements eq. 12 as printed (weights sum to
  1 but may be negative or explode when the responses sum to ≈ 0; the denominator is kept at
  least ``1e-6`` in magnitude; the bias is initialised to 1 and the weights to 0 so training
  starts from average pooling). ``"avg"`` and ``"max"`` are the per-region pooling rows of
  table 1; for ``"max"`` the reported temporal weight of a frame is the fraction of feature
  channels whose maximum it supplies.
* **Temporal attention initialisation.** ``w_{t,k} = 0``: training starts from per-component
  average pooling, which is what sec. 4.2 trains the spatial models with before temporal
  attention; with one continuous run (the CNN frozen for ``freeze_epochs``) it is the closest
  equivalent of that stage.
* **Biases that cannot learn.** ``b'_{s,k}`` (eq. 1) adds the same constant to every cell and
  cancels in the spatial softmax (eq. 2); ``b_{t,k}`` (eq. 11) likewise cancels in the temporal
  softmax. Both are omitted there (kept in ``literal`` mode, where ``b_{t,k}`` matters).
* **Baseline (table 1).** ``spatial=False`` replaces the ``K`` attention models by one global
  average pool per frame (a single uniform "receptive field"; no ``"spatial"`` map is returned),
  so table 1's Baseline is ``spatial=False, enhancement="identity", temporal="avg"``.
* **Image pre-training (sec. 4.2).** ``init_from`` loads a whole videoreid checkpoint (e.g.
  the image-data run of ``configs/stan/market_pretrain.yaml``) into the model, keeping every
  tensor whose name and shape match and reporting the rest: the backbone always transfers;
  the identity classifier (different identities) and, when ``K`` differs, the embedding FC
  do not. ``pretrained`` stays the plain backbone (ImageNet) weight file.
* **Readings and the switch for the other one** (the table in docs/methods/stan.md):
  E itself → ``enhancement="identity"``; ``Φ_k`` scale ``1/√D`` → ``similarity_scale=1.0``;
  E's zero-initialised FCN → ``zero_init_e=False``; softmax temporal weights (text) →
  ``temporal="literal"`` (eq. 12); BatchNorm in the head → ``embed_bn=False``; one run with the
  CNN frozen for the first epochs (configs) → the literal stage chain
  ``configs/stan/stages/*.yaml`` (``init_from`` from stage to stage); ``C_k``'s direction,
  ``b``'s orientation and the shared FCN have no switch (the other readings cannot train or
  are not well defined, see (a), (b), (d)).
* **Head.** The paper embeds the concatenated ``K·D`` feature with one FC into 128 dims and
  L2-normalises it. We add a BatchNorm1d after the FC (``embed_bn=True``, as in the OIM
  reference implementation) which keeps the un-normalised feature well scaled for the optional
  softmax classifier (``logits``, training only) that the CE alternative uses. ``metric_feature``
  and ``embedding`` are the L2-normalised feature (what OIM and retrieval use).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoreid.models.backbones.pretrained import load_matching
from videoreid.models.backbones.resnet import build_backbone
from videoreid.models.baseline import run_backbone_on_frames
from videoreid.models.layers import fold_time, unfold_time
from videoreid.models.output import ReIDOutput

log = logging.getLogger(__name__)

ENHANCEMENTS: tuple[str, ...] = ("second_order", "identity")
TEMPORAL_MODES: tuple[str, ...] = ("softmax", "literal", "avg", "max")


class SpatialAttention(nn.Module):
    """``K`` spatial attention models (eq. 1–3), computed for all ``K`` at once.

    The ``K`` first linear maps ``W_{s,k}`` are one 1×1 conv ``D → K·d``; the ``K`` second maps
    ``w'_{s,k}`` are one grouped 1×1 conv ``K·d → K`` (group ``k`` sees only model ``k``'s hidden
    units), which is exactly ``K`` independent two-layer perceptrons applied to every cell.

    Args:
        in_channels: feature size ``D``.
        num_models: ``K``.
        hidden: ``d`` (256 in the paper).
    """

    def __init__(self, in_channels: int, num_models: int, hidden: int = 256) -> None:
        super().__init__()
        self.num_models = num_models
        self.hidden = nn.Conv2d(in_channels, num_models * hidden, kernel_size=1)
        # No bias: a per-model constant cancels in the softmax over cells (eq. 2).
        self.score = nn.Conv2d(num_models * hidden, num_models, kernel_size=1, groups=num_models,
                               bias=False)

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """Receptive fields and gated features.

        Args:
            feat: ``(N, D, h, w)`` grid features of ``N`` frames.
        Returns:
            ``x``: ``(N, K, D)`` spatially gated features (eq. 3);
            ``s``: ``(N, K, h, w)`` receptive fields, each summing to 1 over ``h·w`` (eq. 2).
        """
        n, _, h, w = feat.shape
        e = self.score(F.relu(self.hidden(feat)))  # (N, K, h, w), eq. 1
        s = torch.softmax(e.flatten(2).float(), dim=-1).to(feat.dtype)  # (N, K, L), eq. 2
        x = torch.bmm(s, feat.flatten(2).transpose(1, 2))  # (N, K, D), eq. 3
        return x, s.reshape(n, self.num_models, h, w)


class TemporalEnhancement(nn.Module):
    """Enhancement ``E`` (eq. 4) as defined in the supplementary material (sec. 3.2.1).

    See the module docstring for the readings taken. For component ``k`` and frames ``i, j``:
    ``C_k[i, j] = softmax_j(x_iᵀ x_j / √D + W[i, j] exp(−|i−j|/σ) + b[j])`` and
    ``x̂_i = FCN(Σ_j C_k[i, j] x_j) + x_i``.

    Args:
        dim: ``D``.
        num_frames: ``N``, the size of the learned positional matrix ``W`` and bias ``b``.
        sigma: ``σ`` of the temporal-distance kernel.
        similarity_scale: factor on ``Φ_k``; ``None`` means ``1/√D``.
        zero_init: zero the FCN's weight and bias so that E starts as the identity.
    """

    def __init__(self, dim: int, num_frames: int = 6, sigma: float = 1.0,
                 similarity_scale: float | None = None, zero_init: bool = True) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.num_frames = num_frames
        self.sigma = float(sigma)
        self.scale = dim ** -0.5 if similarity_scale is None else float(similarity_scale)
        self.pos_weight = nn.Parameter(torch.ones(num_frames, num_frames))  # W
        self.pos_bias = nn.Parameter(torch.zeros(num_frames))  # b (per contributing frame)
        self.fcn = nn.Linear(dim, dim)
        if zero_init:  # FCN(·) = 0: x̂ = x until training moves it
            nn.init.zeros_(self.fcn.weight)
            nn.init.zeros_(self.fcn.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Pool each component over the other frames of the clip.

        Args:
            x: ``(B, T, K, D)`` spatially gated features.
            mask: ``(B, T)`` bool, ``True`` for real frames; ``None`` when all are real.
        Returns:
            ``(B, T, K, D)`` enhanced features ``x̂``.
        """
        t = x.shape[1]
        xk = x.transpose(1, 2)  # (B, K, T, D)
        phi = torch.matmul(xk, xk.transpose(-1, -2)).float() * self.scale  # (B, K, T, T)
        pos = torch.arange(t, device=x.device)
        idx = pos.clamp(max=self.num_frames - 1)
        decay = torch.exp(-(pos[:, None] - pos[None, :]).abs().float() / self.sigma)
        psi = self.pos_weight[idx][:, idx] * decay + self.pos_bias[idx][None, :]  # (T, T)
        logits = phi + psi
        if mask is not None:
            logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
        c = torch.softmax(logits, dim=-1).to(x.dtype)  # rows sum to 1 over contributors j
        pooled = torch.matmul(c, xk)  # (B, K, T, D): row i = Σ_j C[i, j] x_j
        return (self.fcn(pooled) + xk).transpose(1, 2)


class TemporalAttention(nn.Module):
    """Per-component temporal pooling: attention (eq. 11–13), average or max.

    Args:
        dim: ``D``.
        num_models: ``K``.
        mode: ``"softmax"`` (text of sec. 3.4), ``"literal"`` (eq. 12 as printed), ``"avg"``,
            ``"max"``.
    """

    def __init__(self, dim: int, num_models: int, mode: str = "softmax") -> None:
        super().__init__()
        if mode not in TEMPORAL_MODES:
            raise ValueError(f"unknown temporal mode {mode!r}; valid: {list(TEMPORAL_MODES)}")
        self.mode = mode
        if mode in ("softmax", "literal"):
            # w_{t,k} start at 0 so training starts from average pooling (staged training
            # in sec. 4.2 first trains the spatial models with average pooling).
            self.weight = nn.Parameter(torch.zeros(num_models, dim))
        if mode == "literal":
            self.bias = nn.Parameter(torch.ones(num_models))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Pool over time.

        Args:
            x: ``(B, T, K, D)`` enhanced features.
            mask: ``(B, T)`` bool, ``True`` for real frames; ``None`` when all are real.
        Returns:
            pooled ``(B, K, D)`` and weights ``(B, T, K)`` (sum to 1 over ``T`` per component;
            zero for padded frames).
        """
        b, t, k, _ = x.shape
        m = (torch.ones(b, t, dtype=torch.bool, device=x.device) if mask is None else mask)
        m3 = m[:, :, None]
        if self.mode == "max":
            vals, arg = x.masked_fill(~m[:, :, None, None], float("-inf")).max(dim=1)  # (B, K, D)
            share = torch.zeros(b, k, t, device=x.device, dtype=x.dtype)
            share.scatter_add_(2, arg, torch.ones_like(vals))  # channels won per frame
            return vals, (share / x.shape[-1]).transpose(1, 2)
        if self.mode == "avg":
            w = m3.to(x.dtype).expand(b, t, k)
            w = w / w.sum(dim=1, keepdim=True)
        else:
            e = torch.einsum("btkd,kd->btk", x, self.weight)  # eq. 11
            if self.mode == "softmax":
                w = torch.softmax(e.float().masked_fill(~m3, float("-inf")), dim=1).to(x.dtype)
            else:  # eq. 12 as printed
                e = (e + self.bias).masked_fill(~m3, 0.0)
                total = e.sum(dim=1, keepdim=True)
                sign = torch.where(total < 0, -1.0, 1.0).to(total.dtype)
                total = torch.where(total.abs() < 1e-6, sign * 1e-6, total)
                w = e / total
        pooled = torch.einsum("btk,btkd->bkd", w, x)  # eq. 13
        return pooled, w


class STAN(nn.Module):
    """Spatiotemporal attention network (Li et al., CVPR 2018).

    Args:
        num_classes: training identities (classifier size for the CE variant; 0 for none).
        backbone: backbone name for :func:`build_backbone` (``"resnet50"`` in the paper).
        K: number of spatial attention models (6 in the paper; table 2 uses 1, 2, 4, 6, 8).
        d: hidden size of each spatial attention model (256).
        embed_dim: output embedding size (128).
        enhancement: ``"second_order"`` (supplement sec. 3.2.1) or ``"identity"``.
        temporal: ``"softmax"``, ``"literal"`` (eq. 12 as printed), ``"avg"`` or ``"max"``.
        spatial: ``False`` replaces the attention models by a global average pool (Baseline).
        pretrained: local backbone weight file (torchvision-style keys) or ``None``.
        last_stride: stride of ``layer4`` (2 gives the paper's 8 × 4 grid at 256 × 128).
        num_frames: ``N``, the clip length the positional parameters of E are sized for.
        sigma: ``σ`` of E's temporal-distance kernel.
        similarity_scale: factor on E's feature similarity; ``None`` means ``1/√D``.
        embed_bn: BatchNorm1d after the embedding FC.
        channels_last: channels-last backbone.
        init_from: videoreid checkpoint or state dict to initialise from (matching names and
            shapes only; see the module docstring), applied after ``pretrained``.
        zero_init_e: zero-initialise E's FCN so that E starts as the identity.

    ``forward(batch)`` takes ``batch["images"]`` ``(B, T, 3, H, W)`` and an optional
    ``batch["frame_mask"]`` ``(B, T)`` bool; see :meth:`forward`.
    """

    modalities: tuple[str, ...] = ("images",)

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        K: int = 6,
        d: int = 256,
        embed_dim: int = 128,
        enhancement: str = "second_order",
        temporal: str = "softmax",
        spatial: bool = True,
        pretrained: str | None = None,
        last_stride: int = 2,
        num_frames: int = 6,
        sigma: float = 1.0,
        similarity_scale: float | None = None,
        embed_bn: bool = True,
        channels_last: bool = False,
        init_from: str | None = None,
        zero_init_e: bool = True,
    ) -> None:
        super().__init__()
        if enhancement not in ENHANCEMENTS:
            raise ValueError(f"unknown enhancement {enhancement!r}; valid: {list(ENHANCEMENTS)}")
        if temporal not in TEMPORAL_MODES:
            raise ValueError(f"unknown temporal mode {temporal!r}; valid: {list(TEMPORAL_MODES)}")
        if K < 1 or d < 1 or embed_dim < 1:
            raise ValueError(f"K, d and embed_dim must be >= 1, got K={K}, d={d}, "
                             f"embed_dim={embed_dim}")
        self.num_classes = num_classes
        self.spatial = spatial
        self.K = K if spatial else 1
        self.backbone = build_backbone(backbone, last_stride=last_stride, pretrained=pretrained,
                                       channels_last=channels_last)
        dim = self.backbone.out_channels
        self.backbone_dim = dim  # D
        self.feat_dim = embed_dim  # size of metric_feature (what OIM's table stores)
        self.spatial_attention = SpatialAttention(dim, K, d) if spatial else None
        self.enhancement = (TemporalEnhancement(dim, num_frames, sigma, similarity_scale,
                                                zero_init=zero_init_e)
                            if enhancement == "second_order" else None)
        self.temporal_attention = TemporalAttention(dim, self.K, temporal)
        self.embed = nn.Linear(self.K * dim, embed_dim)
        self.embed_bn = nn.BatchNorm1d(embed_dim) if embed_bn else None
        self.classifier = nn.Linear(embed_dim, num_classes) if num_classes > 0 else None
        nn.init.kaiming_normal_(self.embed.weight, mode="fan_out")
        nn.init.zeros_(self.embed.bias)
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)
            nn.init.zeros_(self.classifier.bias)
        if init_from:
            load_matching(self, init_from)

    @staticmethod
    def required_clip_length(args: dict) -> tuple[int, str] | None:
        """Clip length every training and test clip must have for ``model.args`` ``args``.

        E's learned positional terms ``W`` (``N × N``) and ``b`` (``N``) are sized for
        ``num_frames``; a sampler or test plan of another length would train or test
        positions the other never saw. Read by ``load_config`` (``check_components``).

        Returns:
            ``(num_frames, "model.args.num_frames")`` when E is on, else ``None``.
        """
        if args.get("enhancement", "second_order") != "second_order":
            return None
        return int(args.get("num_frames", 6)), "model.args.num_frames"

    def forward(self, batch: dict[str, Tensor]) -> ReIDOutput:
        """Encode clips.

        Args:
            batch: ``images`` ``(B, T, 3, H, W)``; optional ``frame_mask`` ``(B, T)`` bool
                (``True`` = real frame; padded frames get zero temporal weight and are not
                pooled by E).
        Returns:
            :class:`ReIDOutput` with ``embedding`` ``(B, embed_dim)`` L2-normalised,
            ``metric_feature`` the same tensor, ``logits`` ``(B, num_classes)`` in training
            mode (when ``num_classes > 0``), ``attention["spatial"]`` ``(B, T, K, h, w)``
            (absent when ``spatial=False``) and ``attention["temporal"]`` ``(B, T, K)``.
        """
        images = batch["images"]
        if images.dim() != 5:
            raise ValueError(f"STAN expects batch['images'] of shape (B, T, 3, H, W), got "
                             f"{tuple(images.shape)}")
        b = images.shape[0]
        mask = batch.get("frame_mask")
        if mask is not None:
            mask = mask.to(device=images.device, dtype=torch.bool)
            if not bool(mask.any(dim=1).all()):
                raise ValueError("frame_mask has a clip with no real frame")
        # Padded frames skip the backbone (zeros): their receptive fields come out exactly
        # uniform and their features are masked out of E and of the temporal pooling.
        feat = fold_time(run_backbone_on_frames(self.backbone, images, mask))  # (B·T, D, h, w)
        attention: dict[str, Tensor] = {}
        if self.spatial_attention is not None:
            x, s = self.spatial_attention(feat)  # (B·T, K, D), (B·T, K, h, w)
            attention["spatial"] = unfold_time(s, b)
        else:
            x = feat.mean(dim=(2, 3))[:, None]  # (B·T, 1, D)
        x = unfold_time(x, b)  # (B, T, K, D)
        if self.enhancement is not None:
            x = self.enhancement(x, mask)
        pooled, weights = self.temporal_attention(x, mask)  # (B, K, D), (B, T, K)
        attention["temporal"] = weights
        z = self.embed(pooled.flatten(1))  # eq. 15 then FC
        if self.embed_bn is not None:
            z = self.embed_bn(z)
        embedding = F.normalize(z, dim=1)
        logits = self.classifier(z) if self.classifier is not None and self.training else None
        return ReIDOutput(embedding=embedding, logits=logits, metric_feature=embedding,
                          attention=attention)


# The class's own constructor is the factory builder: its signature is what
# ``build_model`` validates ``model.args`` against.
build_stan = STAN


def receptive_field_overlap(spatial: Tensor) -> Tensor:
    """Mean pairwise Bhattacharyya coefficient of the ``K`` receptive fields (a diagnostic).

    ``BC(s_i, s_j) = Σ_l √(s_i,l s_j,l) = 1 − H²(s_i, s_j)`` (eq. 8): 1 for identical fields, 0
    for disjoint ones. Averaged over the ``K(K−1)`` ordered pairs ``i ≠ j`` and all frames.

    Args:
        spatial: ``(B, T, K, h, w)`` (or ``(N, K, h, w)``) receptive fields.
    Returns:
        scalar tensor in ``[0, 1]``; ``nan`` when ``K = 1``.
    """
    k = spatial.shape[-3]
    r = spatial.reshape(-1, k, spatial.shape[-2] * spatial.shape[-1]).clamp_min(0).sqrt()
    bc = torch.bmm(r, r.transpose(1, 2))  # (N, K, K)
    off = ~torch.eye(k, dtype=torch.bool, device=spatial.device)
    if k < 2:
        return torch.tensor(math.nan)
    return bc[:, off].mean()
