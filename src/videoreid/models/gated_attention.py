"""Gated Attention baseline of Kiran et al. (sec. 4, eq. 9–12, fig. 4): one deep image stream
whose stage-``l`` features are gated by a spatial map computed from optical flow by a shallow
CNN.

Per frame: ``ψ = H_l(I)`` (eq. 10, the image backbone up to stage ``l``); ``S(F)`` is a shallow
AlexNet-style CNN on the flow (eq. 9); its output is pooled over channels to ``(N, 1, I, J)``
and passed through a sigmoid, ``a = σ(pool_c S(F))``; ``Ψ = ψ ⊙ a`` (eq. 11); the remaining
stages give ``φ = H_{l,k}(Ψ)`` (eq. 12); global average pooling per frame, temporal average
pooling (or another aggregation, e.g. ``weighted`` for table 3), classifier. Only image
features are used for re-identification; flow only gates.

Outputs: ``embedding`` = ``metric_feature`` = the pooled ``(B, C)`` feature (BNNeck
optional), ``logits`` in training, ``attention["gate"]`` = ``a`` as ``(B, T, 1, h_l, w_l)``
(zeros on padded frames), ``attention["temporal"]`` when the aggregation has frame weights.

Decisions (the paper gives only "a shallow CNN based on AlexNet" and fig. 4):

* **Shallow CNN.** AlexNet's five conv layers (11×11/4, max pool, 5×5, max pool, three 3×3;
  widths 64-192-384-256-256, ``flow_channels``) on the 2-channel flow, each conv followed by
  batch norm (not in AlexNet: flow arrives in pixels, whose scale varies with resolution and
  dataset, and nothing else normalises it), ReLU after all but the last conv, so the pooled
  response is signed and the gate spans ``(0, 1)``. The two 3×3/2 max pools are padded by 1
  (AlexNet's are not), so the total stride is exactly 16: a 256×128 frame gives the 16×8 grid
  of the default stage ``layer3`` (the paper's "layer 4"). For other stages or sizes the
  pooled map is bilinearly resized to the stage's grid before the sigmoid.
* **Channel pooling** is the mean over channels.
* **Flow size**: as in :mod:`videoreid.models.man`, flow is resized to the frame size first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from videoreid.models.backbones.base import Backbone
from videoreid.models.backbones.resnet import build_backbone
from videoreid.models.layers import BNNeck, fold_time, unfold_time
from videoreid.models.man import (
    TEMPORAL_AGGREGATIONS,
    build_temporal_aggregation,
    check_stage,
    next_stage,
    resize_flow,
    scatter_frames,
)
from videoreid.models.output import ReIDOutput

__all__ = ["ShallowFlowCNN", "GatedAttentionNetwork", "build_gated_attention"]


class ShallowFlowCNN(nn.Module):
    """AlexNet-style flow CNN ``S`` (see module docstring).

    Args:
        in_chans: input channels (2: dx, dy).
        channels: widths of the five convs.

    ``(N, 2, H, W)`` → ``(N, channels[-1], ~H/16, ~W/16)``.
    """

    def __init__(self, in_chans: int = 2, channels: Sequence[int] = (64, 192, 384, 256, 256)) -> None:
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f"the AlexNet-style flow CNN has 5 convs; got channels={tuple(channels)}")
        c = [int(in_chans), *map(int, channels)]

        def conv(i: int, k: int, s: int, p: int) -> list[nn.Module]:
            return [nn.Conv2d(c[i], c[i + 1], k, stride=s, padding=p, bias=False),
                    nn.BatchNorm2d(c[i + 1])]

        relu = nn.ReLU(inplace=True)
        self.features = nn.Sequential(
            *conv(0, 11, 4, 2), relu, nn.MaxPool2d(3, 2, padding=1),
            *conv(1, 5, 1, 2), relu, nn.MaxPool2d(3, 2, padding=1),
            *conv(2, 3, 1, 1), relu,
            *conv(3, 3, 1, 1), relu,
            *conv(4, 3, 1, 1),
        )
        self.out_channels = c[-1]
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class GatedAttentionNetwork(nn.Module):
    """Image stream gated by a flow CNN at stage ``stage`` (eq. 9–12).

    Args:
        backbone: image backbone.
        flow_cnn: the shallow flow CNN.
        aggregation: temporal aggregation (``avg`` in the paper).
        num_classes: training identities (0: no classifier).
        stage: stage whose output is gated.
        bnneck: BNNeck head instead of the plain classifier.
    """

    modalities: tuple[str, ...] = ("images", "flow")

    def __init__(
        self,
        backbone: Backbone,
        flow_cnn: nn.Module,
        aggregation: nn.Module,
        num_classes: int,
        stage: str = "layer3",
        bnneck: bool = False,
    ) -> None:
        super().__init__()
        stage = check_stage(stage)
        if stage is None:
            raise ValueError("gated attention needs a stage (use model 'baseline' for none)")
        self.backbone = backbone
        self.flow_cnn = flow_cnn
        self.aggregation = aggregation
        self.stage = stage
        self.num_classes = num_classes
        self.feat_dim: int = int(aggregation.out_channels)
        self.bnneck = BNNeck(self.feat_dim, num_classes) if bnneck else None
        self.classifier = (nn.Linear(self.feat_dim, num_classes)
                           if not bnneck and num_classes > 0 else None)

    def gate(self, flow: Tensor, size: Sequence[int]) -> Tensor:
        """``a = σ(mean_c S(F))`` resized to ``size``: ``(N, 2, H, W)`` → ``(N, 1, h, w)`` in (0, 1)."""
        pooled = self.flow_cnn(flow).mean(dim=1, keepdim=True)
        if tuple(pooled.shape[-2:]) != tuple(size):
            pooled = F.interpolate(pooled, size=tuple(size), mode="bilinear", align_corners=False)
        return pooled.sigmoid()

    def frame_features(self, images: Tensor, flow: Tensor,
                       mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(φ (B, T, C, h, w), a (B, T, 1, h_l, w_l))``; padded frames are zeros."""
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
        psi = self.backbone.forward_stages(x, end=self.stage)  # eq. 10
        a = self.gate(y, psi.shape[-2:])
        phi = psi * a  # eq. 11
        rest = next_stage(self.stage)
        if rest is not None:
            phi = self.backbone.forward_stages(phi, start=rest)  # eq. 12
        return unfold_time(scatter_frames(phi, keep), b), unfold_time(scatter_frames(a, keep), b)

    def forward(self, batch: dict[str, Tensor]) -> ReIDOutput:
        if "flow" not in batch:
            raise KeyError("GatedAttentionNetwork needs batch['flow'] (B, T, 2, H, W); add "
                           "'flow' to data.modalities")
        mask = batch.get("frame_mask")
        phi, a = self.frame_features(batch["images"], batch["flow"], mask)
        pooled, weights = self.aggregation(phi, mask)
        if self.bnneck is not None:
            embedding, logits = self.bnneck(pooled)
        else:
            embedding = pooled
            logits = (self.classifier(pooled)
                      if self.classifier is not None and self.training else None)
        attention = {"gate": a}
        if weights is not None:
            attention["temporal"] = weights
        return ReIDOutput(embedding=embedding, logits=logits, metric_feature=pooled,
                          attention=attention)


def build_gated_attention(
    num_classes: int,
    *,
    backbone: str = "resnet50",
    pretrained: str | None = None,
    last_stride: int = 2,
    stage: str = "layer3",
    aggregation: str = "avg",
    flow_channels: Sequence[int] = (64, 192, 384, 256, 256),
    embed_hidden: int = 2048,
    normalize_weights: bool = True,
    bnneck: bool = False,
    image_size: Sequence[int] = (256, 128),
    attention_hidden: int = 256,
    attention_normalize: str = "softmax",
    rnn_hidden: int = 512,
    channels_last: bool = False,
) -> GatedAttentionNetwork:
    """Gated Attention baseline (config name ``gated_attention``).

    Args:
        num_classes: training identities.
        backbone, pretrained, last_stride, channels_last: the image stream.
        stage: gated stage (default ``layer3`` = the paper's "layer 4").
        aggregation: ``avg`` (the paper's), ``weighted`` (table 3), ``max``, ``attention``, ``rnn``.
        flow_channels: widths of the shallow flow CNN's five convs.
        embed_hidden, normalize_weights: for ``weighted`` (see :mod:`videoreid.models.man`).
        bnneck: BNNeck head instead of the plain classifier.
        image_size: ``(H, W)`` (TA's kernel size).
        attention_hidden, attention_normalize, rnn_hidden: TA / RNN settings.
    """
    stage = check_stage(stage)
    if aggregation not in TEMPORAL_AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; valid: {list(TEMPORAL_AGGREGATIONS)}")
    net = build_backbone(backbone, last_stride=last_stride, pretrained=pretrained,
                         channels_last=channels_last)
    agg = build_temporal_aggregation(
        aggregation, net.out_channels,
        feature_size=net.feature_size(int(image_size[0]), int(image_size[1])),
        embed_hidden=embed_hidden, normalize_weights=normalize_weights,
        attention_hidden=attention_hidden, attention_normalize=attention_normalize,
        rnn_hidden=rnn_hidden)
    return GatedAttentionNetwork(net, ShallowFlowCNN(2, flow_channels), agg, num_classes,
                                 stage=stage, bnneck=bnneck)
