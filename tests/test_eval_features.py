"""Feature files, protocol set construction, multi-split summaries, the table and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from videoreid.cli.main import main
from videoreid.data.tracklet import ReIDSplit, Tracklet
from videoreid.evaluation.features import KEYS, FeatureSet
from videoreid.evaluation.protocol import (
    build_sets,
    evaluate_features,
    evaluate_split,
    evaluate_splits,
    format_table,
)
from videoreid.evaluation.rank import evaluate


def make_set(seed=0, n_ids=12, dataset="mars", split=0, noise=0.6, junk=3):
    """Each identity: one query (camera 0) and two gallery tracklets (cameras 1, 2), plus
    ``junk`` pid −1 gallery rows and two distractors (pid 0)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids + 1, 8))
    pids = [*range(1, n_ids + 1), *np.repeat(np.arange(1, n_ids + 1), 2), *[-1] * junk, 0, 0]
    subsets = ["query"] * n_ids + ["gallery"] * (2 * n_ids + junk + 2)
    camids = [0] * n_ids + [1, 2] * n_ids + [1] * junk + [2, 2]
    pids = np.array(pids)
    feats = centres[np.maximum(pids, 0) % (n_ids + 1)] + noise * rng.standard_normal((pids.shape[0], 8))
    return FeatureSet(
        features=feats, pids=pids, camids=camids, tracklet_ids=[f"t{i}" for i in range(pids.shape[0])],
        subsets=subsets, dataset=dataset, split=split, meta={"model": "test"},
    )


def test_save_load_round_trip(tmp_path):
    fs = make_set()
    path = fs.save(tmp_path / "sub" / "feats.npz")
    assert sorted(p.name for p in path.parent.iterdir()) == ["feats.npz"]  # no temporary left
    back = FeatureSet.load(path)
    np.testing.assert_array_equal(back.features, fs.features)
    assert back.features.dtype == np.float32 and back.pids.dtype == np.int64
    np.testing.assert_array_equal(back.tracklet_ids, fs.tracklet_ids)
    np.testing.assert_array_equal(back.subsets, fs.subsets)
    assert (back.dataset, back.split, back.meta, back.protocol) == ("mars", 0, {"model": "test"}, "")
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == set(KEYS)


def test_load_errors_name_the_file(tmp_path):
    fs = make_set()
    arrays = {k: getattr(fs, k) for k in ("features", "pids", "camids", "tracklet_ids", "subsets")}
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match=r"bad\.npz: missing keys \['dataset'"):
        FeatureSet.load(bad)
    good = fs.save(tmp_path / "good.npz")
    with np.load(good) as z:
        d = {k: z[k] for k in z.files}
    d["pids"] = d["pids"][:-1]
    short = tmp_path / "short.npz"
    np.savez(short, **d)
    with pytest.raises(ValueError, match=r"short\.npz: 'pids' must have shape"):
        FeatureSet.load(short)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        FeatureSet.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="unknown subset"):
        FeatureSet(np.zeros((1, 2)), [1], [0], ["a"], ["probe"], "mars")


def test_build_sets_per_protocol():
    pids = np.array([1, 2, -1, 1, 2, 0, -1])
    subsets = np.array(["query", "query", "gallery", "gallery", "gallery", "gallery", "train"])
    q, g, qg = build_sets(pids, subsets, "official")
    assert q.tolist() == [0, 1] and g.tolist() == [0, 1, 2, 3, 4, 5] and qg.tolist() == [0, 1]
    q, g, qg = build_sets(pids, subsets, "market")
    assert g.tolist() == [3, 4, 5] and qg.tolist() == [-1, -1]
    q, g, qg = build_sets(pids, subsets, "query_in_gallery")
    assert g.tolist() == [0, 1, 3, 4, 5] and qg.tolist() == [0, 1]
    with pytest.raises(ValueError, match="unknown protocol"):
        build_sets(pids, subsets, "standard")


def test_evaluate_features_equals_manual_evaluation():
    fs = make_set()
    r = evaluate_features(fs, protocol="market")
    q, g = fs.indices("query"), np.flatnonzero((fs.subsets == "gallery") & (fs.pids != -1))
    d = np.sqrt(((fs.features[q][:, None] - fs.features[g][None]) ** 2).sum(-1))
    ref = evaluate(d, fs.pids[q], fs.pids[g], fs.camids[q], fs.camids[g], protocol="market")
    assert r["mAP"] == pytest.approx(ref["mAP"], abs=1e-6)
    assert (r["dataset"], r["split"], r["protocol"], r["num_gallery"], r["num_junk_dropped"]) == ("mars", 0, "market", 26, 3)
    official = evaluate_features(fs, protocol="official", per_camera=True)
    assert official["num_gallery"] == 12 + 29 and official["num_valid"] == 12
    assert official["per_camera"]["num_queries"][0, 1] == 12
    for post in ({"rerank": True}, {"score_norm": True}, {"rerank": True, "score_norm": True}):
        out = evaluate_features(fs, protocol="market", **post)
        assert 0 < out["mAP"] <= 1


def test_default_protocol_comes_from_the_file_then_the_dataset():
    assert evaluate_features(make_set(dataset="ilidsvid"))["protocol"] == "cross_camera"
    fs = make_set()
    fs.protocol = "official"
    assert evaluate_features(fs)["protocol"] == "official"


def test_evaluate_split_from_tracklets():
    def t(pid, cam, name):
        return Tracklet(frames=(Path(f"/x/{name}.jpg"),), pid=pid, camid=cam, meta={"tracklet_id": name})

    split = ReIDSplit(train=[], query=[t(1, 0, "a"), t(2, 0, "b")],
                      gallery=[t(1, 1, "c"), t(2, 1, "d"), t(-1, 1, "e")], name="prid2011",
                      protocol="cross_camera", split_index=3)
    qf = np.array([[0.0, 0.0], [5.0, 5.0]])
    gf = np.array([[0.1, 0.0], [5.0, 5.1], [0.0, 0.05]])
    r = evaluate_split(split, qf, gf)
    assert (r["dataset"], r["split"], r["protocol"]) == ("prid2011", 3, "cross_camera")
    assert r["mAP"] == 1.0 and r["num_gallery"] == 2
    with pytest.raises(ValueError, match="do not match"):
        evaluate_split(split, qf[:1], gf)


def test_evaluate_splits_mean_and_std():
    sets = [make_set(seed=s, dataset="ilidsvid", split=s, noise=1.0) for s in range(3)]
    s = evaluate_splits(sets)
    r1 = np.array([r["cmc"][0] for r in s["per_split"]])
    assert s["num_splits"] == 3 and s["protocol"] == "cross_camera"
    assert s["mean"]["cmc"][0] == pytest.approx(r1.mean())
    assert s["std"]["cmc"][0] == pytest.approx(r1.std(ddof=1))
    assert [r["split"] for r in s["per_split"]] == [0, 1, 2]
    table = format_table(s)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["dataset", "split", "protocol"]
    assert len(lines) == 2 + 3 + 1
    assert "mean±std (3)" in lines[-1] and "±" in lines[-1] and "cross_camera" in lines[-1]


def test_format_table_single_result():
    r = evaluate_features(make_set(), protocol="official", max_rank=10)
    table = format_table(r)
    header, _, row = table.splitlines()
    assert "mINP" in header and "R20" in header and "gallery" in header
    assert row.split()[:5] == ["mars", "0", "official", "euclidean", "-"]
    assert "n/a" in row  # R20 beyond max_rank
    assert f"{100 * r['mAP']:.1f}" in row and "12/12" in row


def test_cli_prints_table(tmp_path, capsys):
    a = make_set(split=0, dataset="ilidsvid").save(tmp_path / "s0.npz")
    b = make_set(seed=1, split=1, dataset="ilidsvid").save(tmp_path / "s1.npz")
    assert main(["evaluate-features", str(a), "--protocol", "market", "--per-camera"]) == 0
    out = capsys.readouterr().out
    assert "ilidsvid" in out and "market" in out and "cross-camera mean" in out
    json_path = tmp_path / "res.json"
    assert main(["evaluate-features", str(a), str(b), "--rerank", "--score-norm", "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    assert "mean±std (2)" in out and "rerank+score-norm" in out and "cross_camera" in out
    assert json_path.is_file()
