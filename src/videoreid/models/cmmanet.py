"""CMMANet: Concentrated Multi-grained Multi-Attention Network (Hu, Liu, Huang, 2020).

Pipeline per clip of ``T`` frames (the paper's ``N``; sec. III-B, fig. 2):

1. ResNet-50 ``stem..layer3`` per frame ("the first four layers": conv1, layer1..layer3);
2. the first Multi-Attention Module (MAM) on the ``layer3`` map (``1024 × 16 × 8`` at 256×128);
3. ``layer4`` on the MAM's output;
4. the second MAM on the ``layer4`` map (``2048 × 8 × 4``, eq. 1–4 are written for this one);
5. video feature ``F = SpatialAvg(TemporalAvg(f̂_1 … f̂_N))`` (eq. 5), ``D = 2048``.

A MAM (:class:`MultiAttentionModule`) has ``K`` submodules, each
``Conv1×1(D→256) → ReLU → Conv1×1(256→1)`` (eq. 1), a softmax over the ``h·w`` positions
(eq. 2), attended features ``x_k = a_k ⊙ f`` (eq. 3) and the shortcut-max
``f̂ = f + max_k x_k`` (eq. 4). The modules are inserted *between* backbone stages here; the
backbone knows nothing about them (docs/architecture.md, "Backbone contract").

The maps of both MAMs are returned in ``ReIDOutput.attention`` as ``"spatial/mam1"`` (after
``layer3``) and ``"spatial/mam2"`` (after ``layer4``), each ``(B, T, K, h, w)``; the diversity
(eq. 7–8) and concentration (eq. 9–10) terms in :mod:`videoreid.losses.attention` read them.
Models never compute losses.

Decisions (paper section / equation in brackets):

* **K = 4 submodules per MAM.** The text never gives K; fig. 1 shows "four rows" of heatmaps
  "from different attention submodules", the only figure that shows a whole MAM. ``K`` may be
  one int for every MAM or one per MAM.
* **Both MAMs get both regularisers** ("the diversity and the concentrated objectives which are
  imposed on the two MAMs", IV-B; "the objectives for their attentive distributions are
  identical", III-B). That is configuration (the loss list), not model code.
* **No bias on the second 1×1 conv** (eq. 1): a per-submodule constant cancels in the spatial
  softmax (eq. 2) and would never receive a gradient.
* **Eq. 3–4 without the K-fold tensor.** Softmax weights are positive, so per position and
  channel ``max_k a_k f = f · max_k a_k`` where ``f ≥ 0`` and ``f · min_k a_k`` where ``f < 0``
  (:func:`shortcut_max`). This is exact — values and (sub)gradients, which reach the arg-max
  submodule as ``torch.max`` would — and needs no ``(N, K, D, h, w)`` buffer (350 MB for the
  first MAM of a 28 × 6-frame batch). :func:`shortcut_max_reference` is the literal version.
* **Scale of the attended term.** Eq. 2 normalises each map over ``h·w`` positions, so a
  uniform map is ``1/(h·w)`` everywhere and at initialisation ``f̂ ≈ f (1 + 1/(h·w))``: a MAM
  starts as (almost) the identity and only changes the features as its maps concentrate. We
  keep the paper's formula as written; nothing rescales the maps.
* **Eq. 5 order.** ``SpatialAvg`` and ``TemporalAvg`` are linear and commute; we take the
  spatial mean per frame first (cheaper) and then the temporal mean. The temporal mean is
  mask-aware: padded frames (``frame_mask`` false) are not run through the network at all
  (so they do not touch batch-norm statistics), get weight 0 in the mean and exactly uniform
  attention maps in the output (the attention losses skip them through the same mask).
* **Head.** "the classification loss and the triplet loss [35] constrain the final video
  representations" (IV-B) and retrieval compares the ``F`` (III-B, end): by default
  (``bnneck=False``) ``embedding = metric_feature = F`` and a linear classifier on ``F`` gives
  the logits. ``bnneck=True`` is the common BNNeck alternative (metric loss on ``F``,
  classifier and retrieval on ``BN(F)``); it is not in the paper.
* **Ablations (tables IV–V).** ``mams=()`` is "Baseline" (ResNet-50 + temporal average,
  CE + triplet), ``mams=("layer4",)`` "Single MAM" (MAM behind the last layer only; its map is
  ``"spatial/mam2"``), ``mams=("layer3", "layer4")`` "Multi-MAM". "+Loss_con" is the loss list.
* ``last_stride=2`` gives the paper's ``8 × 4`` layer4 map at ``256 × 128``.
* **Readings in the losses and configs** (the table in docs/methods/cmmanet.md): eq. 8's
  squared overlaps for the diversity loss (``variant: hellinger``; eq. 7's unsquared sum is
  ``variant: bhattacharyya``); ``tr(−log(Â + ε))`` for eq. 10 (``eps`` of the concentration
  spec; the gradient never vanishes); loss weights 1; RIS with ``g ∈ {1..4}``
  (``max_interval``) and every valid start (``paper_start=True`` for the literal range);
  test-time clips weighted by their real frames, which makes the dense test exactly eq. 5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoreid.models.backbones.base import STAGES
from videoreid.models.backbones.resnet import build_backbone
from videoreid.models.layers import BNNeck, fold_time, masked_mean, spatial_softmax, unfold_time
from videoreid.models.output import ReIDOutput

__all__ = [
    "MAM_KEYS",
    "MultiAttentionModule",
    "CMMANet",
    "build_cmmanet",
    "shortcut_max",
    "shortcut_max_reference",
]

# Backbone stage a MAM follows → its name in ReIDOutput.attention. The paper's MAMs sit
# "behind the last two layers"; "mam1" is the shallower (coarse) one.
MAM_KEYS: dict[str, str] = {"layer3": "spatial/mam1", "layer4": "spatial/mam2"}


def shortcut_max(f: Tensor, a: Tensor) -> Tensor:
    """``f̂ = f + max_k (a_k ⊙ f)`` (eq. 3–4) for non-negative maps, without the K-fold tensor.

    Args:
        f: ``(N, D, h, w)`` features.
        a: ``(N, K, h, w)`` attention maps, ``a ≥ 0``.
    Returns:
        ``(N, D, h, w)``.
    """
    hi = a.amax(dim=1, keepdim=True)  # (N, 1, h, w)
    lo = a.amin(dim=1, keepdim=True)
    # a_k >= 0: the largest a_k f is f·max a where f >= 0 and f·min a where f < 0.
    return f * (1.0 + torch.where(f >= 0, hi, lo))


def shortcut_max_reference(f: Tensor, a: Tensor) -> Tensor:
    """Eq. 3–4 as written: stack the ``K`` attended features ``(N, K, D, h, w)``, max over K."""
    x = a[:, :, None] * f[:, None]  # eq. 3
    return f + x.max(dim=1).values  # eq. 4


class MultiAttentionModule(nn.Module):
    """``K`` attention submodules on one feature map (eq. 1–4).

    The ``K`` inner 1×1 convs ``D → hidden`` are one conv ``D → K·hidden``; the ``K`` outer
    ``hidden → 1`` convs are one grouped conv ``K·hidden → K`` (group ``k`` sees only
    submodule ``k``'s hidden units) — exactly ``K`` independent submodules.

    Args:
        in_channels: ``D`` of the feature map.
        K: number of submodules.
        hidden: ``D_1`` (256 in the paper).
    """

    def __init__(self, in_channels: int, K: int = 4, hidden: int = 256) -> None:
        super().__init__()
        if K < 1 or hidden < 1 or in_channels < 1:
            raise ValueError(f"MultiAttentionModule: in_channels, K and hidden must be >= 1, got "
                             f"{in_channels}, {K}, {hidden}")
        self.K = int(K)
        self.hidden = nn.Conv2d(in_channels, self.K * hidden, kernel_size=1)
        # No bias: a per-submodule constant cancels in the spatial softmax (eq. 2).
        self.score = nn.Conv2d(self.K * hidden, self.K, kernel_size=1, groups=self.K, bias=False)

    def attention(self, f: Tensor) -> Tensor:
        """``(N, D, h, w)`` → maps ``(N, K, h, w)``, each summing to 1 over ``h·w`` (eq. 1–2)."""
        r = self.score(F.relu(self.hidden(f)))  # eq. 1
        return spatial_softmax(r.float()).to(f.dtype)  # eq. 2, in float32 under autocast

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        """Attend and add the shortcut.

        Args:
            f: ``(N, D, h, w)`` per-frame features.
        Returns:
            ``f̂`` ``(N, D, h, w)`` (eq. 4) and the maps ``a`` ``(N, K, h, w)`` (eq. 2).
        """
        a = self.attention(f)
        return shortcut_max(f, a), a


def _mam_stages(mams: Sequence[str]) -> tuple[str, ...]:
    stages = tuple(str(m) for m in mams)
    bad = [m for m in stages if m not in MAM_KEYS]
    if bad:
        raise ValueError(f"CMMANet: a MAM can follow only {list(MAM_KEYS)} (the paper's last two "
                         f"layers), got {bad}; use () for the Baseline")
    if len(set(stages)) != len(stages):
        raise ValueError(f"CMMANet: duplicate MAM stage in {list(stages)}")
    return tuple(sorted(stages, key=STAGES.index))


class CMMANet(nn.Module):
    """Backbone with Multi-Attention Modules between stages, temporal + spatial average, head.

    Args:
        num_classes: training identities (classifier outputs; 0 for none).
        backbone: backbone name for :func:`build_backbone` (``"resnet50"`` in the paper).
        K: submodules per MAM, one int for all or one per entry of ``mams`` (paper: 4).
        mams: stages a MAM follows: ``("layer3", "layer4")`` Multi-MAM (the paper's model),
            ``("layer4",)`` Single MAM, ``()`` Baseline.
        hidden: width ``D_1`` of each submodule's inner 1×1 conv (256).
        bnneck: BNNeck head instead of the paper's linear classifier on ``F``.
        pretrained: local backbone weight file (torchvision-style keys) or ``None``.
        last_stride: stride of ``layer4`` (2: ``8 × 4`` map at ``256 × 128``).
        channels_last: channels-last backbone.

    ``forward(batch)`` takes ``batch["images"]`` ``(B, T, 3, H, W)`` and an optional
    ``batch["frame_mask"]`` ``(B, T)`` bool; see :meth:`forward`.
    """

    modalities: tuple[str, ...] = ("images",)

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        K: int | Sequence[int] = 4,
        mams: Sequence[str] = ("layer3", "layer4"),
        hidden: int = 256,
        bnneck: bool = False,
        pretrained: str | None = None,
        last_stride: int = 2,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(mams, str):
            raise TypeError(f"CMMANet: mams must be a sequence of stage names, got {mams!r}")
        # Keep the caller's pairing of K with stage when K is per MAM, then order by depth.
        given = tuple(str(m) for m in mams)
        ks = [int(K)] * len(given) if isinstance(K, int) else [int(k) for k in K]
        if len(ks) != len(given):
            raise ValueError(f"CMMANet: K={list(ks)} gives {len(ks)} values for "
                             f"{len(given)} MAMs {list(given)}")
        self.stages = _mam_stages(given)
        k_of = dict(zip(given, ks, strict=True))
        self.num_classes = int(num_classes)
        self.backbone = build_backbone(backbone, last_stride=last_stride, pretrained=pretrained,
                                       channels_last=channels_last)
        self.mams = nn.ModuleDict({
            s: MultiAttentionModule(self.backbone.feature_info[s].channels, k_of[s], hidden)
            for s in self.stages
        })
        dim = self.backbone.out_channels
        self.feat_dim = dim  # size of F (eq. 5) = metric_feature
        self.bnneck = BNNeck(dim, self.num_classes) if bnneck else None
        self.classifier = (nn.Linear(dim, self.num_classes)
                           if not bnneck and self.num_classes > 0 else None)
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)
            nn.init.zeros_(self.classifier.bias)

    @property
    def attention_keys(self) -> tuple[str, ...]:
        """Names of the maps in ``ReIDOutput.attention``, shallow to deep."""
        return tuple(MAM_KEYS[s] for s in self.stages)

    def frame_features(self, frames: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Backbone with the MAMs inserted, for a batch of frames.

        Args:
            frames: ``(N, 3, H, W)``.
        Returns:
            ``f̂`` of the last stage ``(N, D, h, w)`` (``f̂`` of MAM2, or plain ``layer4``
            features without one) and ``{stage: maps (N, K, h_s, w_s)}``.
        """
        x, start, maps = frames, STAGES[0], {}
        for stage in self.stages:
            x = self.backbone.forward_stages(x, start, stage)
            x, maps[stage] = self.mams[stage](x)
            i = STAGES.index(stage) + 1
            start = STAGES[i] if i < len(STAGES) else None
        if start is not None:
            x = self.backbone.forward_stages(x, start, STAGES[-1])
        return x, maps

    def forward(self, batch: dict[str, Tensor]) -> ReIDOutput:
        """Encode clips.

        Args:
            batch: ``images`` ``(B, T, 3, H, W)``; optional ``frame_mask`` ``(B, T)`` bool
                (``True`` = real frame).
        Returns:
            :class:`ReIDOutput` with ``embedding`` ``(B, D)`` (``F`` of eq. 5, or ``BN(F)``
            with ``bnneck``), ``metric_feature`` ``F`` ``(B, D)``, ``logits``
            ``(B, num_classes)`` in training mode, and ``attention["spatial/mam1"]``,
            ``attention["spatial/mam2"]`` ``(B, T, K, h, w)`` for the MAMs present (uniform on
            padded frames).
        """
        images = batch["images"]
        if images.dim() != 5:
            raise ValueError(f"CMMANet expects batch['images'] of shape (B, T, 3, H, W), got "
                             f"{tuple(images.shape)}")
        b, t = images.shape[:2]
        frames = fold_time(images)
        mask = batch.get("frame_mask")
        keep = None
        if mask is not None:
            mask = mask.to(device=images.device, dtype=torch.bool)
            if mask.shape != (b, t):
                raise ValueError(f"frame_mask has shape {tuple(mask.shape)}, expected {(b, t)}")
            if not bool(mask.any(dim=1).all()):
                raise ValueError("frame_mask has a clip with no real frame")
            if not bool(mask.all()):
                keep = mask.reshape(-1)
                frames = frames[keep]  # padded frames never enter the network
        feat, maps = self.frame_features(frames)
        pooled = feat.mean(dim=(2, 3))  # SpatialAvg per frame, (N_real, D)
        attention: dict[str, Tensor] = {}
        for stage, a in maps.items():
            if keep is not None:
                full = a.new_full((b * t, *a.shape[1:]), 1.0 / (a.shape[-2] * a.shape[-1]))
                full[keep] = a
                a = full
            attention[MAM_KEYS[stage]] = unfold_time(a, b)
        if keep is not None:
            full = pooled.new_zeros((b * t, pooled.shape[1]))
            full[keep] = pooled
            pooled = full
        video = masked_mean(unfold_time(pooled, b), mask, dim=1)  # eq. 5, (B, D)
        if self.bnneck is not None:
            embedding, logits = self.bnneck(video)
        else:
            embedding = video
            logits = (self.classifier(video)
                      if self.classifier is not None and self.training else None)
        return ReIDOutput(embedding=embedding, logits=logits, metric_feature=video,
                          attention=attention)


# The class's own constructor is the factory builder: its signature is what
# ``build_model`` validates ``model.args`` against.
build_cmmanet = CMMANet
