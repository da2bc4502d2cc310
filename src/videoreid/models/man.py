"""Flow-guided Mutual Attention Network (Kiran et al., "A Flow-Guided Mutual Attention Network
for Video-Based Person Re-Identification", sec. 3).

Two ResNet streams of the same architecture without weight sharing (sec. 3): the image stream
``H_app`` on RGB frames ``(B, T, 3, H, W)`` and the flow stream ``H_flow`` on optical flow
``(B, T, 2, H, W)`` (its first conv initialised from the RGB weights by
``backbones.pretrained.adapt_input_conv`` when ``pretrained`` is given). Per frame:

1. both streams run up to stage ``l`` (eq. 2): ``φ^l``, ``f^l`` of shape ``(B·T, C_l, h, w)``;
2. mutual attention (eq. 3–5): ``ζ_app``, ``ζ_flow`` are 1×1 convs ``C_l → 1`` with a ReLU,
   ``ρ = ζ_app(φ^l) ⊙ ζ_flow(f^l)``, ``M = sigmoid(ρ)`` ``(B·T, 1, h, w)``, and *both* streams
   are multiplied by ``M``;
3. both streams run the remaining stages; global average pooling gives ``φ^n``, ``f^n``
   ``(B, T, C)``;
4. temporal aggregation per stream — the paper's weighted feature addition (eq. 6–8, below)
   or, for table 2, temporal average pooling, temporal attention or an RNN (Gao & Nevatia,
   reusing :mod:`videoreid.models.aggregation`);
5. concatenation ``(B, 2C)`` → FC ``2C → C`` (4096 → 2048 for ResNet-50) → identity classifier
   (training). CE + batch-hard triplet (configs).

Outputs (:class:`ReIDOutput`): ``embedding`` = ``metric_feature`` = the FC output ``(B, C)``;
``logits (B, num_classes)`` in training; ``attention["mutual"]`` = ``M`` as ``(B, T, 1, h, w)``
(zeros on padded frames); ``attention["temporal/app"]``, ``["temporal/flow"]`` ``(B, T)`` when
the aggregation has frame weights.

Decisions where the paper is silent or ambiguous (the same table, with the paper's words, is
in docs/methods/man.md; each names the switch for the other reading):

* **Stage l.** The paper's "layers 2–5" (table 1) are ResNet-50's conv2_x..conv5_x, i.e. our
  ``layer1``..``layer4``; its best, "layer 4", is conv4_x = our ``layer3``, the default
  (``stage``). ``"stem"`` (after conv1 + max pool) is accepted as well; ``stage=None`` gives
  table 2's "No Attention (Two Stream)".
* **Range of M.** Both ζ end with a ReLU (sec. 3), so ``ρ ≥ 0`` and ``M ∈ [0.5, 1)``: the
  attention can at most halve a location, and it is 0.5 wherever either stream's response is
  non-positive. This is implemented as written; ``zeta_relu=False`` drops the ReLUs
  (``M ∈ (0, 1)``).
* **Weighted feature addition (eq. 6–8).** The reference ``φ^max`` is the element-wise maximum
  over the (real) frames of the pooled features (sec. 3: "a max operation in the temporal
  domain"); ``reference="joint_argmax"`` reads "the one that has maximum activation in both
  image and flow stream" as one frame shared by both streams (:func:`joint_argmax_reference`). ``ε`` is the tiny embedding of sec. 4: a two-layer MLP with 2048 units per layer
  (``Linear(C, 2048) → ReLU → Linear(2048, 2048)``, ``embed_hidden``). The paper writes one
  ``ε`` for both streams, so by default the two streams share it (``share_embedding``).
  ``w_n = exp(cos(ε(φ^n), ε(φ^max)))`` (eq. 6, 7). Eq. 8 sums ``w_n φ^n`` without
  normalisation; we divide by ``Σ w_n`` (``normalize_weights=True``, i.e. a softmax of the
  cosines), because the unnormalised sum grows with the number of frames, so a feature would
  change scale between the training length, dense test clips and repeat-padded short
  tracklets, which matters for the euclidean ranking. ``normalize_weights=False`` is eq. 8
  as printed (padded frames still get weight 0).
* **Test feature.** The paper removes "the fully connected layer" at test time yet matches
  2048-d features (sec. 4 "Evaluation Measures"), which is the size of the FC output, not of
  the 4096-d concatenation; so the retrieval feature is the FC output and what is removed is
  the classifier. ``bnneck=True`` swaps the plain classifier for a BNNeck (not in the paper).
* **Flow size.** Flow maps of another size than the frames (a flow cache at a fraction of the
  frame size) are resized to the frame size, displacements rescaled with them, so that both
  streams meet at stage ``l`` with the same grid.
* **Clip length.** Sec. 4 trains on 4 frames; table 3's best row (80.0 / 86.6, the number of
  tables 2 and 4) uses 16. ``configs/man/mars.yaml`` is 4 / 4 (table 3: 77.7 / 85.4); the
  16-frame readings are ``configs/man/ablation/table3_mars/15_mutual_wa_t16.yaml`` and
  ``16_mutual_wa_train4_test16.yaml``.
* **Padded frames** (``frame_mask`` false) skip both backbones, as in the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoreid.models.aggregation import AGGREGATIONS, build_aggregation, frame_vectors
from videoreid.models.backbones.base import STAGES, Backbone
from videoreid.models.backbones.resnet import build_backbone
from videoreid.models.layers import BNNeck, fold_time, unfold_time
from videoreid.models.output import ReIDOutput

__all__ = [
    "PAPER_LAYER_NAMES",
    "TEMPORAL_AGGREGATIONS",
    "MutualAttention",
    "WeightedFeatureAddition",
    "MutualAttentionNetwork",
    "build_man",
    "build_temporal_aggregation",
    "joint_argmax_reference",
    "REFERENCES",
    "check_stage",
    "resize_flow",
    "scatter_frames",
    "next_stage",
]

# Our stage names → the paper's ResNet-50 layer numbering (table 1).
PAPER_LAYER_NAMES: dict[str, str] = {
    "stem": "conv1 (+ max pool), paper 'layer 1'",
    "layer1": "conv2_x, paper 'layer 2'",
    "layer2": "conv3_x, paper 'layer 3'",
    "layer3": "conv4_x, paper 'layer 4' (best in table 1)",
    "layer4": "conv5_x, paper 'layer 5'",
}

TEMPORAL_AGGREGATIONS: tuple[str, ...] = ("weighted", *AGGREGATIONS)
REFERENCES: tuple[str, ...] = ("max", "joint_argmax")


def check_stage(stage: str | None) -> str | None:
    """Validate an attention stage; ``None`` / ``"none"`` mean no attention."""
    if stage is None or stage == "none":
        return None
    if stage not in STAGES:
        raise ValueError(f"unknown attention stage {stage!r}; valid: {list(STAGES)} or None "
                         f"({', '.join(f'{k} = {v}' for k, v in PAPER_LAYER_NAMES.items())})")
    return stage


def next_stage(stage: str) -> str | None:
    """The stage after ``stage`` (``None`` after the last)."""
    i = STAGES.index(stage)
    return STAGES[i + 1] if i + 1 < len(STAGES) else None


def resize_flow(flow: Tensor, size: Sequence[int]) -> Tensor:
    """Resize ``(N, 2, h, w)`` flow to ``size = (H, W)``, scaling ``dx`` by ``W/w``, ``dy`` by ``H/h``."""
    h, w = flow.shape[-2:]
    H, W = int(size[0]), int(size[1])
    if (h, w) == (H, W):
        return flow
    out = F.interpolate(flow, size=(H, W), mode="bilinear", align_corners=False)
    return out * torch.tensor([W / w, H / h], dtype=out.dtype, device=out.device).view(1, 2, 1, 1)


class MutualAttention(nn.Module):
    """Eq. 3–5: ``M = sigmoid(ReLU(ζ_app φ) ⊙ ReLU(ζ_flow f))``; both inputs times ``M``.

    Args:
        app_channels, flow_channels: ``C`` of the two streams at stage ``l``.
        zeta_relu: the ReLU ending each ζ (sec. 3: "1x1 convolution with Relu"); ``False``
            drops it, so ``ρ`` takes any sign and ``M ∈ (0, 1)``.

    ``forward(phi (N, C, h, w), f (N, C', h, w)) -> (phi ⊙ M, f ⊙ M, M (N, 1, h, w))``.
    """

    def __init__(self, app_channels: int, flow_channels: int, zeta_relu: bool = True) -> None:
        super().__init__()
        self.zeta_app = nn.Conv2d(app_channels, 1, kernel_size=1)
        self.zeta_flow = nn.Conv2d(flow_channels, 1, kernel_size=1)
        self.zeta_relu = bool(zeta_relu)

    def attention_map(self, phi: Tensor, f: Tensor) -> Tensor:
        """``M`` ``(N, 1, h, w)``: in ``[0.5, 1)`` with the ζ ReLUs (``ρ ≥ 0``), else ``(0, 1)``."""
        if phi.shape[-2:] != f.shape[-2:] or phi.shape[0] != f.shape[0]:
            raise ValueError(f"mutual attention needs both streams on one grid, got "
                             f"{tuple(phi.shape)} and {tuple(f.shape)}")
        za, zf = self.zeta_app(phi), self.zeta_flow(f)
        if self.zeta_relu:
            za, zf = F.relu(za), F.relu(zf)
        rho = za * zf  # eq. 3
        return torch.sigmoid(rho)  # eq. 4

    def forward(self, phi: Tensor, f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = self.attention_map(phi, f)
        return phi * m, f * m, m  # eq. 5


def make_embedding(in_channels: int, hidden: int = 2048) -> nn.Sequential:
    """The tiny embedding ``ε`` of eq. 6–7: two fully connected layers of ``hidden`` units (sec. 4)."""
    return nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, hidden))


class WeightedFeatureAddition(nn.Module):
    """Eq. 6–8: frames weighted by ``exp(cos(ε(φ^n), ε(φ^max)))``, ``φ^max`` = temporal max.

    Args:
        in_channels: ``C`` of the frame features.
        hidden: width of ``ε`` (2048 in the paper) when ``embedding`` is not given.
        normalize: divide the weights by their sum (see the module docstring); ``False`` is
            eq. 8 as printed.
        embedding: an ``ε`` module ``(…, C) → (…, D)`` to use (e.g. shared between streams).

    ``forward(feat (B, T, C[, h, w]), mask (B, T) | None, reference (B, C) | None) ->
    (pooled (B, C), weights (B, T))``; padded frames take no part in ``φ^max`` and get
    weight 0.
    """

    def __init__(self, in_channels: int, hidden: int = 2048, normalize: bool = True,
                 embedding: nn.Module | None = None) -> None:
        super().__init__()
        self.out_channels = in_channels
        self.normalize = bool(normalize)
        self.embedding = embedding if embedding is not None else make_embedding(in_channels, hidden)

    def raw_weights(self, x: Tensor, mask: Tensor | None = None,
                    reference: Tensor | None = None) -> Tensor:
        """``w_n = exp(cos(ε(x_n), ε(x_max)))`` ``(B, T)`` (eq. 6/7); 0 on padded frames.

        Args:
            x: ``(B, T, C)`` frame vectors.
            mask: ``(B, T)`` bool or ``None``.
            reference: ``(B, C)`` reference feature to use instead of the element-wise
                temporal maximum of ``x`` over real frames (the joint arg-max frame).
        """
        if reference is not None:
            ref = reference
        elif mask is None:
            ref = x.amax(dim=1)
        else:
            ref = x.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
        e = self.embedding(x)  # (B, T, D)
        e_ref = self.embedding(ref)  # (B, D)
        w = torch.exp(F.cosine_similarity(e, e_ref[:, None], dim=-1, eps=1e-8))
        return w if mask is None else w * mask.to(w.dtype)

    def forward(self, feat: Tensor, mask: Tensor | None = None,
                reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = frame_vectors(feat)
        w = self.raw_weights(x, mask, reference)
        if self.normalize:
            w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return (x * w[..., None]).sum(dim=1), w  # eq. 8


def build_temporal_aggregation(
    name: str,
    in_channels: int,
    *,
    feature_size: Sequence[int],
    embed_hidden: int = 2048,
    normalize_weights: bool = True,
    embedding: nn.Module | None = None,
    attention_hidden: int = 256,
    attention_normalize: str = "softmax",
    rnn_hidden: int = 512,
) -> nn.Module:
    """``weighted`` (eq. 6–8) or one of :data:`videoreid.models.aggregation.AGGREGATIONS`."""
    if name == "weighted":
        return WeightedFeatureAddition(in_channels, embed_hidden, normalize_weights, embedding)
    if name == "attention":
        return build_aggregation(name, in_channels, feature_size=tuple(feature_size),
                                 hidden=attention_hidden, normalize=attention_normalize)
    if name == "rnn":
        return build_aggregation(name, in_channels, hidden=rnn_hidden)
    if name in AGGREGATIONS:
        return build_aggregation(name, in_channels)
    raise ValueError(f"unknown temporal aggregation {name!r}; valid: {list(TEMPORAL_AGGREGATIONS)}")


def joint_argmax_reference(
    x_app: Tensor, x_flow: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """One reference frame for both streams: the real frame with the largest total activation.

    The frame ``t* = argmax_t (mean_c φ_t + mean_c f_t)`` (channel means, so both streams
    count alike whatever their widths; the pooled features are non-negative after the
    last ReLU), and the references are ``φ_{t*}``, ``f_{t*}`` — the other reading of sec.
    3's "the one that has maximum activation in both image and flow stream".

    Args:
        x_app, x_flow: ``(B, T, C)`` pooled frame features of the two streams.
        mask: ``(B, T)`` bool or ``None``; padded frames are never chosen.

    Returns:
        ``(ref_app (B, C), ref_flow (B, C))``.
    """
    score = x_app.mean(-1) + x_flow.mean(-1)  # (B, T)
    if mask is not None:
        score = score.masked_fill(~mask, float("-inf"))
    t = score.argmax(dim=1)
    rows = torch.arange(x_app.shape[0], device=x_app.device)
    return x_app[rows, t], x_flow[rows, t]


def scatter_frames(values: Tensor, keep: Tensor | None) -> Tensor:
    """Put per-real-frame values back at their ``(B·T)`` positions, zeros elsewhere."""
    if keep is None:
        return values
    out = values.new_zeros((keep.shape[0], *values.shape[1:]))
    out[keep] = values
    return out


class MutualAttentionNetwork(nn.Module):
    """Two-stream network with mutual attention at stage ``stage`` (see module docstring).

    Args:
        app: image-stream backbone (3 input channels).
        flow: flow-stream backbone (2 input channels), same architecture, own weights.
        agg_app, agg_flow: temporal aggregations (``out_channels`` equal).
        num_classes: training identities (0: no classifier).
        stage: stage after which mutual attention is applied, or ``None`` for none.
        bnneck: BNNeck head instead of the plain classifier.
        reference: weighted addition's reference: ``"max"`` (element-wise temporal max per
            stream) or ``"joint_argmax"`` (one frame for both streams, see
            :func:`joint_argmax_reference`).
        zeta_relu: the ReLU ending each ζ of the mutual attention.

    ``forward(batch)`` reads ``images (B, T, 3, H, W)``, ``flow (B, T, 2, H', W')`` and optional
    ``frame_mask (B, T)``.
    """

    modalities: tuple[str, ...] = ("images", "flow")

    def __init__(
        self,
        app: Backbone,
        flow: Backbone,
        agg_app: nn.Module,
        agg_flow: nn.Module,
        num_classes: int,
        stage: str | None = "layer3",
        bnneck: bool = False,
        reference: str = "max",
        zeta_relu: bool = True,
    ) -> None:
        super().__init__()
        stage = check_stage(stage)
        if reference not in REFERENCES:
            raise ValueError(f"unknown reference {reference!r}; valid: {list(REFERENCES)}")
        self.reference = reference
        if getattr(flow, "in_chans", 2) != 2:
            raise ValueError(f"the flow stream needs 2 input channels, got {flow.in_chans}")
        self.app, self.flow = app, flow
        self.stage = stage
        if stage is not None:
            self.mutual = MutualAttention(app.feature_info[stage].channels,
                                          flow.feature_info[stage].channels, zeta_relu)
        else:
            self.mutual = None
        self.agg_app, self.agg_flow = agg_app, agg_flow
        dim = int(agg_app.out_channels)
        if int(agg_flow.out_channels) != dim:
            raise ValueError(f"stream aggregations differ in size: {dim} vs {agg_flow.out_channels}")
        self.feat_dim: int = dim
        self.num_classes = num_classes
        self.fc = nn.Linear(2 * dim, dim)
        self.bnneck = BNNeck(dim, num_classes) if bnneck else None
        self.classifier = nn.Linear(dim, num_classes) if not bnneck and num_classes > 0 else None

    def frame_features(
        self, images: Tensor, flow: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Per-frame conv features of both streams and the mutual attention map.

        Args:
            images: ``(B, T, 3, H, W)``; flow: ``(B, T, 2, H', W')``; mask: ``(B, T)`` or None.
        Returns:
            ``(φ (B, T, C, h, w), f (B, T, C, h, w), M (B, T, 1, h_l, w_l) | None)``; padded
            frames are zeros.
        """
        if images.shape[:2] != flow.shape[:2]:
            raise ValueError(f"images {tuple(images.shape)} and flow {tuple(flow.shape)} must "
                             "share (B, T)")
        b = images.shape[0]
        x, y = fold_time(images), fold_time(flow)
        y = resize_flow(y, x.shape[-2:])
        keep = None
        if mask is not None and not bool(mask.all()):
            keep = mask.reshape(-1)
            x, y = x[keep], y[keep]
        m = None
        if self.stage is None:
            phi, f = self.app(x), self.flow(y)
        else:
            phi = self.app.forward_stages(x, end=self.stage)
            f = self.flow.forward_stages(y, end=self.stage)
            phi, f, m = self.mutual(phi, f)
            rest = next_stage(self.stage)
            if rest is not None:
                phi = self.app.forward_stages(phi, start=rest)
                f = self.flow.forward_stages(f, start=rest)
        phi, f = unfold_time(scatter_frames(phi, keep), b), unfold_time(scatter_frames(f, keep), b)
        if m is not None:
            m = unfold_time(scatter_frames(m, keep), b)
        return phi, f, m

    def forward(self, batch: dict[str, Tensor]) -> ReIDOutput:
        if "flow" not in batch:
            raise KeyError("MutualAttentionNetwork needs batch['flow'] (B, T, 2, H, W); add "
                           "'flow' to data.modalities")
        mask = batch.get("frame_mask")
        phi, f, m = self.frame_features(batch["images"], batch["flow"], mask)
        if self.reference == "joint_argmax" and isinstance(self.agg_app, WeightedFeatureAddition):
            ref_app, ref_flow = joint_argmax_reference(frame_vectors(phi), frame_vectors(f), mask)
            pooled_app, w_app = self.agg_app(phi, mask, ref_app)
            pooled_flow, w_flow = self.agg_flow(f, mask, ref_flow)
        else:
            pooled_app, w_app = self.agg_app(phi, mask)
            pooled_flow, w_flow = self.agg_flow(f, mask)
        feat = self.fc(torch.cat([pooled_app, pooled_flow], dim=1))
        if self.bnneck is not None:
            embedding, logits = self.bnneck(feat)
        else:
            embedding = feat
            logits = self.classifier(feat) if self.classifier is not None and self.training else None
        attention: dict[str, Tensor] = {}
        if m is not None:
            attention["mutual"] = m
        if w_app is not None:
            attention["temporal/app"] = w_app
        if w_flow is not None:
            attention["temporal/flow"] = w_flow
        return ReIDOutput(embedding=embedding, logits=logits, metric_feature=feat,
                          attention=attention)


def build_man(
    num_classes: int,
    *,
    backbone: str = "resnet50",
    pretrained: str | None = None,
    last_stride: int = 2,
    stage: str | None = "layer3",
    aggregation: str = "weighted",
    embed_hidden: int = 2048,
    share_embedding: bool = True,
    normalize_weights: bool = True,
    bnneck: bool = False,
    image_size: Sequence[int] = (256, 128),
    attention_hidden: int = 256,
    attention_normalize: str = "softmax",
    rnn_hidden: int = 512,
    channels_last: bool = False,
    reference: str = "max",
    zeta_relu: bool = True,
) -> MutualAttentionNetwork:
    """Mutual Attention Network (config name ``man``).

    Args:
        num_classes: training identities.
        backbone: both streams' architecture (``resnet50``, ``se_resnet50``, ``resnet_tiny`` …).
        pretrained: local ImageNet weight file for both streams (the flow stream's first conv is
            adapted from the RGB weights).
        last_stride: stride of ``layer4``.
        stage: mutual-attention stage (default ``layer3`` = the paper's "layer 4"), ``None``
            for the two-stream network without attention.
        aggregation: ``weighted`` (eq. 6–8), ``avg`` (TP), ``max``, ``attention`` (TA), ``rnn``.
        embed_hidden: width of the weighted addition's ``ε`` (2048).
        share_embedding: one ``ε`` for both streams (as the paper writes it).
        normalize_weights: normalise the weighted-addition weights to sum 1.
        bnneck: BNNeck head instead of the plain classifier.
        image_size: ``(H, W)`` of the frames (TA's kernel size).
        attention_hidden, attention_normalize: TA settings; rnn_hidden: RNN size.
        channels_last: channels-last backbones.
        reference: weighted addition's reference: ``"max"`` (element-wise temporal max, the
            default) or ``"joint_argmax"`` (one frame for both streams).
        zeta_relu: keep the ReLU at the end of each ζ (eq. 3, sec. 3).
    """
    stage = check_stage(stage)
    if aggregation not in TEMPORAL_AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; valid: {list(TEMPORAL_AGGREGATIONS)}")
    kw = {"last_stride": last_stride, "pretrained": pretrained, "channels_last": channels_last}
    app = build_backbone(backbone, in_chans=3, **kw)
    flow = build_backbone(backbone, in_chans=2, **kw)
    channels = app.out_channels
    shared = make_embedding(channels, embed_hidden) if aggregation == "weighted" and share_embedding else None
    agg_kw = {"feature_size": app.feature_size(int(image_size[0]), int(image_size[1])),
              "embed_hidden": embed_hidden, "normalize_weights": normalize_weights,
              "embedding": shared, "attention_hidden": attention_hidden,
              "attention_normalize": attention_normalize, "rnn_hidden": rnn_hidden}
    agg_app = build_temporal_aggregation(aggregation, channels, **agg_kw)
    agg_flow = build_temporal_aggregation(aggregation, channels, **agg_kw)
    return MutualAttentionNetwork(app, flow, agg_app, agg_flow, num_classes, stage=stage,
                                  bnneck=bnneck, reference=reference, zeta_relu=zeta_relu)
