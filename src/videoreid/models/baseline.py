"""Per-frame backbone + temporal aggregation + head: the Gao & Nevatia (2018) baselines.

The head is either a BNNeck (Luo et al. 2019; metric losses on the pooled feature, classifier
and retrieval on its batch-normalised version) or, with ``bnneck=False``, the paper's plain
linear classifier on the pooled feature, which is then also the retrieval feature.

Padded frames (``frame_mask`` false) are not passed through the backbone at all, so they
affect neither the pooled feature nor the backbone's batch-norm statistics in training.
"""

from __future__ import annotations

from torch import Tensor, nn

from videoreid.models.backbones.base import Backbone
from videoreid.models.layers import BNNeck, fold_time, unfold_time
from videoreid.models.output import ReIDOutput


def run_backbone_on_frames(backbone: Backbone, images: Tensor, mask: Tensor | None) -> Tensor:
    """Apply ``backbone`` to every real frame.

    Args:
        images: ``(B, T, C, H, W)``.
        mask: ``(B, T)`` bool (``True`` = real frame) or ``None``.
    Returns:
        ``(B, T, C', h, w)``; padded frames are zeros.
    """
    b = images.shape[0]
    frames = fold_time(images)
    if mask is None:
        return unfold_time(backbone(frames), b)
    keep = mask.reshape(-1)
    feats = backbone(frames[keep])
    out = feats.new_zeros((frames.shape[0], *feats.shape[1:]))
    out[keep] = feats
    return unfold_time(out, b)


class BaselineModel(nn.Module):
    """Backbone per frame, temporal aggregation, BNNeck or linear classifier.

    Args:
        backbone: a :class:`Backbone` (e.g. ``resnet50``).
        aggregation: a module from :mod:`videoreid.models.aggregation` (has ``out_channels``).
        num_classes: training identities; 0 for no classifier.
        bnneck: use a BNNeck head (see module docstring).

    ``forward(batch)`` reads ``batch["images"] (B, T, 3, H, W)`` and optional
    ``batch["frame_mask"] (B, T)`` and returns a :class:`ReIDOutput` with ``embedding (B, D)``,
    ``logits (B, num_classes)`` in training mode, ``metric_feature (B, D)`` (pooled feature)
    and ``attention["temporal"] (B, T)`` for temporal attention.
    """

    modalities: tuple[str, ...] = ("images",)

    def __init__(
        self, backbone: Backbone, aggregation: nn.Module, num_classes: int, bnneck: bool = True
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.aggregation = aggregation
        self.num_classes = num_classes
        self.feat_dim: int = aggregation.out_channels
        self.bnneck = BNNeck(self.feat_dim, num_classes) if bnneck else None
        self.classifier = (
            nn.Linear(self.feat_dim, num_classes) if not bnneck and num_classes > 0 else None
        )

    def forward(self, batch: dict[str, Tensor]) -> ReIDOutput:
        mask = batch.get("frame_mask")
        feats = run_backbone_on_frames(self.backbone, batch["images"], mask)
        pooled, weights = self.aggregation(feats, mask)
        if self.bnneck is not None:
            embedding, logits = self.bnneck(pooled)
        else:
            embedding = pooled
            logits = (
                self.classifier(pooled) if self.classifier is not None and self.training else None
            )
        attention = {"temporal": weights} if weights is not None else {}
        return ReIDOutput(
            embedding=embedding, logits=logits, metric_feature=pooled, attention=attention
        )
