"""The exact chance level equals the average over random rankings through `evaluate`."""

from __future__ import annotations

import numpy as np
import pytest

from videoreid.data.tracklet import ReIDSplit, Tracklet
from videoreid.evaluation.chance import split_chance
from videoreid.evaluation.rank import evaluate


def _split(protocol: str) -> ReIDSplit:
    rng = np.random.default_rng(3)

    def tracks(n: int, tag: str) -> list[Tracklet]:
        return [Tracklet((), int(rng.integers(-1, 6)), int(rng.integers(0, 3)),
                         {"tracklet_id": f"{tag}{i}"}) for i in range(n)]

    query = [t for t in tracks(12, "q") if t.pid >= 1]
    return ReIDSplit([], query, tracks(30, "g"), "toy", protocol)


@pytest.mark.parametrize("protocol", ["market", "cross_camera"])
def test_split_chance_matches_monte_carlo(protocol: str) -> None:
    split = _split(protocol)
    qp = np.array([t.pid for t in split.query])
    qc = np.array([t.camid for t in split.query])
    gp = np.array([t.pid for t in split.gallery])
    gc = np.array([t.camid for t in split.gallery])
    rng = np.random.default_rng(0)
    runs = [evaluate(rng.random((len(qp), len(gp))), qp, gp, qc, gc, protocol=protocol)
            for _ in range(3000)]
    exact = split_chance(split)
    assert exact["num_valid"] == runs[0]["num_valid"]
    assert exact["mAP"] == pytest.approx(np.mean([r["mAP"] for r in runs]), abs=0.01)
    assert exact["rank1"] == pytest.approx(np.mean([r["cmc"][0] for r in runs]), abs=0.015)
