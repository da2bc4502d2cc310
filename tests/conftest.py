"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from videoreid.utils.shared import shared_dir as _shared_dir

# Tests are sized for 2 cores; more threads only adds contention between pytest workers.
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The folder of optional real test data; skip if absent.

    It holds ``data/mars-mini/mars/`` (frames of 16 MARS identities in the official layout,
    with official-format ``info/`` files) and ``data/mars-official-info/`` (the official
    ``tracks_train_info.mat``, ``tracks_test_info.mat`` and ``query_IDX.mat``), taken from
    the MARS release on its official site; point ``$VIDEOREID_SHARED`` at it.
    """
    d = _shared_dir()
    if d is None:
        pytest.skip("no real MARS test data: set VIDEOREID_SHARED to a folder with "
                    "data/mars-mini and data/mars-official-info (from the MARS release)")
    return d


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


@pytest.fixture(scope="session")
def demo_quick_run(tmp_path_factory) -> Path:
    """A ``videoreid demo --quick`` run (seconds): ``OUT/run_quick`` and ``OUT/data_quick``."""
    from videoreid.cli.main import main

    out = tmp_path_factory.mktemp("demo_quick")
    threads = torch.get_num_threads()
    try:
        assert main(["demo", "--out", str(out), "--quick"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out
