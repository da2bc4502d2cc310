"""Synthetic multi-camera scenes, and the deployment path on them: video + MOT → matches."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from videoreid.data.synthetic.scene import render_scene
from videoreid.inference.tracks import read_mot


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene")
    render_scene(out, cameras=2, ids=3, extra=1, frames=60, height=108, width=192, seed=3)
    return out


def test_scene_files_and_ground_truth(scene):
    m = json.loads((scene / "scene.json").read_text())
    assert m["shared_identities"] == [1, 2, 3] and len(m["cameras"]) == 2
    seen = []
    for cam in m["cameras"]:
        cap = cv2.VideoCapture(str(scene / cam["video"]))
        n, first = 0, None
        while True:
            ok, img = cap.read()
            if not ok:
                break
            first = img if first is None else first
            n += 1
        assert n == 60 and first.shape == (108, 192, 3)
        gt = read_mot(scene / cam["tracks"])
        ids = sorted(set(gt.track.tolist()))
        assert ids == cam["identities"]
        assert set(m["shared_identities"]) <= set(ids) and len(cam["only_here"]) == 1
        # every box touches the image; visibility is a fraction
        x, w = gt.box[:, 0], gt.box[:, 2]
        assert ((x < 192) & (x + w > 0)).all() and (gt.frame >= 1).all() and (gt.frame <= 60).all()
        vis = np.array([float(line.split(",")[8]) for line in
                        (scene / cam["tracks"]).read_text().split()])
        assert ((vis >= 0) & (vis <= 1)).all() and (vis < 0.99).any()  # someone is occluded
        seen.append(set(cam["only_here"]))
    assert not seen[0] & seen[1]  # per-camera identities are distinct


def test_scene_is_deterministic(tmp_path):
    a = render_scene(tmp_path / "a", cameras=1, ids=1, extra=0, frames=8, height=96,
                     width=128, seed=5)
    b = render_scene(tmp_path / "b", cameras=1, ids=1, extra=0, frames=8, height=96,
                     width=128, seed=5)
    assert a["cameras"][0]["walkers"] == b["cameras"][0]["walkers"]
    assert (tmp_path / "a" / "cam0_gt.txt").read_text() == (tmp_path / "b" / "cam0_gt.txt").read_text()


def test_two_camera_matching_end_to_end(scene, demo_quick_run, tmp_path, capsys):
    """package → embed two videos with their MOT files → index → search: every shared
    identity's track is found in the other camera, and on average far above chance."""
    from videoreid.cli.main import main
    from videoreid.retrieval.store import load_store

    model = tmp_path / "model"
    assert main(["package", str(demo_quick_run / "run_quick"), "--out", str(model)]) == 0
    for c in (0, 1):
        assert main(["embed", str(model), "--video", str(scene / f"cam{c}.mp4"), "--tracks",
                     str(scene / f"cam{c}_gt.txt"), "--camera", str(c), "--labels", "track",
                     "--out", str(tmp_path / f"cam{c}.npz")]) == 0
    store = load_store(tmp_path / "cam0.npz")
    assert sorted(store.track_ids.tolist()) == [1, 2, 3, 4]
    assert (store.frame_start >= 1).all() and (store.frame_end >= store.frame_start).all()
    assert store.features.meta["skipped"]  # the crop report is recorded
    assert main(["index", "build", str(tmp_path / "cam1.npz"), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["index", "search", str(tmp_path / "idx"), str(tmp_path / "cam0.npz"), "--k", "3",
                 "--out", str(tmp_path / "res.csv"), "--picture", str(tmp_path / "r.png")]) == 0
    text = capsys.readouterr().out
    ranks = json.loads(text.split("ranks of the first true match: ")[1].splitlines()[0])
    assert sorted(ranks) == ["cam0_track1", "cam0_track2", "cam0_track3"]
    # gallery of 4 tracks, one true match: a random ranking has mean rank 2.5
    assert np.mean(list(ranks.values())) < 2.5
    rows = (tmp_path / "res.csv").read_text().splitlines()
    assert rows[0].startswith("query,query_camera") and len(rows) == 1 + 4 * 3
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    # evaluate-features reads the stores too (one camera as query, the other as gallery)
    assert main(["embed", str(model), "--video", str(scene / "cam0.mp4"), "--video",
                 str(scene / "cam1.mp4"), "--tracks", str(scene / "cam0_gt.txt"), "--tracks",
                 str(scene / "cam1_gt.txt"), "--labels", "track", "--query-cameras", "0",
                 "--out", str(tmp_path / "both.npz")]) == 0
    assert main(["evaluate-features", str(tmp_path / "both.npz")]) == 0
    assert "cross_camera" in capsys.readouterr().out
