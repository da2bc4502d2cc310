"""Pictures: attention overlays from names and shapes, ranked lists, camera naming, query
selection, and the ranking the pictures show agreeing with the evaluation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from videoreid.data.tracklet import Tracklet
from videoreid.evaluation.rank import evaluate
from videoreid.viz import attention as att
from videoreid.viz.naming import camera_label
from videoreid.viz.ranking import (
    draw_ranked_list,
    first_match_rank,
    rank_for_query,
    render_ranked_list,
)
from videoreid.viz.report import select_queries

FH, FW = 64, 32


def _frames(t: int = 3) -> list[np.ndarray]:
    return [np.full((40, 20, 3), (120 + 10 * i, 60, 30), np.uint8) for i in range(t)]


def _jet_rgb(v: float) -> np.ndarray:
    import cv2

    c = cv2.applyColorMap(np.array([[int(round(v * 255))]], np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(c, cv2.COLOR_BGR2RGB)[0, 0].astype(float)


# ------------------------------------------------------------------ classification


def test_maps_are_classified_by_shape_and_unknown_ranks_are_reported():
    b, t = 2, 3
    maps = {
        "spatial/parts": torch.rand(b, t, 4, 5, 3),
        "spatial/one": torch.rand(b, t, 5, 3),
        "temporal": torch.rand(b, t),
        "temporal/parts": torch.rand(b, t, 4),
        "temporal_relation": torch.rand(b, t, t),
        "wrong_time": torch.rand(b, t + 1, 2),
        "scalar_per_clip": torch.rand(b),
    }
    views, skipped = att.classify_attention(maps, index=1, num_frames=t)
    kinds = {v.name: (v.kind, v.values.shape) for v in views}
    assert kinds == {
        "spatial/parts": ("spatial", (t, 4, 5, 3)),
        "spatial/one": ("spatial", (t, 1, 5, 3)),
        "temporal": ("temporal", (t, 1)),
        "temporal/parts": ("temporal", (t, 4)),
        "temporal_relation": ("relation", (t, t)),
    }
    # item 1 of the batch, not item 0
    v = next(v for v in views if v.name == "spatial/parts")
    np.testing.assert_allclose(v.values, maps["spatial/parts"][1].numpy(), rtol=1e-6)
    assert sorted(s.split()[0] for s in skipped) == ["scalar_per_clip", "wrong_time"]


def test_a_square_temporal_map_without_relation_in_its_name_stays_per_part():
    """STAN with K = T parts must not be mistaken for a frame-to-frame relation."""
    views, _ = att.classify_attention({"temporal": torch.rand(1, 4, 4)}, num_frames=4)
    assert views[0].kind == "temporal" and views[0].values.shape == (4, 4)


def test_many_channels_keep_the_most_spatially_selective():
    t, c = 2, 20
    x = np.full((1, t, c, 4, 4), 0.5)
    rng = np.random.default_rng(0)
    selective = [3, 11, 17]
    for k in selective:
        x[0, :, k] = rng.random((t, 4, 4))  # varies over space; the rest is flat
    views, _ = att.classify_attention({"spatial/channels": x}, num_frames=t, max_rows=3)
    assert views[0].channels == tuple(selective) and views[0].total_channels == c
    np.testing.assert_array_equal(views[0].values, x[0][:, selective])


# ------------------------------------------------------------------ drawing


def test_overlay_puts_the_hot_colour_where_the_map_peaks():
    """A map that is 1 in its top-left cell and 0 elsewhere: after upsampling and blending,
    the top-left pixel of that row is the frame blended with jet(1), the bottom-right one
    with jet(0)."""
    t = 2
    m = np.zeros((1, t, 4, 2))
    m[0, :, 0, 0] = 1.0
    frames = [np.full((FH, FW, 3), 100, np.uint8) for _ in range(t)]
    img = att.render_attention(frames, {"gate": m}, frame_height=FH, frame_width=FW)
    plain = att.render_attention(frames, {}, frame_height=FH, frame_width=FW)
    assert img.shape[0] > plain.shape[0]
    x0 = att.LABEL_WIDTH + 4  # tiles start after the label column and a 4-pixel gap
    assert (img[:FH, x0:x0 + FW] == 100).all()  # first row: the plain frames
    y_overlay = FH + 4  # the map's row follows after a 4-pixel gap
    hot = 0.5 * 100 + 0.5 * _jet_rgb(1.0)
    cold = 0.5 * 100 + 0.5 * _jet_rgb(0.0)
    np.testing.assert_allclose(img[y_overlay, x0], hot, atol=3)
    np.testing.assert_allclose(img[y_overlay + FH - 1, x0 + FW - 1], cold, atol=3)


def test_temporal_bars_are_proportional_to_the_weights():
    t = 4
    w = np.array([[0.1, 0.2, 0.3, 0.4]])
    frames = [np.full((FH, FW, 3), 90, np.uint8) for _ in range(t)]
    img = att.render_attention(frames, {"tap": w}, frame_height=FH, frame_width=FW)
    bar = img[-70:]  # the bar row is the last, 70 pixels tall
    colour = att.PALETTE[0]
    heights = []
    for i in range(t):
        x = att.LABEL_WIDTH + 4 + i * (FW + 2) + 8
        heights.append(int((np.abs(bar[:, x].astype(int) - colour).sum(axis=1) == 0).sum()))
    full = 70 - 18
    assert heights == [round(full * v / 0.4) for v in w[0]], heights


def test_streams_get_their_own_row_and_every_spatial_map_over_them():
    t = 3
    frames = _frames(t)
    flow = np.random.default_rng(0).normal(size=(t, 2, 8, 4)).astype(np.float32)
    streams = {"flow": [att.flow_picture(f) for f in flow]}
    one = att.render_attention(frames, {"mutual": np.random.rand(1, t, 1, 4, 2)})
    two = att.render_attention(frames, {"mutual": np.random.rand(1, t, 1, 4, 2)},
                               streams=streams)
    # two more rows of 128-pixel tiles, 4 pixels apart: the flow itself and the map over it
    assert two.shape[0] - one.shape[0] == 2 * (128 + 4)


def test_flow_picture_encodes_direction_as_hue_and_magnitude_as_value():
    import cv2

    f = np.zeros((2, 4, 8), np.float32)
    f[0, :, :4] = 1.0  # rightwards, left half
    f[1, :, 4:] = 2.0  # downwards, right half (larger)
    hsv = cv2.cvtColor(att.flow_picture(f), cv2.COLOR_RGB2HSV)
    assert abs(int(hsv[0, 0, 0]) - 0) <= 1 and abs(int(hsv[0, 7, 0]) - 45) <= 1  # 0°, 90°
    assert hsv[0, 7, 2] == 255 and 120 <= hsv[0, 0, 2] <= 135


def test_draw_attention_writes_a_small_png(tmp_path):
    t = 4
    maps = {"spatial": torch.rand(1, t, 6, 4, 2), "temporal": torch.softmax(torch.rand(1, t, 6), 1)}
    p = att.draw_attention(_frames(t), maps, tmp_path / "a.png", title="STAN-like")
    data = p.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 300_000
    from PIL import Image

    assert Image.open(p).mode == "P"  # palette PNG
    assert att.map_names(maps, t) == ["spatial", "temporal"]


# ------------------------------------------------------------------ ranked lists


def test_ranked_list_borders_follow_the_match_flags(tmp_path):
    from videoreid.viz import ranking

    q = _frames(2)
    gal = [_frames(2), _frames(2), _frames(2)]
    img = render_ranked_list(q, gal, [True, False, None], ["a", "b", "c"],
                             query_label="query", frame_height=FH, frame_width=FW, per_row=3)
    counts = {name: int((img.reshape(-1, 3) == np.array(c)).all(axis=1).sum())
              for name, c in (("green", ranking.GREEN), ("red", ranking.RED),
                              ("gray", ranking.GRAY), ("blue", ranking.BLUE))}
    border = 2 * ranking.BORDER * (2 * FW + FH + 2 * ranking.BORDER)  # one framed strip
    for name in ("green", "red", "gray", "blue"):
        assert counts[name] >= border, counts
    with pytest.raises(ValueError, match="one of each per result"):
        render_ranked_list(q, gal, [True], ["a", "b", "c"])
    p = draw_ranked_list(q, gal, [True, False, None], ["a", "b", "c"], tmp_path / "r.jpg")
    assert p.read_bytes()[:2] == b"\xff\xd8"


def test_rank_and_first_match_agree_with_the_evaluation_cmc():
    """First-match ranks of the picture code give the evaluator's CMC (market and
    cross_camera rules), on random data with same-camera matches and junk."""
    rng = np.random.default_rng(1)
    nq, ng = 30, 60
    q_pids = rng.integers(1, 8, nq)
    g_pids = rng.integers(0, 8, ng)
    g_pids[:5] = -1
    q_cams, g_cams = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    dist = rng.random((nq, ng))
    dist[:, 10:14] = 0.5  # ties
    for protocol, cross in (("market", False), ("cross_camera", True)):
        res = evaluate(dist, q_pids, g_pids, q_cams, g_cams, protocol=protocol, max_rank=ng)
        firsts = [first_match_rank(dist[i], q_pids[i], q_cams[i], g_pids, g_cams,
                                   exclude_same_camera=cross) for i in range(nq)]
        counted = [f for f, a in zip(firsts, res["ap"], strict=True) if np.isfinite(a)]
        assert None not in counted
        cmc = [np.mean([f <= k for f in counted]) for k in range(1, ng + 1)]
        np.testing.assert_allclose(cmc, res["cmc"])
    top = rank_for_query(dist[0], q_pids[0], q_cams[0], g_pids, g_cams, topk=10)
    assert (g_pids[top] != -1).all()
    assert not ((g_pids[top] == q_pids[0]) & (g_cams[top] == q_cams[0])).any()
    assert np.all(np.diff(dist[0, top]) >= 0)


# ------------------------------------------------------------------ naming, selection


def test_camera_labels_follow_each_datasets_files():
    assert [camera_label("mars", c) for c in range(6)] == ["1", "2", "3", "4", "5", "6"]
    assert camera_label("dukev", 7) == "8" and camera_label("ilidsvid", 0) == "1"
    assert [camera_label("prid2011", c) for c in (0, 1)] == ["a", "b"]
    assert camera_label("folder", 0) == "0"


def test_mars_camera_labels_match_the_frame_file_names(tmp_path):
    from videoreid.data.datasets.factory import build_dataset
    from videoreid.data.synthetic import generate

    generate("mars", tmp_path, ids=6, cameras=3, seed=0, height=64, width=32,
             tracklet_len=(4, 6), keypoints=False, progress=False)
    split = build_dataset("mars", tmp_path).split(0)
    seen = set()
    for t in [*split.train, *split.query, *split.gallery]:
        cam = re.match(r"(\d{4}|00-1)C(\d)T", t.frames[0].name).group(2)
        assert camera_label("mars", t.camid) == cam
        seen.add(cam)
    assert len(seen) == 3


def test_query_selection_best_median_worst():
    ap = np.array([0.5, 0.9, np.nan, 0.1, 0.7, 0.3, 1.0, 0.2, 0.6, 0.4])
    got = select_queries(ap, 2)
    assert got == {"best": [6, 1], "median": [8, 0], "worst": [7, 3]}
    few = select_queries(np.array([0.2, 0.8, 0.5, np.nan]), 2)
    assert few == {"best": [1], "median": [2], "worst": [0]}
    chosen = sum(few.values(), [])
    assert len(chosen) == len(set(chosen))
    assert select_queries(np.array([np.nan]), 3) == {"best": [], "median": [], "worst": []}


def test_tracklet_meta_pid_is_shown_for_relabelled_training_ids():
    from videoreid.viz.naming import pid_label

    assert pid_label(Tracklet(("a.jpg",), 3, 0, {"orig_pid": 1154})) == "1154"
    assert pid_label(Tracklet(("a.jpg",), 7, 0)) == "7"
