"""The backbone contract every method model relies on (docs/architecture.md, "Backbone contract").

Attention modules are inserted *between* stages by the method models; backbones never
contain method-specific code. Stage names are ``"stem"``, ``"layer1"`` … ``"layer4"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

STAGES: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class FeatureInfo:
    """Output of one stage: channel count and total stride w.r.t. the input image."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """Base class: subclasses set ``feature_info`` and one ``nn.Module`` attribute per stage."""

    feature_info: dict[str, FeatureInfo]

    @property
    def out_channels(self) -> int:
        return self.feature_info["layer4"].channels

    def stage(self, name: str) -> nn.Module:
        return getattr(self, name)

    def forward_stages(self, x: Tensor, start: str | None = None, end: str | None = None) -> Tensor:
        """Run stages ``start``..``end`` inclusive (defaults: first and last).

        Args:
            x: ``(N, C, H, W)`` input of stage ``start`` (an image for ``"stem"``).
        Returns:
            ``(N, C_end, H / s, W / s)`` output of stage ``end``.
        """
        i = STAGES.index(start) if start else 0
        j = STAGES.index(end) if end else len(STAGES) - 1
        if i > j:
            raise ValueError(f"start stage {start!r} comes after end stage {end!r}")
        for name in STAGES[i : j + 1]:
            x = self.stage(name)(x)
        return x

    def forward_intermediates(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """Run all stages up to the last requested one and return the requested outputs."""
        unknown = [n for n in names if n not in STAGES]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; valid: {list(STAGES)}")
        last = max(STAGES.index(n) for n in names)
        out: dict[str, Tensor] = {}
        for name in STAGES[: last + 1]:
            x = self.stage(name)(x)
            if name in names:
                out[name] = x
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_stages(x)
