"""Chance level: the expected metrics of a uniformly random ranking, computed exactly.

Every reported result is printed beside its chance level so "far above chance" is a number,
not an impression. The expectation is taken analytically per query from the label structure
(no Monte-Carlo draws), under the protocol's own query/gallery construction and junk rules.
"""

from __future__ import annotations

import numpy as np

from videoreid.data.tracklet import ReIDSplit
from videoreid.evaluation.features import FeatureSet
from videoreid.evaluation.protocol import build_sets


def expected_random_ap(n: int, r: int, trapezoid: bool = False) -> float:
    """Expected AP of a uniformly random ranking of ``n`` items of which ``r`` are relevant.

    Non-interpolated AP = (1/r) Σ_hits precision at the hit. With ``rel_k`` the indicator of
    a hit at rank k, ``E[rel_k] = r/n`` and ``E[rel_j rel_k] = r(r−1)/(n(n−1))`` for j ≠ k, so

        E[AP] = (1/n) [H_n + (r−1)/(n−1) · (n − H_n)],   H_n = Σ_{k≤n} 1/k.

    The trapezoidal AP of the MARS ``official`` code averages, per hit at rank k, the
    precision at k and the precision just before it, ``hits_{<k}/(k−1)`` (1 at the top);
    the same argument gives ``E[Σ_hits hits_{<k}/(k−1)] = r²/n``, hence

        E[AP_trapezoid] = (E[AP] + r/n) / 2.
    """
    if r <= 0:
        return 0.0
    if n <= 1:
        return 1.0
    h = float(np.sum(1.0 / np.arange(1, n + 1)))
    ap = (h + (r - 1) / (n - 1) * (n - h)) / n
    return (ap + r / n) / 2 if trapezoid else ap


def chance_metrics(fs: FeatureSet, protocol: str) -> dict[str, float]:
    """Expected mAP and rank-1 of a random ranking under ``protocol`` for feature set ``fs``.

    Uses the protocol's own query/gallery construction (``evaluation.protocol.build_sets``)
    and junk rule (pid −1 and same pid & same camera; ``cross_camera``: the query's whole
    camera), and its rule for queries without a true match (skipped by ``market`` and
    ``cross_camera``, counted with AP 0 by ``official`` and ``query_in_gallery``).
    """
    q_idx, g_idx, _ = build_sets(fs.pids, fs.subsets, protocol)
    qp, qc = fs.pids[q_idx][:, None], fs.camids[q_idx][:, None]
    gp, gc = fs.pids[g_idx][None, :], fs.camids[g_idx][None, :]
    valid = (gp != -1) & ~((gp == qp) & (gc == qc))
    if protocol == "cross_camera":
        valid &= gc != qc
    n = valid.sum(1)
    r = (valid & (gp == qp)).sum(1)
    counted = np.ones(len(q_idx), bool) if protocol in ("official", "query_in_gallery") else r > 0
    aps = [expected_random_ap(int(a), int(b), trapezoid=protocol == "official")
           for a, b in zip(n[counted], r[counted], strict=True)]
    rank1 = np.where(n > 0, r / np.maximum(n, 1), 0.0)[counted]
    return {"mAP": float(np.mean(aps)), "rank1": float(np.mean(rank1)),
            "num_valid": int(counted.sum())}


def split_chance(split: ReIDSplit, protocol: str | None = None) -> dict[str, float]:
    """:func:`chance_metrics` of a split's query/gallery labels (default: its own protocol)."""
    fs = FeatureSet.from_split(split, np.zeros((len(split.query), 1), np.float32),
                               np.zeros((len(split.gallery), 1), np.float32))
    return chance_metrics(fs, protocol or split.protocol)
