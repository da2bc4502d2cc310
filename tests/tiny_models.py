"""Tiny settings of every model of the factory, for tests (a plain module: conftest files are
not importable by name once a sub-folder has its own conftest)."""

from __future__ import annotations

# --------------------------------------------------------------- model packages (inference)

# Every model of the factory with tiny settings (resnet_tiny backbone, small heads), as the
# model arguments a config would hold; image size (H, W) = (64, 32) unless noted.
TINY_MODEL_ARGS: dict[str, dict] = {
    "baseline": {"backbone": "resnet_tiny", "aggregation": "avg", "bnneck": True},
    "baseline_ta": {"backbone": "resnet_tiny", "aggregation": "attention", "attention_hidden": 8,
                    "image_size": [64, 32], "bnneck": False},
    "stan": {"backbone": "resnet_tiny", "K": 3, "d": 16, "embed_dim": 12, "num_frames": 4},
    "cmmanet": {"backbone": "resnet_tiny", "hidden": 16, "K": 2},
    "rgsa_rgtr": {"backbone": "resnet_tiny", "r1": 4, "r2": 16, "image_size": [64, 32],
                  "seq_len": 4},
    "man": {"backbone": "resnet_tiny", "embed_hidden": 16, "image_size": [64, 32]},
    "gated_attention": {"backbone": "resnet_tiny", "flow_channels": [8, 16, 16, 16, 16]},
    "alignnet": {"backbone": "resnet_tiny", "pose_source": "openpose", "pose_stages": 1,
                 "tap_hidden": 8},
}


def tiny_model(key: str) -> tuple[str, dict]:
    """``(model name, args)`` of :data:`TINY_MODEL_ARGS` entry ``key``."""
    return (key[:-3] if key.endswith("_ta") else key), dict(TINY_MODEL_ARGS[key])
