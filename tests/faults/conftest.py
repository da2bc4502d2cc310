"""Fixtures of the fault-injection suite: one tiny synthetic dataset and one undisturbed run.

Every fault test compares against :func:`reference`, a run of :data:`TINY` trained without
any fault (3 epochs of 4 steps, checkpoints every epoch, evaluation at epochs 2 and 3): a
disturbed run must either stop with an error naming the thing, or end bit-identical to it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"

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

VOLATILE = ("time_s", "clips_per_s", "resumed")  # log columns that may differ


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
    """The undisturbed run's folder (do not modify; copy it with :func:`copy_run`)."""
    from videoreid.cli.main import main

    out = fault_root / "reference"
    assert main(["train", str(tiny_cfg), f"output_dir={out}"]) == 0
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tensorboard", ".run.lock"))
    return dst


def run_cli(*args: str, fault: str = "none", n: int = 0, env: dict | None = None,
            wait: bool = True, timeout: float = 120) -> subprocess.Popen | subprocess.CompletedProcess:
    """``videoreid ARGS`` in a fresh process, with a fault from ``killshim.py``."""
    # the same thread count as this process: CPU kernels are bit-reproducible per count only
    full_env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS=str(torch.get_num_threads()),
                    **(env or {}))
    cmd = [sys.executable, str(HERE / "killshim.py"), fault, str(n), *args]
    if not wait:
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)


def final_state(run: Path) -> dict:
    from videoreid.engine.checkpoint import load_checkpoint

    return load_checkpoint(run / "checkpoints" / "epoch_0003.pt")


def log_rows(run: Path) -> list[dict]:
    with open(run / "log.csv") as f:
        return [{k: v for k, v in r.items() if k not in VOLATILE} for r in csv.DictReader(f)]


def assert_same_run(run: Path, ref: Path) -> None:
    """Bit-identical to the reference: final weights, optimiser, features, metrics, log."""
    a, b = final_state(run), final_state(ref)
    for k, v in b["model"].items():
        assert torch.equal(a["model"][k], v), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sb)
    assert "pending_epoch_log" not in a
    fa, fb = np.load(run / "features.npz"), np.load(ref / "features.npz")
    np.testing.assert_array_equal(fa["features"], fb["features"])
    ma = json.loads((run / "metrics.json").read_text())
    mb = json.loads((ref / "metrics.json").read_text())
    assert ma == mb and ma["metrics"]
    assert log_rows(run) == log_rows(ref) and len(log_rows(ref)) == 3
    import yaml

    ca, cb = (yaml.safe_load((r / "config.yaml").read_text()) for r in (run, ref))
    ca.pop("output_dir"), cb.pop("output_dir")
    assert ca == cb  # never rewritten to values the run did not use
