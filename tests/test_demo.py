"""The demo: `videoreid demo --quick` writes its report; the chance level is exact."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from videoreid.evaluation.chance import expected_random_ap
from videoreid.evaluation.rank import evaluate


@pytest.mark.parametrize("n, r", [(1, 1), (2, 1), (5, 1), (5, 2), (6, 3), (7, 7), (4, 0)])
@pytest.mark.parametrize("protocol", ["market", "official"])
def test_expected_random_ap_equals_enumeration(n, r, protocol):
    """Average AP over every placement of r hits among n ranks, computed by the evaluator."""
    if r == 0:
        assert expected_random_ap(n, r) == 0.0
        return
    aps = []
    for hits in itertools.combinations(range(n), r):
        g_pids = np.full(n, 2)
        g_pids[list(hits)] = 1
        dist = np.arange(n, dtype=np.float64)[None, :]  # gallery order = ranking
        res = evaluate(dist, [1], g_pids, [0], np.ones(n, dtype=int), protocol=protocol)
        aps.append(res["mAP"])
    want = float(np.mean(aps))
    got = expected_random_ap(n, r, trapezoid=protocol == "official")
    assert got == pytest.approx(want, rel=1e-12)


def test_demo_quick_writes_report(tmp_path):
    from videoreid.cli.main import main

    threads = torch.get_num_threads()
    try:
        rc = main(["demo", "--out", str(tmp_path), "--quick"])
    finally:
        torch.set_num_threads(threads)  # the demo sets its own thread count
    assert rc == 0
    run = tmp_path / "run_quick"
    for name in ("report.json", "report.md", "training_curves.png", "ranked_results.png",
                 "log.csv", "features.npz", "config.yaml", "run_info.json", "metrics.json"):
        assert (run / name).is_file(), name
    for png in ("training_curves.png", "ranked_results.png"):
        data = (run / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    report = json.loads((run / "report.json").read_text())
    assert set(report["results"]) == {"market", "official"}
    for protocol, res in report["results"].items():
        assert 0.0 <= res["mAP"] <= 1.0
        chance = report["chance"][protocol]
        assert 0.0 < chance["mAP"] < 1.0 and 0.0 < chance["rank1"] < 1.0
    assert report["dataset"]["train_ids"] == 8  # --quick: 16 identities, half for training
    md = (run / "report.md").read_text()
    assert "market" in md and "official" in md and "chance" in md
    assert not list(run.glob(".*.tmp"))
    # a second run reuses the generated data and replaces the run folder
    assert (tmp_path / "data_quick" / "synth_config.json").is_file()
