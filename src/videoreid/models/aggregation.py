"""Temporal aggregation of per-frame features: the Gao & Nevatia (2018) baselines.

"Revisiting Temporal Modeling for Video-based Person ReID" compares, on per-frame ResNet-50
features, temporal pooling (TP: mean or max), temporal attention (TA) and an RNN. Every
module here takes ``feat`` of shape ``(B, T, C, h, w)`` (conv maps) or ``(B, T, C)`` (frame
vectors) and an optional ``mask (B, T)`` (``True`` = real frame) and returns
``(pooled (B, C'), weights (B, T) | None)``.

Padded frames never influence the result: pooling ignores them, and TA and the RNN first
move the real frames of each clip to the front (order kept), so their temporal conv / LSTM
see exactly the shorter clip; padded positions get weight 0.

Temporal attention, as in the authors' code (``ResNet50TA``): a conv whose kernel spans the
whole ``h × w`` map (``[7, 4]`` for 224×112 inputs there; built here from ``feature_size``)
maps ``(C, h, w)`` to a 256-d vector per frame, ReLU; a temporal ``Conv1d(256, 1, 3,
padding=1)`` over the frames gives one score per frame, ReLU; softmax over time gives the
weights applied to the spatially averaged frame features. The paper's alternative
"sigmoid then L1-normalise" is available as ``normalize="sigmoid"``.

RNN, as in ``ResNet50RNN``: spatial average → one-layer LSTM (hidden 512) → outputs
averaged over time; the pooled size is the hidden size.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoreid.models.layers import masked_mean


def frame_vectors(feat: Tensor) -> Tensor:
    """``(B, T, C, h, w)`` → spatial mean ``(B, T, C)``; ``(B, T, C)`` is returned as is."""
    if feat.dim() == 5:
        return feat.mean((-2, -1))
    if feat.dim() == 3:
        return feat
    raise ValueError(f"expected features (B, T, C, h, w) or (B, T, C), got {tuple(feat.shape)}")


def compact_valid(x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Move each clip's real frames to the front, keeping their order.

    Args:
        x: ``(B, T, ...)``.
        mask: ``(B, T)`` bool or ``None``.
    Returns:
        ``(x', mask', order)``: ``x'[b, i] = x[b, order[b, i]]``; ``mask'`` is ``True`` on a
        prefix of each row. ``order`` is ``None`` when there is no mask.
    """
    if mask is None:
        return x, mask, None
    # Stable sort on "is padded" keeps real frames first and in temporal order.
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    idx = order.reshape(*order.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx), mask.gather(1, order), order


def uncompact(values: Tensor, order: Tensor | None) -> Tensor:
    """Inverse of :func:`compact_valid` for ``(B, T)`` values."""
    if order is None:
        return values
    return torch.zeros_like(values).scatter(1, order, values)


class TemporalAvgPool(nn.Module):
    """TP (mean): spatial then temporal average over real frames. Output ``(B, C)``."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.out_channels = in_channels

    def forward(self, feat: Tensor, mask: Tensor | None = None) -> tuple[Tensor, None]:
        return masked_mean(frame_vectors(feat), mask, dim=1), None


class TemporalMaxPool(nn.Module):
    """TP (max): spatial average, then maximum over real frames. Output ``(B, C)``."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.out_channels = in_channels

    def forward(self, feat: Tensor, mask: Tensor | None = None) -> tuple[Tensor, None]:
        x = frame_vectors(feat)
        if mask is not None:
            x = x.masked_fill(~mask[..., None], float("-inf"))
        return x.amax(dim=1), None


class TemporalAttention(nn.Module):
    """TA of Gao & Nevatia: per-frame scores from the conv map, softmax over time.

    Args:
        in_channels: ``C`` of the conv maps.
        feature_size: ``(h, w)`` of the conv maps; the spatial conv's kernel (the map size
            for 256×128 images through a stride-32 ResNet is ``(8, 4)``).
        hidden: channels of the spatial conv (256 in the paper).
        normalize: ``"softmax"`` (paper's default) or ``"sigmoid"`` (sigmoid, then
            L1-normalised over time).
    Shapes: ``feat (B, T, C, h, w)`` → pooled ``(B, C)``, weights ``(B, T)`` summing to 1
    over the real frames.
    """

    def __init__(
        self,
        in_channels: int,
        feature_size: Sequence[int] = (8, 4),
        hidden: int = 256,
        normalize: str = "softmax",
    ) -> None:
        super().__init__()
        if normalize not in ("softmax", "sigmoid"):
            raise ValueError(f"normalize must be 'softmax' or 'sigmoid', got {normalize!r}")
        self.feature_size = (int(feature_size[0]), int(feature_size[1]))
        self.normalize = normalize
        self.out_channels = in_channels
        self.spatial_conv = nn.Conv2d(in_channels, hidden, self.feature_size)
        self.temporal_conv = nn.Conv1d(hidden, 1, 3, padding=1)

    def forward(self, feat: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if feat.dim() != 5:
            raise ValueError(
                f"temporal attention needs conv maps (B, T, C, h, w), got {tuple(feat.shape)}"
            )
        if tuple(feat.shape[-2:]) != self.feature_size:
            raise ValueError(
                f"temporal attention was built for {self.feature_size[0]}x{self.feature_size[1]} "
                f"feature maps but got {feat.shape[-2]}x{feat.shape[-1]}; build it with the "
                "feature_size of this input size (model arg image_size)"
            )
        feat, mask, order = compact_valid(feat, mask)
        b, t = feat.shape[:2]
        a = F.relu(self.spatial_conv(feat.flatten(0, 1))).reshape(b, t, -1)
        if mask is not None:
            # Zero padded frames so the temporal conv sees zero padding after the clip.
            a = a * mask[..., None].to(a.dtype)
        scores = F.relu(self.temporal_conv(a.transpose(1, 2))).squeeze(1)  # (B, T)
        if self.normalize == "softmax":
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=1)
        else:
            weights = torch.sigmoid(scores)
            if mask is not None:
                weights = weights * mask.to(weights.dtype)
            weights = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)
        pooled = (frame_vectors(feat) * weights[..., None]).sum(1)
        return pooled, uncompact(weights, order)


class TemporalRNN(nn.Module):
    """RNN of Gao & Nevatia: LSTM over frame vectors, outputs averaged over real frames.

    Args:
        in_channels: ``C`` of the frame features.
        hidden: LSTM hidden size (512 in the paper) = output size.
    Shapes: ``feat (B, T, C[, h, w])`` → ``(B, hidden)``.
    """

    def __init__(self, in_channels: int, hidden: int = 512) -> None:
        super().__init__()
        self.out_channels = hidden
        self.lstm = nn.LSTM(in_channels, hidden, num_layers=1, batch_first=True)

    def forward(self, feat: Tensor, mask: Tensor | None = None) -> tuple[Tensor, None]:
        x, mask, _ = compact_valid(frame_vectors(feat), mask)
        # The LSTM is causal, so outputs at the real (front) positions ignore the padding.
        out, _ = self.lstm(x)
        return masked_mean(out, mask, dim=1), None


AGGREGATIONS: dict[str, Callable[..., nn.Module]] = {
    "avg": TemporalAvgPool,
    "max": TemporalMaxPool,
    "attention": TemporalAttention,
    "rnn": TemporalRNN,
}


def build_aggregation(name: str, in_channels: int, **kwargs) -> nn.Module:
    """Build an aggregation module by name (``avg``, ``max``, ``attention``, ``rnn``).

    Unknown names or keyword arguments raise an error listing the valid ones. The module has
    ``out_channels`` (the pooled size).
    """
    if name not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {name!r}; valid: {sorted(AGGREGATIONS)}")
    cls = AGGREGATIONS[name]
    valid = [p for p in inspect.signature(cls).parameters if p != "in_channels"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(f"unknown arguments {unknown} for aggregation {name!r}; valid: {valid}")
    return cls(in_channels, **kwargs)
