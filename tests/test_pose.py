"""Pose maps: channel layout, rendering (vs. a loop port of OpenPose's label code), flip rule,
keypoint files, the clip-loader modality, the cache and ``videoreid pose``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from videoreid.modalities.pose import (
    FLIP_PERMUTATION,
    FLIP_SIGN,
    KEYPOINT_NAMES,
    NUM_MAPS,
    PAF_LIMBS,
    PAIR_TO_PAF,
    KeypointFileError,
    PoseCache,
    PoseLoader,
    compute_dataset_pose,
    flip_pose_maps,
    keypoints_json,
    keypoints_path,
    map_size,
    paf_channels,
    parse_keypoints,
    read_keypoints,
    render_pose_maps,
    single_person_keypoints,
)

H, W = 128, 64


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A small synthetic MARS-layout dataset with keypoint files (easy preset)."""
    from videoreid.data.synthetic import generate

    out = tmp_path_factory.mktemp("pose_synth")
    m = generate("mars", out, ids=4, cameras=2, seed=0, height=H, width=W, preset="easy",
                 tracklet_len=(6, 8), progress=False)
    return out, m


def normal_tracklets(m):
    return [t for t in m.tracklets if t.kind == "normal"]


# ------------------------------------------------------------------ reference (loop) port


def reference_maps(kps: np.ndarray, size: tuple[int, int], stride: int, sigma: float,
                   thre: float) -> np.ndarray:
    """OpenPose's cpm_data_transformer putGaussianMaps / putVecMaps, cell by cell.

    kps: (P, 18, 3) for one frame. Returns (57, h, w).
    """
    h, w = size[0] // stride, size[1] // stride
    out = np.zeros((57, h, w))
    start = stride / 2.0 - 0.5
    for k in range(18):
        for p in range(len(kps)):
            x, y, c = kps[p, k]
            if c <= 0:
                continue
            for gy in range(h):
                for gx in range(w):
                    px, py = start + gx * stride, start + gy * stride
                    e = ((px - x) ** 2 + (py - y) ** 2) / 2.0 / sigma / sigma
                    if e > 4.6052:
                        continue
                    out[k, gy, gx] = min(out[k, gy, gx] + math.exp(-e), 1.0)
    out[18] = np.maximum(1.0 - out[:18].max(axis=0), 0.0)

    def cround(v):  # C++ round
        return math.floor(v + 0.5) if v >= 0 else math.ceil(v - 0.5)

    for j, (a, b) in enumerate(PAF_LIMBS):
        count = np.zeros((h, w))
        for p in range(len(kps)):
            if kps[p, a, 2] <= 0 or kps[p, b, 2] <= 0:
                continue
            ax, ay = kps[p, a, 0] / stride, kps[p, a, 1] / stride
            bx, by = kps[p, b, 0] / stride, kps[p, b, 1] / stride
            n = math.hypot(bx - ax, by - ay)
            if n == 0:
                continue
            vx, vy = (bx - ax) / n, (by - ay) / n
            min_x, max_x = max(cround(min(ax, bx) - thre), 0), min(cround(max(ax, bx) + thre), w)
            min_y, max_y = max(cround(min(ay, by) - thre), 0), min(cround(max(ay, by) + thre), h)
            for gy in range(min_y, max_y):
                for gx in range(min_x, max_x):
                    if abs((gx - ax) * vy - (gy - ay) * vx) <= thre:
                        cnt = count[gy, gx]
                        ix, iy = 19 + 2 * j, 20 + 2 * j
                        out[ix, gy, gx] = (out[ix, gy, gx] * cnt + vx) / (cnt + 1)
                        out[iy, gy, gx] = (out[iy, gy, gx] * cnt + vy) / (cnt + 1)
                        count[gy, gx] += 1
    return out


# --------------------------------------------------------------------------- layout


def test_paf_channels_match_pytorch_openpose_map_idx():
    # pytorch-openpose body.py: limbSeq (1-based) and mapIdx (into the 57-channel stack)
    limb_seq = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11],
                [2, 12], [12, 13], [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18],
                [3, 17], [6, 18]]
    map_idx = [[31, 32], [39, 40], [33, 34], [35, 36], [41, 42], [43, 44], [19, 20], [21, 22],
               [23, 24], [25, 26], [27, 28], [29, 30], [47, 48], [49, 50], [53, 54], [51, 52],
               [55, 56], [37, 38], [45, 46]]
    assert [list(p) for p in PAIR_TO_PAF] == map_idx
    for (a, b), (cx, cy) in zip(limb_seq, map_idx, strict=True):
        assert paf_channels(a - 1, b - 1) == (cx, cy)
        j = (cx - 19) // 2
        assert PAF_LIMBS[j] == (a - 1, b - 1)  # same direction as OpenPose's assembly
    assert len(set(PAF_LIMBS)) == 19 and NUM_MAPS == 57


def test_flip_rule_is_an_involution_swapping_sides():
    assert sorted(FLIP_PERMUTATION.tolist()) == list(range(57))
    assert (FLIP_PERMUTATION[FLIP_PERMUTATION] == np.arange(57)).all()
    for k, name in enumerate(KEYPOINT_NAMES):
        other = KEYPOINT_NAMES[FLIP_PERMUTATION[k]]
        assert other == name.replace("r_", "#").replace("l_", "r_").replace("#", "l_")
    assert FLIP_PERMUTATION[18] == 18
    assert (FLIP_SIGN[19::2] == -1).all() and (FLIP_SIGN[20::2] == 1).all()
    assert (FLIP_SIGN[:19] == 1).all()


# --------------------------------------------------------------------------- rendering


def test_render_matches_loop_port_of_openpose_labels():
    rng = np.random.default_rng(0)
    kps = np.zeros((2, 18, 3))
    kps[..., 0] = rng.uniform(-4, 68, (2, 18))
    kps[..., 1] = rng.uniform(-4, 132, (2, 18))
    kps[..., 2] = rng.uniform(0.2, 1.0, (2, 18))
    kps[1, :9] = kps[0, :9] + rng.normal(0, 3, (9, 3))  # overlapping people: clipping, averaging
    kps[0, [3, 12], 2] = 0.0  # missing joints
    kps[1, 5, 2] = 0.0
    for stride, sigma in ((8, 7.0), (4, 3.0), (1, 2.0)):
        got = render_pose_maps(kps[None], (H, W), stride=stride, sigma=sigma)[0]
        want = reference_maps(kps, (H, W), stride, sigma, 1.0)
        assert got.shape == (57, H // stride, W // stride)
        np.testing.assert_allclose(got, want, atol=2e-6)


def test_heatmap_maxima_on_keypoints_and_pafs_unit_along_limbs(synth):
    _, m = synth
    t = normal_tracklets(m)[0]
    for stride in (1, 8):
        maps = render_pose_maps(t.keypoints[:, None], (H, W), stride=stride)
        start = stride / 2 - 0.5
        h, w = map_size((H, W), stride)
        for f in range(len(t)):
            kp = t.keypoints[f]
            for k in range(18):
                hm = maps[f, k]
                if kp[k, 2] <= 0:
                    assert hm.max() == 0.0
                    continue
                gy, gx = np.unravel_index(hm.argmax(), hm.shape)
                # the maximum is the cell whose centre is nearest to the keypoint
                assert abs(start + gx * stride - kp[k, 0]) <= stride / 2 + 1e-6
                assert abs(start + gy * stride - kp[k, 1]) <= stride / 2 + 1e-6
                d2 = (start + gx * stride - kp[k, 0]) ** 2 + (start + gy * stride - kp[k, 1]) ** 2
                assert hm.max() == pytest.approx(math.exp(-d2 / 2 / 49), rel=1e-5)
            for j, (a, b) in enumerate(PAF_LIMBS):
                v = maps[f, 19 + 2 * j: 21 + 2 * j]  # (2, h, w)
                norm = np.hypot(v[0], v[1])
                if kp[a, 2] <= 0 or kp[b, 2] <= 0:
                    assert norm.max() == 0.0
                    continue
                on = norm > 0
                d = (kp[b, :2] - kp[a, :2]) / np.linalg.norm(kp[b, :2] - kp[a, :2])
                np.testing.assert_allclose(norm[on], 1.0, atol=1e-6)  # unit vectors ...
                np.testing.assert_allclose(v[0][on], d[0], atol=1e-6)  # ... along the limb
                np.testing.assert_allclose(v[1][on], d[1], atol=1e-6)
                gy, gx = np.nonzero(on)
                ax, ay = kp[a, :2] / stride
                assert (np.abs((gx - ax) * d[1] - (gy - ay) * d[0]) <= 1.0 + 1e-9).all()
                # the cells under the limb's midpoint are covered
                mx, my = (kp[a, :2] + kp[b, :2]) / 2 / stride
                if 0 <= round(mx) < w and 0 <= round(my) < h:
                    near = (np.abs(gx - mx) <= 1) & (np.abs(gy - my) <= 1)
                    assert near.any()


def test_missing_keypoints_give_empty_maps_not_errors():
    kp = np.zeros((18, 3))
    kp[:, 0], kp[:, 1], kp[:, 2] = 32.0, np.linspace(10, 110, 18), 0.9
    kp[3, 2] = 0.0  # r_elbow missing
    maps = render_pose_maps(kp, (H, W))[0]
    assert maps[3].max() == 0.0
    for j, (a, b) in enumerate(PAF_LIMBS):
        if 3 in (a, b):
            assert np.abs(maps[19 + 2 * j: 21 + 2 * j]).max() == 0.0
        else:
            assert np.abs(maps[19 + 2 * j: 21 + 2 * j]).max() > 0.0
    nobody = render_pose_maps(np.zeros((1, 0, 18, 3)), (H, W))[0]
    assert nobody.shape == (57, 16, 8)
    assert nobody[:18].max() == 0 and nobody[19:].max() == 0 and (nobody[18] == 1).all()
    all_missing = render_pose_maps(np.zeros((18, 3)), (H, W))[0]
    np.testing.assert_array_equal(all_missing, nobody)


def test_flip_rule_equals_rendering_the_mirrored_skeleton(synth):
    _, m = synth
    kp = normal_tracklets(m)[1].keypoints[:, None]  # (T, 1, 18, 3)
    mirrored = kp[:, :, list(FLIP_PERMUTATION[:18])].copy()
    mirrored[..., 0] = np.where(mirrored[..., 2] > 0, W - 1 - mirrored[..., 0], 0.0)
    maps = render_pose_maps(kp, (H, W), stride=1, sigma=3.0)
    want = render_pose_maps(mirrored, (H, W), stride=1, sigma=3.0)
    got = flip_pose_maps(maps)
    np.testing.assert_allclose(got[:, :19], want[:, :19], atol=1e-6)
    # PAFs: the same vectors wherever both cover a cell; OpenPose's limb box is half-open
    # ([round(min - 1), round(max + 1))), so its far edge cells are not mirror-symmetric
    a, b = got[:, 19:], want[:, 19:]
    both = (a != 0) & (b != 0)
    np.testing.assert_allclose(a[both], b[both], atol=1e-5)  # float32 keypoints
    # cells covered by one only are edge cells, next to the common support
    from scipy.ndimage import binary_dilation

    near = binary_dilation(both, structure=np.ones((1, 1, 3, 3), bool))
    assert (near | ~((a != 0) ^ (b != 0))).all()
    # heatmaps are exact at any stride (cell centres are symmetric)
    maps8 = render_pose_maps(kp, (H, W), stride=8)
    np.testing.assert_allclose(flip_pose_maps(maps8)[:, :19],
                               render_pose_maps(mirrored, (H, W), stride=8)[:, :19], atol=1e-6)
    t = torch.from_numpy(maps)
    np.testing.assert_allclose(flip_pose_maps(t).numpy(), flip_pose_maps(maps), atol=0)
    np.testing.assert_allclose(flip_pose_maps(flip_pose_maps(maps)), maps, atol=0)


# ---------------------------------------------------------------------------- keypoint files


def test_keypoint_files_of_the_generator_read_back(synth):
    from videoreid.data.synthetic import keypoints_path as synth_keypoints_path

    out, m = synth
    t = normal_tracklets(m)[0]
    for f, kp in zip(t.frames, t.keypoints, strict=True):
        assert keypoints_path(out / f) == synth_keypoints_path(out / f)
        people = read_keypoints(keypoints_path(out / f))
        assert people.shape == (1, 18, 3)
        np.testing.assert_allclose(people[0], kp, atol=1e-3)


def test_body25_and_malformed_files(tmp_path):
    body25 = np.arange(75, dtype=np.float32).reshape(25, 3) + 1
    got = parse_keypoints({"people": [{"pose_keypoints_2d": body25.reshape(-1).tolist()}]})
    np.testing.assert_array_equal(got[0, :8], body25[:8])
    np.testing.assert_array_equal(got[0, 8:], body25[9:19])  # mid-hip and feet dropped
    bad = tmp_path / "f_keypoints.json"
    bad.write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 45}]}))
    with pytest.raises(KeypointFileError, match="f_keypoints.json"):
        read_keypoints(bad)
    bad.write_text("{not json")
    with pytest.raises(KeypointFileError, match="f_keypoints.json"):
        read_keypoints(bad)
    with pytest.raises(KeypointFileError, match="not found"):
        read_keypoints(tmp_path / "missing_keypoints.json")
    kp = np.zeros((2, 18, 3), np.float32)
    kp[0, 0] = (3.5, 4.25, 0.5)
    kp[1, 5] = (10.0, 20.0, 0.9)
    back = parse_keypoints(json.loads(keypoints_json(kp)))
    np.testing.assert_allclose(back, kp, atol=1e-3)
    assert json.loads(keypoints_json(np.zeros((1, 18, 3))))["people"] == []


# ---------------------------------------------------------------------------- loader


def tracklets_of(out: Path, m):
    from videoreid.data.tracklet import Tracklet

    return [Tracklet(frames=tuple(out / f for f in t.frames), pid=t.pid, camid=t.camid,
                     meta={"tracklet_id": t.tracklet_id}) for t in normal_tracklets(m)]


def test_loader_renders_clips_from_keypoint_files(synth):
    out, m = synth
    loader = PoseLoader(root=out)
    t, truth = tracklets_of(out, m)[0], normal_tracklets(m)[0]
    idx = np.array([0, 2, 2, 1, 0])
    maps = loader(t, idx)
    assert maps.shape == (5, 57, 16, 8) and maps.dtype == np.float32
    want = render_pose_maps(truth.keypoints[idx][:, None], (H, W))
    np.testing.assert_allclose(maps, want, atol=2e-3)  # files keep 3 decimals
    with pytest.raises(IndexError):
        loader(t, np.array([len(t.frames)]))


def test_loader_missing_file_error_or_counted_empty(tmp_path, caplog):
    from PIL import Image

    from videoreid.data.tracklet import Tracklet

    frames = []
    for i in range(3):
        p = tmp_path / f"f{i}.png"
        Image.new("RGB", (W, H)).save(p)
        frames.append(p)
    kp = np.zeros((1, 18, 3))
    kp[0, 0] = (30, 20, 0.9)
    keypoints_path(frames[0]).write_text(keypoints_json(kp))
    t = Tracklet(frames=tuple(frames), pid=1, camid=0, meta={})
    with pytest.raises(KeypointFileError, match="f1.png"):
        PoseLoader(root=tmp_path)(t, np.array([0, 1]))
    loader = PoseLoader(root=tmp_path, on_missing="empty")
    maps = loader(t, np.array([0, 1, 2]))
    assert loader.missing == 2 and "no keypoint file" in caplog.text
    assert maps[0, 0].max() > 0.9 and maps[1:, :18].max() == 0 and (maps[1:, 18] == 1).all()


def test_people_best_keeps_the_most_confident_person(tmp_path):
    from PIL import Image

    from videoreid.data.tracklet import Tracklet

    p = tmp_path / "a.png"
    Image.new("RGB", (W, H)).save(p)
    kp = np.zeros((2, 18, 3))
    kp[0, :, :] = (10, 10, 0.2)
    kp[1, :, :] = (50, 100, 0.9)
    keypoints_path(p).write_text(keypoints_json(kp))
    t = Tracklet(frames=(p,), pid=1, camid=0, meta={})
    best = PoseLoader(people="best")(t, np.array([0]))
    np.testing.assert_allclose(best, render_pose_maps(kp[1:2][None], (H, W)), atol=1e-6)
    both = PoseLoader()(t, np.array([0]))
    np.testing.assert_allclose(both, render_pose_maps(kp[None], (H, W)), atol=1e-6)


def test_cache_cli_and_maps_source(synth, tmp_path):
    from videoreid.cli.main import main

    out, m = synth
    assert main(["pose", "--dataset", "mars", "--root", str(out), "--no-progress"]) == 0
    cache = PoseCache.open(out / "mars" / "pose_cache")
    assert cache.kind == "maps" and cache.stride == 8
    t = tracklets_of(out, m)[1]
    idx = np.arange(len(t.frames))
    cached = PoseLoader(root=out, source="maps")(t, idx)
    rendered = PoseLoader(root=out)(t, idx)
    np.testing.assert_allclose(cached, rendered, atol=1e-3)  # float16 storage
    # resumable: nothing left to do
    _, report = compute_dataset_pose("mars", out, progress=False)
    assert report.written == 0 and report.skipped == report.frames > 0
    with pytest.raises(ValueError, match="openpose"):
        compute_dataset_pose("mars", out, mode="keypoints", source="keypoints")
    from PIL import Image

    from videoreid.data.tracklet import Tracklet
    from videoreid.modalities.pose import PoseCacheError

    lone = tmp_path / "x.png"
    Image.new("RGB", (W, H)).save(lone)
    with pytest.raises(PoseCacheError, match="videoreid pose"):
        PoseLoader(root=tmp_path, source="maps")(Tracklet((lone,), 1, 0, {}), np.array([0]))


def test_single_person_keypoints_recovers_rendered_joints(synth):
    _, m = synth
    kp = normal_tracklets(m)[0].keypoints
    heat = torch.from_numpy(render_pose_maps(kp[:, None], (H, W), stride=8)[:, :19])
    got = single_person_keypoints(heat, (H, W))
    vis = kp[..., 2] > 0
    assert ((got[..., 2] > 0) == vis).all()
    err = np.hypot(*(got[..., :2] - kp[..., :2])[vis].T)
    # bicubic upsampling of 16 x 8 maps: sub-cell accuracy, at worst a cell (near the border)
    assert np.median(err) < 1.5 and err.max() <= 8.0, err


def test_pose_modality_through_config_builders_and_clip_dataset(synth):
    from videoreid.config import config_from_dict
    from videoreid.data.clips import ClipDataset, collate_clips
    from videoreid.data.temporal import build_sampler
    from videoreid.engine import builders

    out, m = synth
    cfg = config_from_dict({"data": {"dataset": "mars", "root": str(out), "height": H,
                                     "width": W, "modalities": ["pose"],
                                     "modality_args": {"pose": {"sigma": 7.0}}}})
    mods = builders.build_modalities(cfg)
    train_tf, _ = builders.build_transforms(cfg)
    ds = ClipDataset(tracklets_of(out, m), build_sampler("consecutive", length=4), train_tf,
                     modalities=mods)
    batch = collate_clips([ds[0], ds[1]])
    assert batch["pose"].shape == (2, 4, 57, 16, 8)
    assert batch["pose"][:, :, :19].min() >= 0


def test_network_source_fills_keypoint_and_map_caches(synth, tmp_path):
    """``compute_pose_cache`` with a network (a stub returning rendered maps, standing in for
    OpenPose): kind ``keypoints`` writes OpenPose JSON the loader finds through the cache,
    kind ``maps`` writes the network's maps."""
    import shutil

    from videoreid.data.tracklet import Tracklet
    from videoreid.modalities.pose import compute_pose_cache

    out, m = synth
    truth = normal_tracklets(m)[0]
    frames = []
    for f in truth.frames:  # the frames without their JSON files
        dst = tmp_path / "ds" / Path(f).name
        dst.parent.mkdir(exist_ok=True)
        shutil.copy(out / f, dst)
        frames.append(dst)
    rendered = torch.from_numpy(render_pose_maps(truth.keypoints[:, None], (H, W)))

    class Stub(torch.nn.Module):
        def forward(self, x):
            assert x.shape == (len(frames), 3, H, W)
            return rendered

    kp_cache = PoseCache(tmp_path / "ds" / "pose_cache", kind="keypoints",
                         source={"name": "stub"})
    report = compute_pose_cache(frames, kp_cache, net=Stub(), batch_size=len(frames),
                                progress=False)
    assert report.written == len(frames)
    loader = PoseLoader(root=tmp_path)
    t = Tracklet(frames=tuple(frames), pid=1, camid=0, meta={})
    for i, f in enumerate(frames):
        got = loader.keypoints(f)[0]
        vis = truth.keypoints[i, :, 2] > 0
        assert ((got[:, 2] > 0) == vis).all()
        assert np.abs(got[vis, :2] - truth.keypoints[i, vis, :2]).max() <= 8.0
    assert loader(t, np.arange(len(frames))).shape == (len(frames), 57, 16, 8)

    map_cache = PoseCache(tmp_path / "maps_cache", tmp_path / "ds", kind="maps",
                          source={"name": "stub"})
    compute_pose_cache(frames, map_cache, net=Stub(), batch_size=len(frames), progress=False)
    cached = PoseLoader(source="maps", cache_dir=tmp_path / "maps_cache")(t, np.arange(len(frames)))
    np.testing.assert_allclose(cached, rendered.numpy(), atol=1e-3)
