"""Full-size models of every method with their paper settings, and synthetic batches for them.

Shared by ``bench/inference.py`` and ``bench/train_step.py`` (import it from a script in
``bench/``). Each method is built from its shipped MARS config (``load_config("<m>/mars")``)
with random weights (speed does not depend on the weights; AlignNet's OpenPose network is
left untrained for the same reason), at the config's input size; clip length is the training
sampler's ``length`` for training and the test plan's ``length`` for inference.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videoreid.config import Config, load_config
from videoreid.engine.builders import build_model_from_config

# the five papers' models (MAN with and without its gated attention) and the baseline
METHODS = ("baseline", "stan", "cmmanet", "rgsa_rgtr", "man", "gated_attention", "alignnet")
MARS_TRAIN_IDS = 625


def method_config(name: str) -> Config:
    """The method's MARS config with random weights (``pretrained=none``; AlignNet's OpenPose
    network without its weights file): nothing is downloaded."""
    overrides = ["model.args.pretrained=none"]
    if name == "alignnet":
        overrides.append("model.args.pose_weights=null")
    return load_config(f"{name}/mars", overrides)


def build_method(name: str, num_classes: int = MARS_TRAIN_IDS) -> tuple[nn.Module, Config]:
    """``(model, cfg)`` of method ``name`` at full size."""
    cfg = method_config(name)
    torch.manual_seed(0)
    return build_model_from_config(cfg, num_classes), cfg


def clip_length(cfg: Config, train: bool) -> int:
    spec = cfg.data.train_sampler if train else cfg.data.test_plan
    return int(spec.args.get("length", 4))


def make_batch(model: nn.Module, cfg: Config, clips: int, train: bool,
               num_classes: int = MARS_TRAIN_IDS) -> dict[str, Any]:
    """A batch of ``clips`` clips at the config's size: ``images (B, T, 3, H, W)``, masks,
    P×K-structured ``pids`` (K = 2, so batch-hard triplets have positives), ``flow`` when the
    model reads it."""
    t = clip_length(cfg, train)
    h, w = cfg.data.height, cfg.data.width
    g = torch.Generator().manual_seed(0)
    k = 2 if clips >= 2 else 1
    pids = torch.arange(clips) // k % num_classes
    batch: dict[str, Any] = {
        "images": torch.randn(clips, t, 3, h, w, generator=g),
        "frame_mask": torch.ones(clips, t, dtype=torch.bool),
        "pids": pids,
        "camids": torch.arange(clips) % 2,
        "index": torch.arange(clips),
    }
    if "flow" in getattr(model, "modalities", ()):
        batch["flow"] = torch.randn(clips, t, 2, h, w, generator=g)
    return batch
