"""The ablation benches are thin wrappers over ``videoreid ablate``: their CPU-sized overrides
resolve on every row of the tables they run (config only, nothing trains)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from videoreid.engine.ablate import list_rows, load_row_config

ROOT = Path(__file__).resolve().parents[1]


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod




CASES = [
    ("stan_ablation", "stan", "table1_mars", dict(epochs=60, P=8, K=2, lr=1e-3, loss="ce")),
    ("cmmanet_ablation", "cmmanet", "table4_mars", dict(epochs=100, P=8, K=2, lr=1e-3, hidden=16)),
    ("rgsa_rgtr_ablation", "rgsa_rgtr", "table1_mars", dict(epochs=50, P=4, K=4, lr=1e-3,
                                                           seq_len=4)),
]


@pytest.mark.parametrize("name,method,table,kw", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_cpu_overrides_resolve_on_every_row(name, method, table, kw, tmp_path):
    mod = _bench(name)
    args = argparse.Namespace(table=table, **kw)
    overrides = mod.cpu_overrides(args, tmp_path / "data")
    for row in list_rows(ROOT / "configs" / method / "ablation" / table):
        cfg = load_row_config(row, overrides, seed=0, run_dir=tmp_path / row.stem)
        assert cfg.model.args["backbone"] == "resnet_tiny", row
        assert cfg.train.device == "cpu" and cfg.train.epochs == kw["epochs"], row
        assert cfg.data.root == str(tmp_path / "data") and cfg.data.synth is None, row
