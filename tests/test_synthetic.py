"""Synthetic generator: determinism, keypoints, motion, viewpoints, presets, CLI errors.

Layout round trips (loaders and third-party-style parsers) are in test_synthetic_layouts.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from videoreid.data.synthetic import (
    MANIFEST_NAME,
    PRESETS,
    SynthManifest,
    generate,
    get_knobs,
    keypoints_path,
)
from videoreid.data.synthetic.camera import sample_camera
from videoreid.data.synthetic.identity import (
    ACCESSORIES,
    make_lookalike,
    sample_identities,
    sample_identity,
)
from videoreid.data.synthetic.render import Renderer
from videoreid.data.synthetic.skeleton import (
    L_EAR,
    L_EYE,
    L_SHOULDER,
    LIMBS,
    NOSE,
    R_EAR,
    R_EYE,
    R_SHOULDER,
    BodyShape,
    Gait,
    walk_joints,
)
from videoreid.data.synthetic.spec import sample_spec
from videoreid.data.synthetic.writers import openpose_json, savemat_bytes

H, W = 64, 32


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def mars_small(tmp_path_factory: pytest.TempPathFactory) -> SynthManifest:
    out = tmp_path_factory.mktemp("synth_mars")
    return generate("mars", out, ids=6, seed=3, height=H, width=W, tracklet_len=(4, 8),
                    preset="default", occluder_prob=0.6, failure_rate=0.1,
                    preview=out / "preview.png", progress=False)


# ---------------------------------------------------------------------------- errors
def test_unknown_layout_preset_knob_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown synthetic layout 'foo'.*mars.*prid2011"):
        generate("foo", tmp_path)
    with pytest.raises(ValueError, match=r"unknown synthetic preset 'hard'.*occlusion"):
        generate("mars", tmp_path, preset="hard")
    with pytest.raises(ValueError, match=r"unknown synthetic knob.*'occluder'.*occluder_prob"):
        generate("mars", tmp_path, occluder="x")
    with pytest.raises(ValueError, match="exactly 2 cameras"):
        generate("ilidsvid", tmp_path, cameras=3)
    with pytest.raises(ValueError, match="3 digits"):
        generate("mars", tmp_path, tracklet_len=(10, 1200))
    assert not any(tmp_path.iterdir())  # nothing written on a rejected request


def test_cli_rejects_unknown_layout_and_existing_output(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    from videoreid.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["synth", "--layout", "duke", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "invalid choice: 'duke'" in capsys.readouterr().err
    args = ["synth", "--layout", "ilidsvid", "--out", str(tmp_path), "--ids", "2",
            "--height", "64", "--width", "32", "--tracklet-len", "2", "3", "--no-keypoints",
            "--preset", "easy", "--occluder-prob", "0.5"]
    assert main(args) == 0
    m = SynthManifest.load(tmp_path)
    assert m.knobs["occluder_prob"] == 0.5 and m.preset == "easy"
    assert not list(tmp_path.rglob("*_keypoints.json"))
    assert main(args) == 2  # exists → clear error, not a silent overwrite
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


# ---------------------------------------------------------------------------- determinism
def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    kw = dict(ids=3, height=H, width=W, tracklet_len=(3, 5), progress=False)
    generate("mars", tmp_path / "a", seed=11, workers=2, **kw)
    generate("mars", tmp_path / "b", seed=11, workers=0, **kw)  # thread count must not matter
    generate("mars", tmp_path / "c", seed=12, workers=2, **kw)
    a, b, c = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert len(a) > 50 and any(k.endswith(".mat") for k in a)
    assert a.keys() == b.keys()
    differing = [k for k in a if a[k] != b[k]]
    assert differing == []
    # another seed changes the images (names may coincide, contents must not)
    common = [k for k in a.keys() & c.keys() if k.endswith(".jpg")]
    assert a.keys() != c.keys() or any(a[k] != c[k] for k in common)


def test_savemat_bytes_have_no_timestamp() -> None:
    x = {"m": np.arange(6, dtype=np.int32).reshape(2, 3)}
    first = savemat_bytes(x)
    assert first == savemat_bytes(x)
    assert first[:116].rstrip(b" ").endswith(b"videoreid synth")


# ---------------------------------------------------------------------------- manifest
def test_manifest_saved_and_loaded_equal(mars_small: SynthManifest) -> None:
    m2 = SynthManifest.load(mars_small.root / MANIFEST_NAME)
    assert m2.layout == "mars" and m2.root == mars_small.root
    assert len(m2.tracklets) == len(mars_small.tracklets)
    for a, b in zip(mars_small.tracklets, m2.tracklets, strict=True):
        assert (a.tracklet_id, a.frames, a.pid, a.camid, a.subset) == \
            (b.tracklet_id, b.frames, b.pid, b.camid, b.subset)
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
        np.testing.assert_allclose(a.motion, b.motion, atol=1e-4)
        np.testing.assert_allclose(a.occluded, b.occluded, atol=1e-4)
        assert (a.failure == b.failure).all()
    assert m2.num_frames == mars_small.stats["frames"]
    with pytest.raises(FileNotFoundError, match="synthetic manifest not found"):
        SynthManifest.load(mars_small.root / "nope")


def test_every_frame_exists_and_has_frame_size(mars_small: SynthManifest) -> None:
    for t in mars_small.tracklets:
        for p in mars_small.frame_paths(t):
            assert p.is_file(), p
    first = mars_small.frame_paths(mars_small.tracklets[0])[0]
    img = cv2.imread(str(first))
    assert img.shape == (H, W, 3)


def test_preview_grid_shape(mars_small: SynthManifest) -> None:
    img = cv2.imread(str(mars_small.root / "preview.png"))
    assert img is not None
    rows = (img.shape[0] - 14) / (H + 2)
    cols = (img.shape[1] - 44) / (W + 2)
    assert rows == int(rows) and 1 <= rows <= 6
    assert cols == mars_small.cameras


# ---------------------------------------------------------------------------- keypoints
def test_keypoint_files_match_manifest_and_are_sane(mars_small: SynthManifest) -> None:
    n_visible = []
    for t in mars_small.tracklets:
        assert t.keypoints.shape == (len(t), 18, 3)
        for i, frame in enumerate(mars_small.frame_paths(t)):
            kp_file = keypoints_path(frame)
            assert kp_file.name == frame.stem + "_keypoints.json"
            doc = json.loads(kp_file.read_text())
            assert doc["version"] == 1.3
            kp = t.keypoints[i]
            vis = kp[:, 2] > 0
            if not vis.any():
                assert doc["people"] == []
                continue
            (person,) = doc["people"]
            assert set(person) == {
                "person_id", "pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d",
                "hand_right_keypoints_2d", "pose_keypoints_3d", "face_keypoints_3d",
                "hand_left_keypoints_3d", "hand_right_keypoints_3d"}
            assert person["person_id"] == [-1]
            flat = np.asarray(person["pose_keypoints_2d"]).reshape(18, 3)
            np.testing.assert_allclose(flat, kp, atol=1.1e-3)
            # visible joints lie inside the frame; invisible ones are all-zero
            assert (kp[vis, 0] >= 0).all() and (kp[vis, 0] <= W - 0.5).all()
            assert (kp[vis, 1] >= 0).all() and (kp[vis, 1] <= H - 0.5).all()
            assert (kp[vis, 2] <= 1).all()
            assert (kp[~vis] == 0).all()
            if t.kind == "normal" and not t.failure[i] and t.occluded[i] == 0:
                n_visible.append(int(vis.sum()))
        if t.kind == "background":
            assert (t.keypoints == 0).all()
    # clean frames show most of the body (face points and self-occluded limbs may hide)
    assert len(n_visible) > 20 and np.median(n_visible) >= 12


def test_occluded_frames_hide_keypoints(mars_small: SynthManifest) -> None:
    occ = [(t, i) for t in mars_small.tracklets for i in range(len(t))
           if t.kind == "normal" and t.occluded[i] > 0.6 and not t.failure[i]]
    clean = [(t, i) for t in mars_small.tracklets for i in range(len(t))
             if t.kind == "normal" and t.occluded[i] == 0 and not t.failure[i]]
    assert occ and clean
    vis_occ = np.mean([(t.keypoints[i, :, 2] > 0).sum() for t, i in occ])
    vis_clean = np.mean([(t.keypoints[i, :, 2] > 0).sum() for t, i in clean])
    assert vis_occ < vis_clean - 4
    assert all(0.0 <= x <= 1.0 for t in mars_small.tracklets for x in t.occluded)


def test_openpose_json_format() -> None:
    kp = np.zeros((18, 3))
    kp[NOSE] = (10.25, 20.5, 0.75)
    doc = json.loads(openpose_json(kp))
    flat = doc["people"][0]["pose_keypoints_2d"]
    assert len(flat) == 54 and flat[:3] == [10.25, 20.5, 0.75] and flat[3:] == [0.0] * 51
    assert json.loads(openpose_json(np.zeros((18, 3)))) == {"version": 1.3, "people": []}


# ---------------------------------------------------------------------------- rendering
def _renderer(seed: int = 0, preset: str = "easy", **over):
    knobs = get_knobs(preset, **over)
    cams = [sample_camera(np.random.default_rng([seed, c]), c, knobs, H * 2, W * 2)
            for c in range(2)]
    return Renderer(H * 2, W * 2, cams, seed), knobs, cams


def test_viewpoint_semantics_of_keypoints() -> None:
    r, knobs, cams = _renderer(occluder_prob=0.0, jitter=0.0, scale_jitter=0.0)
    ident = dataclasses.replace(sample_identity(np.random.default_rng(5), 0),
                                accessories=frozenset())
    kps = {}
    for view in ("front", "back", "left", "right"):
        spec = sample_spec(np.random.default_rng(1), cams[0], 12, knobs, H * 2, W * 2, view=view)
        spec.yaw = {"front": 0.0, "back": np.pi, "right": np.pi / 2, "left": -np.pi / 2}[view]
        spec.yaw_drift = 0.0
        kps[view] = r.render(ident, 0, spec).keypoints
    f, b = kps["front"], kps["back"]
    # front: the person's right shoulder is on the image left; back: on the image right
    assert (f[:, R_SHOULDER, 0] < f[:, L_SHOULDER, 0]).all()
    assert (b[:, R_SHOULDER, 0] > b[:, L_SHOULDER, 0]).all()
    assert (f[:, [NOSE, R_EYE, L_EYE], 2] > 0).all()
    assert (b[:, [NOSE, R_EYE, L_EYE], 2] == 0).all()  # face turned away
    assert (b[:, [R_EAR, L_EAR], 2] > 0).all()
    # profile facing right shows the right side: left ear and eye hidden
    assert (kps["right"][:, [L_EAR, L_EYE], 2] == 0).all()
    assert (kps["right"][:, [R_EAR, R_EYE], 2] > 0).all()
    assert (kps["left"][:, [R_EAR, R_EYE], 2] == 0).all()


def test_recorded_motion_matches_image_content() -> None:
    """The body's drift measured from the pixels agrees with the manifest's motion."""
    r, knobs, cams = _renderer(occluder_prob=0.0, jitter=0.0, scale_jitter=0.0, noise=0.0,
                               blur=0.0, motion=2.0)
    ident = sample_identity(np.random.default_rng(2), 0)
    for view, seed in (("front", 3), ("front", 4)):
        spec = sample_spec(np.random.default_rng(seed), cams[1], 24, knobs, H * 2, W * 2,
                           view=view)
        spec.motion[:] = (1.0 if seed == 3 else -1.0, 0.25)
        spec.offset0 = -spec.motion * 23 / 2
        out = r.render(ident, 1, spec)
        spec.person = False
        bg = r.render(None, 1, spec).frames  # same crop, nobody in it
        xs = []
        for frame, empty in zip(out.frames, bg, strict=True):
            mask = np.abs(frame.astype(int) - empty.astype(int)).sum(axis=2) > 0
            xs.append(np.nonzero(mask)[1].mean())
        slope = np.polyfit(np.arange(24), xs, 1)[0]
        assert np.sign(slope) == np.sign(spec.motion[0])
        assert abs(slope - spec.motion[0]) < 0.35
        # x: exactly the drift (the mid-hip has no sideways swing in a front view); y: the
        # drift plus what remains of the walking bob over a non-integer number of cycles
        np.testing.assert_allclose(out.motion[:-1, 0], spec.motion[0], atol=1e-3)
        assert abs(out.motion[:-1, 1].mean() - spec.motion[1]) < 0.2
        assert (out.bg_motion == 0).all()  # front view: the background stays put


def test_side_walker_moves_with_facing_and_background_against() -> None:
    r, knobs, cams = _renderer(occluder_prob=0.0, jitter=0.0)
    ident = sample_identity(np.random.default_rng(7), 0)
    for view, sign in (("right", 1), ("left", -1)):
        spec = sample_spec(np.random.default_rng(9), cams[0], 16, knobs, H * 2, W * 2,
                           view=view)
        out = r.render(ident, 0, spec)
        assert np.sign(out.nominal_motion[0]) == sign
        assert np.sign(out.bg_motion[:, 0].sum()) == -sign
        assert out.view == view


def test_skeleton_walk_is_periodic_and_feet_touch_ground() -> None:
    gait, shape = Gait(period=20.0), BodyShape()
    J = walk_joints(shape, gait, np.arange(41.0), 0.3)
    np.testing.assert_allclose(J[0], J[20], atol=1e-9)
    np.testing.assert_allclose(J[0], J[40], atol=1e-9)
    lowest = np.minimum(J[:, 10, 1], J[:, 13, 1])
    assert np.abs(lowest - shape.ankle_height).max() <= gait.bob + 1e-9
    assert len(LIMBS) == 19 and all(0 <= a < 18 and 0 <= b < 18 for a, b in LIMBS)


# ---------------------------------------------------------------------------- identities/presets
def test_lookalike_differs_in_exactly_one_attribute() -> None:
    rng = np.random.default_rng(0)
    for k in range(30):
        base = sample_identity(rng, 0)
        copy = make_lookalike(base, rng, 1)
        diffs = [a for a in ACCESSORIES if (a in base.accessories) != (a in copy.accessories)]
        diffs += [g for g in ("upper", "lower")
                  if getattr(base, g).pattern != getattr(copy, g).pattern]
        assert len(diffs) == 1, (k, diffs)
        assert copy.lookalike_of == 0 and copy.differs_in is not None
        assert copy.shape == base.shape and copy.gait == base.gait
        assert copy.upper.colour == base.upper.colour and copy.lower.colour == base.lower.colour


def test_lookalikes_stay_within_groups() -> None:
    groups = [list(range(0, 10)), list(range(10, 20))]
    ids = sample_identities(20, np.random.default_rng(1), 0.5, groups)
    pairs = [(i.index, i.lookalike_of) for i in ids if i.lookalike_of is not None]
    assert len(pairs) == 10
    assert all((a < 10) == (b < 10) for a, b in pairs)


def test_presets_order_difficulty() -> None:
    easy, default, occl = PRESETS["easy"], PRESETS["default"], PRESETS["occlusion"]
    assert easy.occluder_prob == 0 and easy.failure_rate == 0 and easy.lookalike_fraction == 0
    assert occl.occluder_prob > default.occluder_prob
    assert occl.jitter > default.jitter > easy.jitter
    assert occl.lookalike_fraction > default.lookalike_fraction
    with pytest.raises(ValueError, match="failure_rate"):
        get_knobs("default", failure_rate=1.5)
    # rendered statistics follow the knobs
    occluded = {}
    for name in ("easy", "occlusion"):
        r, knobs, cams = _renderer(preset=name)
        ident = sample_identity(np.random.default_rng(0), 0)
        fr = []
        for s in range(12):
            out = r.render(ident, s % 2, sample_spec(np.random.default_rng(s), cams[s % 2], 10,
                                                      knobs, H * 2, W * 2))
            fr.append(out.occluded.mean())
            if name == "easy":
                assert not out.failure.any()
        occluded[name] = float(np.mean(fr))
    assert occluded["easy"] == 0.0 and occluded["occlusion"] > 0.05
