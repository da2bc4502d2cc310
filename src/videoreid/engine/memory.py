"""Activation memory: ``train.activation_checkpointing`` applied to a model's backbones.

``train.activation_checkpointing``: ``false`` (default), ``true`` (every backbone stage) or a
list of stage names (``[layer1, layer2, layer3]``). Every :class:`~videoreid.models.backbones.
Backbone` in the model (both streams of MAN, the image stream of the gated-attention model,
…) recomputes the chosen stages' activations in the backward pass instead of storing them
(see ``models.backbones.base``). Gradients and BatchNorm statistics are unchanged; the cost
is about one more forward pass of those stages per step. ``bench/activation_memory.py``
measures the saving; docs/training.md ("Activation checkpointing") gives the figures.

Modules outside the backbones (attention heads, AlignNet's OpenPose network, the gated
attention flow CNN) keep their activations.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import nn

from videoreid.config import ConfigError
from videoreid.models.backbones.base import STAGES, Backbone

log = logging.getLogger(__name__)

__all__ = ["apply_activation_checkpointing"]


def apply_activation_checkpointing(model: nn.Module, setting: bool | Sequence[str] | None) -> int:
    """Turn on checkpointing of ``setting``'s stages in every backbone of ``model``.

    Returns:
        the number of backbones changed (0 when ``setting`` is off).
    Raises:
        ConfigError: unknown stage names, or checkpointing asked for a model without a
            backbone.
    """
    if not setting:
        return 0
    stages = list(STAGES) if setting is True else list(setting)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"train.activation_checkpointing: unknown stages {unknown}; valid: "
                          f"true, false or a list of {list(STAGES)}")
    backbones = [(n, m) for n, m in model.named_modules() if isinstance(m, Backbone)]
    if not backbones:
        raise ConfigError(f"train.activation_checkpointing is set but {type(model).__name__} "
                          "has no backbone to checkpoint")
    for name, m in backbones:
        m.set_activation_checkpointing(stages)
        log.info("activation checkpointing: %s (%s) stages %s", name or "<model>", m.arch,
                 stages)
    return len(backbones)
