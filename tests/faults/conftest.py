"""Fixtures of the fault-injection suite: one tiny synthetic dataset and one undisturbed run.

Every fault test compares against :func:`reference`, a run of :data:`TINY` trained without
any fault (3 epochs of 4 steps, checkpoints every epoch, evaluation at epochs 2 and 3): a
disturbed run must either stop with an error naming the thing, or end bit-identical to it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = """\
seed: 0
data:
  dataset: mars
  root: {root}
  synth: {{layout: mars, ids: 24, cameras: 3, preset: easy, seed: 0, height: 64, width: 32,
          args: {{keypoints: false, tracklet_len: [8, 16]}}}}
  height: 64
  width: 32
  P: 4
  K: 4
  workers: 0
  augment: {{pad: 4}}
model: {{name: baseline, args: {{backbone: resnet_tiny, aggregation: avg}}}}
optim: {{lr: 3.0e-3}}
schedule: {{name: constant}}
train: {{epochs: 3, iters_per_epoch: 4, device: cpu, progress: false, checkpoint_every: 1,
        keep_last: 5, eval_every: 2}}
eval: {{protocol: market}}
output_dir: {out}
"""


@pytest.fixture(scope="session")
def fault_root(tmp_path_factory) -> Path:
    """A folder with the synthetic data (generated once) and the tiny config."""
    from videoreid.config import load_config
    from videoreid.engine.builders import prepare_data_root

    root = tmp_path_factory.mktemp("faults")
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(TINY.format(root=root / "data", out=root / "unused"))
    prepare_data_root(load_config(cfg_path))
    return root


@pytest.fixture(scope="session")
def tiny_cfg(fault_root) -> Path:
    return fault_root / "tiny.yaml"


@pytest.fixture(scope="session")
def reference(fault_root, tiny_cfg) -> Path:
    """The undisturbed run's folder (do not modify; copy it with ``faultlib.copy_run``)."""
    from videoreid.cli.main import main

    out = fault_root / "reference"
    assert main(["train", str(tiny_cfg), f"output_dir={out}"]) == 0
    return out


