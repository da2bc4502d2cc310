"""Helpers of the fault-injection suite (run, compare, copy); fixtures are in conftest.py."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"

def volatile(column: str) -> bool:
    """Log columns that may differ between equal runs: timings, throughput, the resume note."""
    return column == "resumed" or column.endswith(("_s", "_frac"))


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tensorboard", ".run.lock"))
    return dst


def run_cli(*args: str, fault: str = "none", n: int = 0, env: dict | None = None,
            wait: bool = True, timeout: float = 900) -> subprocess.Popen | subprocess.CompletedProcess:
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
        return [{k: v for k, v in r.items() if not volatile(k)} for r in csv.DictReader(f)]


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
