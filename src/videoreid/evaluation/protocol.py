"""Evaluating feature sets: building each protocol's query/gallery sets, multi-split means,
and the results table.

Query and gallery sets per protocol, from rows marked ``"query"`` / ``"gallery"`` (the
gallery rows being every non-query test tracklet, junk and distractors included, as the
loaders give them); row order is file order throughout:

=====================  ======================  ==============================================
protocol               query                   gallery
=====================  ======================  ==============================================
``official``           query rows              query + gallery rows, junk kept (MARS: 12,180)
``market``             query rows              gallery rows without pid −1 (MARS: 9,330)
``query_in_gallery``   query rows              query + gallery rows without pid −1 (11,310)
``cross_camera``       query rows              gallery rows without pid −1
=====================  ======================  ==============================================

``train`` rows are ignored. Junk dropped here is junk for every query anyway, so dropping
it changes no number (see ``rank``); its count is reported in the result.

Post-processing, in this order when both are asked: k-reciprocal re-ranking computed on
the protocol's own query and gallery sets (as the authors' API takes ``q_g, q_q, g_g``; under
``official`` the queries are therefore also gallery items), then score normalisation of the
resulting distance matrix.

Multi-split datasets (iLIDS-VID, PRID2011: 10 splits) are evaluated split by split; the
summary is the mean and the sample standard deviation (ddof = 1; 0 for a single split)
over splits of every metric and of the whole CMC curve.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from videoreid.data.tracklet import ReIDSplit
from videoreid.evaluation.distance import Metric, compute_distance
from videoreid.evaluation.features import FeatureSet
from videoreid.evaluation.normalization import Mode, score_normalize
from videoreid.evaluation.rank import PROTOCOLS, evaluate
from videoreid.evaluation.rerank import re_ranking_features

log = logging.getLogger(__name__)

# Each dataset's usual protocol (``docs/datasets.md``); MARS has three, ``market`` is the
# most common in open-source code.
DEFAULT_PROTOCOLS: dict[str, str] = {
    "mars": "market",
    "dukev": "market",
    "market1501": "market",
    "folder": "market",
    "ilidsvid": "cross_camera",
    "prid2011": "cross_camera",
}


def default_protocol(dataset: str) -> str:
    """The protocol used for ``dataset`` when none is named (``market`` if unknown)."""
    return DEFAULT_PROTOCOLS.get(dataset.lower(), "market")


def build_sets(
    pids: np.ndarray, subsets: np.ndarray, protocol: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the protocol's query and gallery sets.

    Args:
        pids: ``(N,)`` identities (−1 = junk).
        subsets: ``(N,)`` ``"query"`` / ``"gallery"`` / ``"train"``.
        protocol: one of ``rank.PROTOCOLS``.

    Returns:
        ``(query_idx, gallery_idx, q_gallery_index)``: row indices (file order), and for
        each query its position in ``gallery_idx`` (−1 when the gallery does not hold it).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    pids, subsets = np.asarray(pids), np.asarray(subsets)
    is_q = subsets == "query"
    is_g = subsets == "gallery"
    query = np.flatnonzero(is_q)
    if protocol == "official":
        gallery = np.flatnonzero(is_q | is_g)
    elif protocol == "query_in_gallery":
        gallery = np.flatnonzero((is_q | is_g) & (pids != -1))
    else:
        gallery = np.flatnonzero(is_g & (pids != -1))
    pos = np.full(pids.shape[0], -1, dtype=np.int64)
    pos[gallery] = np.arange(gallery.shape[0])
    return query, gallery, pos[query]


def protocol_distances(
    fs: FeatureSet,
    protocol: str,
    metric: Metric = "euclidean",
    *,
    rerank: bool = False,
    score_norm: bool = False,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    score_norm_mode: Mode = "symmetric",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The protocol's query/gallery rows and the distance matrix :func:`evaluate_features`
    ranks (after re-ranking and score normalisation when asked).

    Returns:
        ``(query_idx, gallery_idx, q_gallery_index, dist)`` (see :func:`build_sets`), ``dist``
        ``(Nq, Ng)``.
    """
    q_idx, g_idx, q_in_g = build_sets(fs.pids, fs.subsets, protocol)
    if q_idx.shape[0] == 0 or g_idx.shape[0] == 0:
        raise ValueError(f"{fs.describe()}: protocol {protocol} needs query and gallery rows")
    qf, gf = fs.features[q_idx], fs.features[g_idx]
    if rerank:
        dist = re_ranking_features(qf, gf, k1=k1, k2=k2, lambda_value=lambda_value, metric=metric)
    else:
        dist = compute_distance(qf, gf, metric=metric)
    if score_norm:
        dist = score_normalize(dist, mode=score_norm_mode)
    return q_idx, g_idx, q_in_g, np.asarray(dist)


def evaluate_features(
    fs: FeatureSet,
    protocol: str | None = None,
    metric: Metric = "euclidean",
    rerank: bool = False,
    score_norm: bool = False,
    max_rank: int = 50,
    per_camera: bool = False,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    score_norm_mode: Mode = "symmetric",
) -> dict[str, Any]:
    """Evaluate one feature set under a protocol.

    Args:
        fs: features and labels of one split.
        protocol: ``rank.PROTOCOLS`` name; default ``fs.protocol`` or the dataset's default.
        metric: ``"euclidean"`` or ``"cosine"``.
        rerank: apply k-reciprocal re-ranking (``k1, k2, lambda_value``).
        score_norm: apply score normalisation (``score_norm_mode``).
        max_rank: CMC length.
        per_camera: add the per-camera-pair table.

    Returns:
        ``rank.evaluate``'s dict plus ``dataset``, ``split``, ``metric``, ``rerank``,
        ``score_norm`` and ``num_junk_dropped``.
    """
    protocol = protocol or fs.protocol or default_protocol(fs.dataset)
    q_idx, g_idx, q_in_g, dist = protocol_distances(
        fs, protocol, metric, rerank=rerank, score_norm=score_norm, k1=k1, k2=k2,
        lambda_value=lambda_value, score_norm_mode=score_norm_mode)
    n_junk = int(((fs.subsets == "gallery") & (fs.pids == -1)).sum()) if protocol != "official" else 0
    if n_junk:
        log.info("%s: %d junk gallery tracklets (pid -1) left out of the %s gallery", fs.dataset, n_junk, protocol)
    result = evaluate(
        dist,
        fs.pids[q_idx], fs.pids[g_idx], fs.camids[q_idx], fs.camids[g_idx],
        protocol=protocol, max_rank=max_rank, per_camera=per_camera, q_gallery_index=q_in_g,
    )
    result.update(
        dataset=fs.dataset, split=fs.split, metric=metric, rerank=bool(rerank),
        score_norm=bool(score_norm), num_junk_dropped=n_junk,
    )
    return result


def evaluate_split(
    split: ReIDSplit,
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    protocol: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Evaluate features of a loaded split (``(len(query), D)``, ``(len(gallery), D)``).

    ``kwargs`` are passed to :func:`evaluate_features`.
    """
    fs = FeatureSet.from_split(split, query_features, gallery_features)
    return evaluate_features(fs, protocol=protocol, **kwargs)


_SUMMARY_KEYS = ("mAP", "mINP")


def evaluate_splits(feature_sets: Sequence[FeatureSet], **kwargs: Any) -> dict[str, Any]:
    """Evaluate every split and summarise (the 10-split protocol of iLIDS-VID / PRID2011).

    Args:
        feature_sets: one per split.
        kwargs: passed to :func:`evaluate_features`.

    Returns:
        ``{"per_split": [result, ...], "mean": {...}, "std": {...}, "dataset", "protocol",
        "num_splits"}``; ``mean`` / ``std`` hold ``cmc`` (arrays), ``mAP``, ``mINP``,
        ``num_valid`` and ``num_gallery``.
    """
    if not feature_sets:
        raise ValueError("evaluate_splits needs at least one feature set")
    per = [evaluate_features(fs, **kwargs) for fs in feature_sets]
    datasets = sorted({r["dataset"] for r in per})
    protocols = sorted({r["protocol"] for r in per})
    if len(protocols) > 1:
        raise ValueError(f"splits were evaluated under different protocols {protocols}; name one")
    ddof = 1 if len(per) > 1 else 0
    mean: dict[str, Any] = {"cmc": np.mean([r["cmc"] for r in per], axis=0)}
    std: dict[str, Any] = {"cmc": np.std([r["cmc"] for r in per], axis=0, ddof=ddof)}
    for k in (*_SUMMARY_KEYS, "num_valid", "num_gallery"):
        v = np.array([r[k] for r in per], dtype=np.float64)
        mean[k], std[k] = float(v.mean()), float(v.std(ddof=ddof))
    return {
        "per_split": per,
        "mean": mean,
        "std": std,
        "dataset": "+".join(datasets),
        "protocol": protocols[0],
        "metric": per[0]["metric"],
        "rerank": per[0]["rerank"],
        "score_norm": per[0]["score_norm"],
        "num_splits": len(per),
    }


# --------------------------------------------------------------------------- table

_RANKS = (1, 5, 10, 20)


def _post(r: dict[str, Any]) -> str:
    parts = [p for p, on in (("rerank", r.get("rerank")), ("score-norm", r.get("score_norm"))) if on]
    return "+".join(parts) or "-"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _row(r: dict[str, Any]) -> list[str]:
    cmc = r["cmc"]
    ranks = [_pct(cmc[k - 1]) if k <= len(cmc) else "n/a" for k in _RANKS]
    return [
        str(r["dataset"]), str(r["split"]), str(r["protocol"]), str(r.get("metric", "")), _post(r),
        _pct(r["mAP"]), _pct(r["mINP"]), *ranks,
        f"{r['num_valid']}/{r['num_query']}", str(r["num_gallery"]),
    ]


def _summary_rows(s: dict[str, Any]) -> list[list[str]]:
    m, sd = s["mean"], s["std"]

    def pm(k: str, i: int | None = None) -> str:
        if i is None:
            return f"{_pct(m[k])} ± {_pct(sd[k])}"
        return f"{_pct(m[k][i])} ± {_pct(sd[k][i])}" if i < len(m[k]) else "n/a"

    first = s["per_split"][0]
    return [[
        s["dataset"], f"mean±std ({s['num_splits']})", s["protocol"], str(first.get("metric", "")), _post(first),
        pm("mAP"), pm("mINP"), *(pm("cmc", k - 1) for k in _RANKS),
        f"{m['num_valid']:.0f}/{first['num_query']}", f"{m['num_gallery']:.0f}",
    ]]


def format_table(results: dict[str, Any] | Sequence[dict[str, Any]]) -> str:
    """A plain-text table of results; every row names dataset, split and protocol.

    Args:
        results: one :func:`evaluate_features` result, a list of them, or an
            :func:`evaluate_splits` summary (per-split rows then a mean ± std row).

    Returns:
        The table (metrics in %), columns dataset, split, protocol, metric, post-processing,
        mAP, mINP, R1, R5, R10, R20, valid/total queries, gallery size.
    """
    header = ["dataset", "split", "protocol", "metric", "post", "mAP", "mINP",
              *(f"R{k}" for k in _RANKS), "queries", "gallery"]
    rows: list[list[str]] = []
    items = [results] if isinstance(results, dict) else list(results)
    for r in items:
        if "per_split" in r:
            rows.extend(_row(x) for x in r["per_split"])
            rows.extend(_summary_rows(r))
        else:
            rows.append(_row(r))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 5 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    lines = [fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]
    return "\n".join(lines)
