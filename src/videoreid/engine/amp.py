"""Automatic mixed precision: which autocast dtype, and whether a GradScaler is needed.

- ``bf16``: CPU or CUDA autocast to bfloat16. bfloat16 has float32's exponent range, so
  gradients do not underflow and no loss scaling is needed.
- ``fp16``: CUDA only (CPU float16 autocast is slow and poorly supported), with a
  ``torch.amp.GradScaler`` because float16 gradients underflow without loss scaling.
- ``none``: full precision; :func:`autocast` is a no-op context.

Parameters and optimiser state stay float32 in every mode (autocast only lowers the
precision of eligible ops), so checkpoints are mode-independent.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

__all__ = ["AmpSettings", "resolve_amp", "autocast", "make_grad_scaler"]


@dataclass(frozen=True)
class AmpSettings:
    """Resolved AMP mode for one device.

    Attributes:
        mode: ``"none"``, ``"bf16"`` or ``"fp16"``.
        device_type: ``"cpu"`` or ``"cuda"`` (what ``torch.autocast`` expects).
        dtype: autocast dtype, or ``None`` when disabled.
        use_scaler: whether gradients need a ``GradScaler`` (fp16 only).
    """

    mode: str
    device_type: str
    dtype: torch.dtype | None
    use_scaler: bool

    @property
    def enabled(self) -> bool:
        return self.dtype is not None


def resolve_amp(mode: str, device: torch.device | str) -> AmpSettings:
    """Validate ``mode`` for ``device``.

    Raises:
        ValueError: unknown mode, or fp16 requested on a non-CUDA device.
    """
    device = torch.device(device)
    mode = (mode or "none").lower()
    if mode in ("none", "off", "false", "fp32"):
        return AmpSettings("none", device.type, None, False)
    if mode == "bf16":
        return AmpSettings("bf16", device.type, torch.bfloat16, False)
    if mode == "fp16":
        if device.type != "cuda":
            raise ValueError(
                f"train.amp=fp16 needs a CUDA device (got {device}); use amp=bf16 on CPU"
            )
        return AmpSettings("fp16", device.type, torch.float16, True)
    raise ValueError(f"unknown AMP mode {mode!r}; choose none, bf16 or fp16")


def autocast(settings: AmpSettings) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the settings, or a no-op context when AMP is off."""
    if not settings.enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=settings.device_type, dtype=settings.dtype)


def make_grad_scaler(settings: AmpSettings) -> torch.amp.GradScaler | None:
    """A ``GradScaler`` for fp16, else ``None``."""
    if not settings.use_scaler:
        return None
    return torch.amp.GradScaler(settings.device_type)
