"""AlignNet + TAP: body-part alignment and temporal attention (Rambhatla & Jones, BMVC 2019).

Per clip of ``T`` frames (``batch["images"]`` ``(B, T, 3, H, W)``):

1. **Appearance** (sec. 3.2, eq. 1): ResNet-50 without fc and final pooling, per frame →
   ``f_a`` ``(C, h, w)``, ``C = 2048`` (``4 × 2`` at 128 × 64, ``8 × 4`` at 256 × 128).
2. **Pose** (sec. 3.1): OpenPose's 57 maps per frame ``f_p`` (19 heatmaps, 38 PAFs, channel
   order of :mod:`videoreid.modalities.pose.layout`), either rendered from keypoints by the
   data loader (``pose_source="keypoints"``, ``batch["pose"]`` ``(B, T, 57, h_p, w_p)``) or
   computed by the OpenPose network inside the model (``pose_source="openpose"``), which is
   then fine-tuned with its own (lower) learning rate (sec. 4.2; parameter prefix
   ``pose_net.``).
3. **Composite part maps** (eq. 2): ``r = mean_{k ∈ S_r} f_{p,k}`` for the upper, middle and
   lower body sets :data:`PART_CHANNELS` (the paper's joint and limb lists, written out below),
   resized to the appearance resolution ``h × w`` (area average when shrinking).
4. **Spatial softmax** (eq. 3) over the ``h·w`` cells → ``r̄`` (each sums to 1).
5. **Part features** (eq. 4–5): ``f_{a,r} = f_a ⊙ r̄`` pooled over space; frame descriptor
   (eq. 6) ``[avgpool(f_a); f̄_{a,u}; f̄_{a,m}; f̄_{a,l}]`` (``4·C``).
6. **Temporal pooling** (sec. 3.3, eq. 7–9): TAP — two 3×3 convs keeping the size (BN + ReLU
   after the first), mean over space and channels → one score per frame, sigmoid — once on
   ``f_a`` (weights for the appearance block) and once on ``f_{a,u}`` (weights shared by the
   three part blocks, as the paper does); or a plain average (``temporal="avg"``, the
   AlignNet + AvgPool row of table 1b).
7. **Head** (sec. 3.4): an fc classifier on the video descriptor for the cross-entropy loss;
   the margin-ranking metric loss (``losses.ranking``) and retrieval use the descriptor itself
   (euclidean distance, sec. 4.2).

Table 1b rows: Baseline = ``parts=False, temporal="avg"`` (ResNet-50, spatial and temporal
average pooling, same head and losses); AlignNet + AvgPool = ``parts=True, temporal="avg"``;
AlignNet + TAP = ``parts=True, temporal="tap"``.

``ReIDOutput.attention``: ``"parts"`` ``(B, T, 3, h, w)`` (``r̄``), ``"tap/appearance"`` and
``"tap/parts"`` ``(B, T)`` (the sigmoid weights in (0, 1); 0 on padded frames) when TAP is
used; with ``separate_part_tap`` ``"tap/parts/upper"``, ``".../middle"``, ``".../lower"``.

Decisions where the paper is ambiguous (the same table, with the paper's words and the
switch for each other reading, is in docs/methods/alignnet.md). The defaults differ from the
printed equations in three places — ``paf_mode="abs"`` (eq. 2), ``part_pool="sum"`` (eq. 5),
``tap_pooling="weighted_mean"`` (eq. 7) — and ``configs/alignnet/ablation/table1b_mars/
04_alignnet_tap_printed_equations.yaml`` runs the method with all three as printed:

* **Set lists (eq. 2).** The upper-body limb list names "L-eye ↔ nose" twice; a set has it
  once, so ``S_u`` has 5 limbs. Limbs the paper lists nowhere (neck–shoulders,
  shoulder–ear, the background heatmap) are in no set. Every listed limb contributes both
  of its PAF channels (x and y).
* **PAF signs (eq. 2).** Eq. 2 averages the raw maps, but a PAF channel is a signed x or y
  component of a limb direction: averaged with the heatmaps, an upward limb (neck → nose has
  ``y = −1`` along the neck) *subtracts* from the map exactly where the body part is, and
  left/right limbs cancel. Measured on the synthetic frames, the raw average often peaks off
  the head (tests/test_alignnet.py); the paper's own description ("the confidence of finding
  the head, torso and legs", fig. 2) is what magnitudes give. So ``paf_mode="abs"`` (default)
  averages ``|PAF|`` (each limb a positive mask); ``paf_mode="signed"`` is eq. 2 literally.
  With ``abs`` the composite maps of a mirrored image are the mirrored composite maps (the
  three sets are closed under left/right exchange), so a horizontal-flip augmentation that
  mirrors the pose maps without swapping channels is exact for this model.
* **Resolution.** OpenPose's maps come at stride 8 (16 × 8 at 128 × 64), the appearance
  features at stride 32 (or 16 with ``last_stride=1``); the paper multiplies them, so the
  composite maps are brought to the appearance grid (area average, i.e. the mean of the
  finer cells each coarse cell covers) before the softmax of eq. 3, which is then a
  distribution over the same cells as ``f_a``.
* **Softmax temperature.** Eq. 3 is a plain softmax; heatmaps lie in [0, 1] and a composite
  of ~16 channels rarely exceeds 0.3, so ``r̄`` stays close to uniform unless the pose network
  learns larger outputs. ``part_scale`` multiplies ``r`` before the softmax (1 = the paper)
  and ``learn_part_scale`` makes it a learned scalar (kept positive through its log).
* **Part pooling (eq. 5).** ``avgpool(f_a ⊙ r̄)`` is the ``r̄``-weighted *sum* of ``f_a``
  divided by ``h·w``, i.e. ``1/(h·w)`` smaller than ``avgpool(f_a)``, so with a euclidean
  distance the part blocks would barely count. ``part_pool="sum"`` (default) uses the
  weighted sum ``Σ r̄ f_a`` (each part block on the scale of the appearance block);
  ``part_pool="avg"`` is eq. 5 literally.
* **Eq. 7.** The text calls the video descriptor "the weighted average of per frame
  descriptors" while eq. 7 prints ``Σ w^i f^i``. ``tap_pooling="weighted_mean"`` (default)
  uses ``Σ w f / Σ w`` over real frames (the descriptor's scale then does not depend on the
  clip length, which matters when 15-frame test chunks are averaged); ``"sum"`` is eq. 7 as
  printed.
* **TAP per part (sec. 3.3).** The paper applies one TAP to ``f_{a,u}`` and uses its weights
  for all three parts (it "experimented with learning separate TAP nets for each
  component"); ``separate_part_tap=True`` gives each part its own TAP on ``f_a ⊙ r̄_r``.
* **Score normalisation** (table 2) combines the row and column z-scores symmetrically by
  default; ``eval.score_norm_mode`` selects ``sequential``, ``row`` or ``column``.
* **TAP widths.** The paper gives none. ``tap_hidden`` (256) is the width of both convs; the
  channel mean of the second conv's output is linear, so its width only changes the
  parametrisation. Padded frames skip TAP (and its BatchNorm) and get weight 0.
* **Head.** The paper has "the fc layer" and both losses; ``bnneck=False`` (default) is that:
  ``logits = fc(f_video)``, metric feature and embedding ``= f_video``. ``bnneck=True`` puts a
  BNNeck between them (metric loss before BN, classifier and retrieval after).
* **Padded frames** (``frame_mask`` false) skip the backbone and the pose network and are
  left out of every temporal pooling.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoreid.models.backbones.resnet import build_backbone
from videoreid.models.layers import BNNeck, fold_time, masked_mean, spatial_softmax, unfold_time
from videoreid.models.openpose import OpenPoseBody, imagenet_to_openpose, load_openpose_weights
from videoreid.models.output import ReIDOutput

log = logging.getLogger(__name__)

__all__ = [
    "NUM_POSE_MAPS", "PART_NAMES", "PART_JOINTS", "PART_LIMBS", "PART_CHANNELS",
    "POSE_SOURCES", "TEMPORAL_MODES", "part_weight_matrix", "composite_part_maps",
    "resize_maps", "TemporalAttentionPooling", "AlignNet", "build_alignnet",
]

NUM_POSE_MAPS = 57
PART_NAMES: tuple[str, ...] = ("upper", "middle", "lower")

# Sec. 3.2, as listed in the paper (COCO-18 names of videoreid.modalities.pose.layout).
PART_JOINTS: dict[str, tuple[str, ...]] = {
    "upper": ("r_eye", "l_eye", "r_ear", "l_ear", "nose", "neck"),
    "middle": ("r_elbow", "l_elbow", "r_shoulder", "l_shoulder", "r_wrist", "l_wrist"),
    "lower": ("r_hip", "l_hip", "r_knee", "l_knee", "r_ankle", "l_ankle"),
}
PART_LIMBS: dict[str, tuple[tuple[str, str], ...]] = {
    "upper": (("r_eye", "r_ear"), ("l_eye", "l_ear"), ("l_eye", "nose"), ("r_eye", "nose"),
              ("nose", "neck")),  # the paper lists "L-eye <-> nose" twice
    "middle": (("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"), ("neck", "r_hip"),
               ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"), ("neck", "l_hip")),
    "lower": (("r_hip", "r_knee"), ("r_knee", "r_ankle"), ("l_hip", "l_knee"),
              ("l_knee", "l_ankle")),
}

# The same sets as channel indices of the 57 maps: heatmap k = COCO-18 keypoint k; limb j of
# the network's PAF order has x at 19 + 2j and y at 20 + 2j (tests check these against the
# name lists above via videoreid.modalities.pose.layout).
PART_CHANNELS: dict[str, tuple[int, ...]] = {
    "upper": (
        0, 1, 14, 15, 16, 17,  # heatmaps: nose, neck, r_eye, l_eye, r_ear, l_ear
        53, 54,  # PAF r_eye -> r_ear (limb 17)
        55, 56,  # PAF l_eye -> l_ear (limb 18)
        51, 52,  # PAF nose -> l_eye (limb 16)
        49, 50,  # PAF nose -> r_eye (limb 15)
        47, 48,  # PAF neck -> nose (limb 14)
    ),
    "middle": (
        2, 3, 4, 5, 6, 7,  # heatmaps: r_shoulder, r_elbow, r_wrist, l_shoulder, l_elbow, l_wrist
        33, 34,  # PAF r_shoulder -> r_elbow (limb 7)
        35, 36,  # PAF r_elbow -> r_wrist (limb 8)
        19, 20,  # PAF neck -> r_hip (limb 0)
        41, 42,  # PAF l_shoulder -> l_elbow (limb 11)
        43, 44,  # PAF l_elbow -> l_wrist (limb 12)
        25, 26,  # PAF neck -> l_hip (limb 3)
    ),
    "lower": (
        8, 9, 10, 11, 12, 13,  # heatmaps: r_hip, r_knee, r_ankle, l_hip, l_knee, l_ankle
        21, 22,  # PAF r_hip -> r_knee (limb 1)
        23, 24,  # PAF r_knee -> r_ankle (limb 2)
        27, 28,  # PAF l_hip -> l_knee (limb 4)
        29, 30,  # PAF l_knee -> l_ankle (limb 5)
    ),
}
_FIRST_PAF = 19

POSE_SOURCES: tuple[str, ...] = ("keypoints", "openpose")
TEMPORAL_MODES: tuple[str, ...] = ("tap", "avg")
PAF_MODES: tuple[str, ...] = ("signed", "abs")
PART_POOLS: tuple[str, ...] = ("sum", "avg")
TAP_POOLINGS: tuple[str, ...] = ("weighted_mean", "sum")


def part_weight_matrix() -> Tensor:
    """``(3, 57)``: row ``r`` has ``1/|S_r|`` on the channels of :data:`PART_CHANNELS` ``[r]``."""
    m = torch.zeros(len(PART_NAMES), NUM_POSE_MAPS)
    for i, name in enumerate(PART_NAMES):
        ch = PART_CHANNELS[name]
        m[i, list(ch)] = 1.0 / len(ch)
    return m


def composite_part_maps(pose: Tensor, paf_mode: str = "abs") -> Tensor:
    """Eq. 2: the upper/middle/lower composite maps, the mean of each set's channels.

    Args:
        pose: ``(..., 57, h, w)`` maps.
        paf_mode: ``"abs"`` (PAF component magnitudes) or ``"signed"`` (raw components).
    Returns:
        ``(..., 3, h, w)``.
    """
    if pose.shape[-3] != NUM_POSE_MAPS:
        raise ValueError(f"pose maps must have {NUM_POSE_MAPS} channels at dim -3, got "
                         f"{tuple(pose.shape)}")
    if paf_mode not in PAF_MODES:
        raise ValueError(f"unknown paf_mode {paf_mode!r}; valid: {list(PAF_MODES)}")
    if paf_mode == "abs":
        pose = torch.cat([pose[..., :_FIRST_PAF, :, :], pose[..., _FIRST_PAF:, :, :].abs()], -3)
    w = part_weight_matrix().to(device=pose.device, dtype=pose.dtype)
    return torch.einsum("rc,...chw->...rhw", w, pose)


def resize_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, K, h, w)`` → ``(N, K, *size)``: area average when shrinking, bilinear otherwise."""
    # plain ints: an ONNX export needs constant sizes (the input size is fixed anyway)
    h, w = int(maps.shape[-2]), int(maps.shape[-1])
    size = (int(size[0]), int(size[1]))
    if (h, w) == size:
        return maps
    if h % size[0] == 0 and w % size[1] == 0:  # the same windows; exportable to ONNX
        return F.avg_pool2d(maps, (h // size[0], w // size[1]))
    if h >= size[0] and w >= size[1]:
        return F.adaptive_avg_pool2d(maps, size)
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


class TemporalAttentionPooling(nn.Module):
    """TAP (sec. 3.3, eq. 8–9): a frame-quality score in (0, 1) from a feature map.

    ``conv3×3 (C → hidden, no bias) → BN → ReLU → conv3×3 (hidden → hidden)`` (both keep the
    spatial size), mean over channels and space, sigmoid.

    Args:
        in_channels: ``C``.
        hidden: width of both convs.
    """

    def __init__(self, in_channels: int, hidden: int = 256) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        nn.init.kaiming_normal_(self.conv1.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, h, w)`` → ``(N,)`` weights in (0, 1)."""
        s = self.conv2(self.relu(self.bn(self.conv1(x))))
        return torch.sigmoid(s.mean(dim=(1, 2, 3)))


def _on_real(fn, x: Tensor, keep: Tensor | None) -> Tensor:
    """``fn`` on the rows of ``x`` (frames folded into the batch) where ``keep``; zeros elsewhere."""
    if keep is None or bool(keep.all()):
        return fn(x)
    y = fn(x[keep])
    out = y.new_zeros((x.shape[0], *y.shape[1:]))
    out[keep] = y
    return out


class AlignNet(nn.Module):
    """Pose-guided alignment network with temporal attention pooling (see module docstring).

    Args:
        num_classes: training identities (fc classifier size; 0 for none).
        backbone: appearance network for :func:`build_backbone` (``"resnet50"``).
        pretrained: local ImageNet weights for the backbone, or ``None``.
        last_stride: stride of ``layer4`` (2: ``f_a`` at stride 32).
        pose_source: ``"keypoints"`` (maps from ``batch["pose"]``) or ``"openpose"``.
        pose_weights: local converted OpenPose COCO weights (``body_pose_model.pth``) for
            ``pose_source="openpose"`` (``None``: untrained network, with a warning).
        pose_stages: OpenPose CPM stages to run (6 in the published model).
        parts: use the composite part features (False: the table-1b Baseline).
        temporal: ``"tap"`` or ``"avg"``.
        tap_hidden: width of TAP's convs.
        tap_pooling: ``"weighted_mean"`` or ``"sum"`` (eq. 7 as printed).
        separate_part_tap: one TAP per composite part, each on ``f_a ⊙ r̄_r`` weighting its
            own block (sec. 3.3's "separate TAP nets for each component"); ``False`` (the
            paper's choice): one TAP on ``f_a ⊙ r̄_u`` whose weights serve all three parts.
        part_pool: ``"sum"`` or ``"avg"`` (eq. 5 as printed).
        paf_mode: ``"abs"`` (PAF magnitudes, default) or ``"signed"`` (eq. 2 literally).
        part_scale: factor on the composite maps before the softmax of eq. 3.
        learn_part_scale: learn that factor.
        bnneck: BNNeck head instead of the plain fc.
        channels_last: channels-last backbone.
        init_from: videoreid checkpoint or state dict to initialise from (matching names and
            shapes; e.g. the synthetic pre-training run), applied after the other weights.

    ``modalities`` is ``("images", "pose")`` with the keypoint source and parts, else
    ``("images",)``.
    """

    modalities: tuple[str, ...] = ("images", "pose")

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        pretrained: str | None = None,
        last_stride: int = 2,
        pose_source: str = "keypoints",
        pose_weights: str | None = None,
        pose_stages: int = 6,
        parts: bool = True,
        temporal: str = "tap",
        tap_hidden: int = 256,
        tap_pooling: str = "weighted_mean",
        separate_part_tap: bool = False,
        part_pool: str = "sum",
        paf_mode: str = "abs",
        part_scale: float = 1.0,
        learn_part_scale: bool = False,
        bnneck: bool = False,
        channels_last: bool = False,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        for value, valid, what in ((pose_source, POSE_SOURCES, "pose_source"),
                                   (temporal, TEMPORAL_MODES, "temporal"),
                                   (tap_pooling, TAP_POOLINGS, "tap_pooling"),
                                   (part_pool, PART_POOLS, "part_pool"),
                                   (paf_mode, PAF_MODES, "paf_mode")):
            if value not in valid:
                raise ValueError(f"unknown {what} {value!r}; valid: {list(valid)}")
        if part_scale <= 0:
            raise ValueError(f"part_scale must be > 0, got {part_scale}")
        self.num_classes = num_classes
        self.parts = bool(parts)
        self.pose_source = pose_source
        self.temporal = temporal
        self.tap_pooling = tap_pooling
        self.part_pool = part_pool
        self.paf_mode = paf_mode
        self.modalities = ("images", "pose") if parts and pose_source == "keypoints" \
            else ("images",)
        self.backbone = build_backbone(backbone, last_stride=last_stride, pretrained=pretrained,
                                       channels_last=channels_last)
        c = self.backbone.out_channels
        self.pose_net: OpenPoseBody | None = None
        if parts and pose_source == "openpose":
            self.pose_net = OpenPoseBody(stages=pose_stages)
            if pose_weights:
                load_openpose_weights(self.pose_net, pose_weights)
            else:
                log.warning("AlignNet: pose_source=openpose without pose_weights: the OpenPose "
                            "network is untrained (give model.args.pose_weights)")
        log_scale = math.log(part_scale)
        if learn_part_scale:
            self.part_log_scale = nn.Parameter(torch.tensor(log_scale))
        else:
            self.register_buffer("part_log_scale", torch.tensor(log_scale), persistent=False)
        self.tap_appearance = TemporalAttentionPooling(c, tap_hidden) if temporal == "tap" else None
        self.separate_part_tap = bool(separate_part_tap)
        self.tap_parts: nn.Module | None = None
        if temporal == "tap" and parts:
            self.tap_parts = (nn.ModuleList(TemporalAttentionPooling(c, tap_hidden)
                                            for _ in PART_NAMES)
                              if separate_part_tap else TemporalAttentionPooling(c, tap_hidden))
        self.backbone_dim = c
        self.feat_dim = c * (1 + len(PART_NAMES)) if parts else c
        self.bnneck = BNNeck(self.feat_dim, num_classes) if bnneck else None
        self.classifier = (nn.Linear(self.feat_dim, num_classes)
                           if not bnneck and num_classes > 0 else None)
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)
            nn.init.zeros_(self.classifier.bias)
        if init_from:
            from videoreid.models.backbones.pretrained import load_matching

            load_matching(self, init_from)

    # ------------------------------------------------------------------ pieces
    def pose_maps(self, batch: dict[str, Tensor], keep: Tensor | None) -> Tensor:
        """``(B·T, 57, h_p, w_p)`` pose maps from the batch or the OpenPose network."""
        images = batch["images"]
        if self.pose_net is not None:
            frames = fold_time(images)
            return _on_real(lambda x: self.pose_net(imagenet_to_openpose(x)), frames, keep)
        if "pose" not in batch:
            raise KeyError("AlignNet(pose_source='keypoints') needs batch['pose'] (B, T, 57, h, "
                           "w): add 'pose' to data.modalities")
        pose = batch["pose"].to(dtype=images.dtype)
        if pose.dim() != 5 or pose.shape[:2] != images.shape[:2] or pose.shape[2] != NUM_POSE_MAPS:
            raise ValueError(f"batch['pose'] must be (B, T, {NUM_POSE_MAPS}, h, w) matching "
                             f"images {tuple(images.shape[:2])}, got {tuple(pose.shape)}")
        return fold_time(pose)

    def part_attention(self, pose: Tensor, size: tuple[int, int]) -> Tensor:
        """Eq. 2–3: ``(N, 57, h_p, w_p)`` → ``(N, 3, h, w)`` spatial distributions."""
        r = resize_maps(composite_part_maps(pose, self.paf_mode), size)
        return spatial_softmax(r.float() * self.part_log_scale.exp()).to(pose.dtype)

    def _temporal_pool(self, x: Tensor, w: Tensor | None, mask: Tensor | None) -> Tensor:
        """``(B, T, D)`` frame features → ``(B, D)``: masked mean, or TAP weights (eq. 7)."""
        if w is None:
            return masked_mean(x, mask, dim=1)
        if mask is not None:
            w = w * mask.to(w.dtype)
        pooled = torch.einsum("bt,btd->bd", w, x)
        if self.tap_pooling == "weighted_mean":
            pooled = pooled / w.sum(dim=1, keepdim=True).clamp_min(1e-6)
        return pooled

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, Tensor]) -> ReIDOutput:
        """Encode clips.

        Args:
            batch: ``images`` ``(B, T, 3, H, W)``; ``pose`` ``(B, T, 57, h_p, w_p)`` with the
                keypoint source; optional ``frame_mask`` ``(B, T)`` bool (True = real frame).
        Returns:
            :class:`ReIDOutput`: ``embedding`` ``(B, 4·C)`` (``(B, C)`` without parts),
            ``metric_feature`` (the same, or the pre-BN feature with ``bnneck``), ``logits``
            ``(B, num_classes)`` in training mode, ``attention`` (module docstring).
        """
        images = batch["images"]
        if images.dim() != 5:
            raise ValueError(f"AlignNet expects batch['images'] (B, T, 3, H, W), got "
                             f"{tuple(images.shape)}")
        b, t = images.shape[:2]
        mask = batch.get("frame_mask")
        keep = None
        if mask is not None:
            mask = mask.to(device=images.device, dtype=torch.bool)
            if not bool(mask.any(dim=1).all()):
                raise ValueError("frame_mask has a clip with no real frame")
            keep = mask.reshape(-1)
        fa = _on_real(self.backbone, fold_time(images), keep)  # (N, C, h, w), eq. 1
        n, c, h, w = fa.shape
        app = fa.mean(dim=(2, 3))  # avgpool(f_a), eq. 5
        attention: dict[str, Tensor] = {}
        blocks = [app]
        rbar = None
        if self.parts:
            rbar = self.part_attention(self.pose_maps(batch, keep), (h, w))  # (N, 3, h, w)
            part = torch.einsum("nrhw,nchw->nrc", rbar, fa)  # Σ r̄ f_a, eq. 4-5
            if self.part_pool == "avg":
                part = part / (h * w)
            blocks += list(part.unbind(1))
            attention["parts"] = unfold_time(rbar, b)
        w_app = w_part = None
        if self.tap_appearance is not None:
            w_app = unfold_time(_on_real(self.tap_appearance, fa, keep), b)  # (B, T)
            if mask is not None:
                w_app = w_app * mask.to(w_app.dtype)
            attention["tap/appearance"] = w_app
        w_parts: list[Tensor | None] = [None] * (len(blocks) - 1)
        if self.tap_parts is not None:
            # f_{a,r} = f_a ⊙ r̄_r (eq. 4); shared TAP: r = u only, its weights for every part
            taps = list(self.tap_parts) if self.separate_part_tap else [self.tap_parts]
            for i, tap in enumerate(taps):
                w_part = unfold_time(_on_real(tap, fa * rbar[:, i:i + 1], keep), b)
                if mask is not None:
                    w_part = w_part * mask.to(w_part.dtype)
                w_parts[i] = w_part
                key = f"tap/parts/{PART_NAMES[i]}" if self.separate_part_tap else "tap/parts"
                attention[key] = w_part
            if not self.separate_part_tap:
                w_parts = [w_parts[0]] * len(w_parts)
        pooled = [self._temporal_pool(unfold_time(blocks[0], b), w_app, mask)]
        pooled += [self._temporal_pool(unfold_time(x, b), w, mask)
                   for x, w in zip(blocks[1:], w_parts, strict=True)]
        video = torch.cat(pooled, dim=1)  # eq. 6-7
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
build_alignnet = AlignNet
