"""The one output type of every model (see docs/architecture.md, "Model output contract")."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ReIDOutput:
    """What every model's ``forward(batch)`` returns. Models never compute losses.

    Attributes:
        embedding: ``(B, D)`` retrieval feature, the one the paper uses at test time.
        logits: ``(B, num_classes)`` identity logits in training mode, else ``None``.
        frame_logits: ``(B, T, num_classes)`` per-frame logits (RGSA/RGTR), else ``None``.
        metric_feature: ``(B, D')`` feature the metric (triplet/ranking/OIM) losses act on;
            defaults to ``embedding`` when a model has no separate one.
        attention: named maps for regularisers and visualisation, e.g.
            ``"spatial/mam2": (B, T, K, H, W)``, ``"temporal": (B, T, K)``.
    """

    embedding: Tensor
    logits: Tensor | None = None
    frame_logits: Tensor | None = None
    metric_feature: Tensor | None = None
    attention: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric_feature is None:
            self.metric_feature = self.embedding
