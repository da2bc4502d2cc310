"""Feature stores and gallery indices: exact search ranks like the evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from videoreid.evaluation.distance import compute_distance
from videoreid.evaluation.features import FeatureSet
from videoreid.evaluation.protocol import evaluate_features
from videoreid.retrieval.index import GalleryIndex, IndexError_, stable_topk
from videoreid.retrieval.store import FeatureStore, concat_stores, load_store


def make_store(n: int, dim: int, ids: int, cams: int, seed: int, model: str = "m1",
               subset: str = "gallery", metric: str = "euclidean", prefix: str = "t",
               quantize: bool = False) -> FeatureStore:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(ids, dim))
    pids = rng.integers(0, ids, n)
    x = centres[pids] + 0.7 * rng.normal(size=(n, dim))
    if quantize:  # coarse values: many exactly tied distances
        x = np.round(x)
    fs = FeatureSet(x.astype(np.float32), pids, rng.integers(0, cams, n),
                    [f"{prefix}{i}" for i in range(n)], [subset] * n, "toy", 0,
                    {"model_sha256": model, "metric": metric}, "cross_camera")
    return FeatureStore(fs, np.arange(n), np.arange(n), np.arange(n) + 5, np.full(n, 6),
                        np.array([f"src{i}" for i in range(n)]))


def test_stable_topk_equals_stable_argsort_with_ties():
    rng = np.random.default_rng(0)
    d = rng.integers(0, 5, size=(30, 40)).astype(np.float32)  # lots of ties
    d[3, :] = 1.0  # a row of only ties
    d[4, ::2] = np.inf  # excluded columns
    for k in (1, 5, 40, 45):
        idx, dist = stable_topk(d, k)
        for r in range(d.shape[0]):
            order = np.argsort(d[r], kind="stable")
            order = order[np.isfinite(d[r, order])][:k]
            assert idx[r, : order.size].tolist() == order.tolist()
            assert (idx[r, order.size:] == -1).all()
            np.testing.assert_array_equal(dist[r, : order.size], d[r, order])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_index_ranks_exactly_like_the_evaluation(metric, tmp_path):
    """Full exact ranking with --exclude-same-camera = the cross_camera protocol's ranking:
    the CMC and mAP recomputed from the index's lists equal evaluate_features'."""
    g = make_store(120, 8, 15, 3, seed=1, metric=metric, quantize=True)
    q = make_store(25, 8, 15, 3, seed=2, metric=metric, subset="query", prefix="q",
                   quantize=True)
    index = GalleryIndex(g, "exact")
    res = index.search(q, k=len(g), exclude_same_camera=True)
    dist = compute_distance(q.features.features, g.features.features, metric)
    cmc, aps = np.zeros(len(g)), []
    for i in range(len(q)):
        other = g.features.camids != q.features.camids[i]
        order = np.argsort(dist[i], kind="stable")
        order = order[other[order]]
        got = res.indices[i][res.indices[i] >= 0]
        assert got.tolist() == order.tolist()  # identical list, ties in gallery order
        match = g.features.pids[got] == q.features.pids[i]
        if match.any():
            cmc[np.argmax(match):] += 1
            hits = np.flatnonzero(match)
            aps.append(np.mean((np.arange(hits.size) + 1) / (hits + 1)))
    both = concat_stores([q, g]).features
    ref = evaluate_features(both, "cross_camera", metric)
    assert ref["num_valid"] == len(aps)
    np.testing.assert_allclose(ref["cmc"][:10], (cmc / len(aps))[:10], atol=1e-12)
    assert ref["mAP"] == pytest.approx(float(np.mean(aps)), abs=1e-9)


def test_faiss_backends_agree_with_exact():
    pytest.importorskip("faiss")
    g = make_store(3000, 32, 300, 2, seed=3)
    q = make_store(100, 32, 300, 2, seed=4, subset="query", prefix="q")
    exact = GalleryIndex(g, "exact").search(q, k=10)
    flat = GalleryIndex(g, "faiss-exact").search(q, k=10)
    np.testing.assert_array_equal(flat.indices, exact.indices)  # continuous data: no ties
    np.testing.assert_allclose(flat.distances, exact.distances, rtol=1e-4, atol=1e-4)
    ivf = GalleryIndex(g, "ivf-pq", params={"nlist": 16, "m": 8, "nprobe": 8, "refine": 8})
    approx = ivf.search(q, k=10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx.indices,
                                                                exact.indices, strict=True)])
    assert recall > 0.9
    # exclusions hold for faiss results too
    res = GalleryIndex(g, "faiss-exact").search(q, k=10, exclude_same_camera=True)
    assert (g.features.camids[res.indices] != q.features.camids[:, None]).all()


@pytest.mark.parametrize("kind", ["exact", "ivf-pq"])
def test_index_files_roundtrip_and_refuse_other_models(tmp_path, kind):
    if kind != "exact":
        pytest.importorskip("faiss")
    g = make_store(800, 16, 80, 2, seed=5)
    q = make_store(20, 16, 80, 2, seed=6, subset="query", prefix="q")
    index = GalleryIndex(g, kind, params={"nlist": 8, "m": 4} if kind != "exact" else None)
    path = index.save(tmp_path / "idx")
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temporary left behind
    info = json.loads((path / "index.json").read_text())
    assert info["model_sha256"] == "m1" and info["kind"] == kind
    again = GalleryIndex.load(path)
    a, b = index.search(q, 5), again.search(q, 5)
    np.testing.assert_array_equal(a.indices, b.indices)
    index.save(path)  # overwriting an existing index works
    other = make_store(20, 16, 80, 2, seed=6, model="m2", subset="query", prefix="q")
    with pytest.raises(IndexError_, match="different models"):
        again.search(other, 5)


def test_store_roundtrip_is_a_feature_file(tmp_path):
    s = make_store(30, 4, 5, 2, seed=7)
    s.save(tmp_path / "s.npz")
    back = load_store(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.features.features, s.features.features)
    for k in ("track_ids", "frame_start", "frame_end", "num_frames", "sources"):
        np.testing.assert_array_equal(getattr(back, k), getattr(s, k))
    fs = FeatureSet.load(tmp_path / "s.npz")  # what evaluate-features reads
    assert fs.meta["model_sha256"] == "m1" and len(fs) == 30
    with pytest.raises(ValueError, match="different models"):
        concat_stores([s, make_store(3, 4, 5, 2, seed=8, model="m9", prefix="z")])
