"""Optical flow: estimators against the synthetic generator's known motion, the PNG cache,
the loader (alignment, last frame, errors), resumable parallel computation, the CLI."""

from __future__ import annotations

import os
import pickle
import textwrap

import numpy as np
import pytest
import torch

from videoreid.data.synthetic import SynthManifest, generate
from videoreid.data.tracklet import Tracklet
from videoreid.data.transforms import ClipParams, ClipTransform
from videoreid.modalities.flow import (
    DEFAULT_STEP,
    DISFlow,
    FarnebackFlow,
    FlowCache,
    FlowCacheError,
    FlowFileError,
    FlowLoader,
    TVL1Flow,
    build_estimator,
    build_loader,
    compute_dataset_flows,
    compute_flow_cache,
    decode_png,
    encode_png,
    estimator_from_spec,
    load_frame,
    read_flow,
    source_indices,
    tracklet_flows,
    write_flow,
)

H, W = 128, 64


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Synthetic MARS walkers with a clear drift (3 px/frame at most), no box jitter."""
    out = tmp_path_factory.mktemp("flow_synth")
    manifest = generate("mars", out, ids=4, cameras=2, seed=0, height=H, width=W, preset="easy",
                        tracklet_len=(8, 10), keypoints=False, motion=3.0, workers=0,
                        progress=False)
    return SynthManifest.load(out) if manifest.root is None else manifest


@pytest.fixture(scope="module")
def cached(synth, tmp_path_factory):
    """The synthetic dataset with a DIS flow cache in ``mars/flow_cache`` (2 workers)."""
    cache, report = compute_dataset_flows("mars", synth.root, workers=2, progress=False)
    assert not report.failed and report.computed == report.tracklets > 0
    return cache


def _people(manifest):
    return [t for t in manifest.tracklets if t.kind == "normal"]


# Head, neck, shoulders and hips (COCO-18): points that move with the body, unlike the limbs.
RIGID_POINTS = (0, 1, 2, 5, 8, 11, 14, 15, 16, 17)


def _body_motion(flow, tr, t):
    """Median flow over 3×3 pixels at each visible rigid keypoint of frame ``t``."""
    kp = tr.keypoints[t]
    samples = []
    for i in RIGID_POINTS:
        if kp[i, 2] > 0:
            x, y = int(round(kp[i, 0])), int(round(kp[i, 1]))
            samples.append(flow[:, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].reshape(2, -1))
    assert len(samples) >= 3
    return np.median(np.concatenate(samples, axis=1), axis=1)


# ----------------------------------------------------------------------------- estimators


@pytest.mark.parametrize("name", ["dis", "farneback"])
def test_flow_points_the_way_the_person_moves(synth, name):
    """On every frame pair of every walker, the median flow at the body's keypoints agrees
    with the generator's recorded body motion (dx, dy): same direction, sub-pixel error."""
    est = build_estimator(name)
    cosines, errors, signs = [], [], []
    for tr in _people(synth):
        flows = tracklet_flows(synth.frame_paths(tr), est)
        assert flows.shape == (len(tr) - 1, 2, H, W) and flows.dtype == np.float32
        for t in range(len(tr) - 1):
            est_m, gt = _body_motion(flows[t], tr, t), tr.motion[t]
            errors.append(np.linalg.norm(est_m - gt))
            if np.linalg.norm(gt) > 0.8:
                cosines.append(est_m @ gt / (np.linalg.norm(est_m) * np.linalg.norm(gt)))
            if abs(gt[0]) > 1.0:  # walking left/right: the x direction must be right
                signs.append(np.sign(est_m[0]) == np.sign(gt[0]))
    assert len(cosines) > 30 and len(signs) > 15
    assert min(cosines) > 0.7, sorted(cosines)[:5]
    assert np.mean(np.array(cosines) > 0.9) > 0.9
    assert all(signs)
    assert np.median(errors) < 0.5, np.median(errors)


def test_flipping_a_clip_negates_the_x_component(synth):
    """Flow of mirrored frames = mirrored flow with dx negated (Farnebäck: everywhere; DIS,
    whose patch grid is not mirror-symmetric: at the body's keypoints)."""
    tr = _people(synth)[0]
    frames = [load_frame(p) for p in synth.frame_paths(tr)[:4]]
    mirrored = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
    for est, tol in ((FarnebackFlow(), 0.02), (DISFlow(), None)):
        for t in range(3):
            f = est(frames[t], frames[t + 1])
            g = est(mirrored[t], mirrored[t + 1])[:, :, ::-1]  # back to the original layout
            if tol is not None:
                assert np.abs(g[0] + f[0]).mean() < tol * np.abs(f[0]).mean() + 1e-3
                assert np.abs(g[1] - f[1]).mean() < tol * np.abs(f[1]).mean() + 1e-3
            else:
                fx, fy = _body_motion(f, tr, t)
                gx, gy = _body_motion(g, tr, t)
                assert abs(gx + fx) < 0.5 and abs(gy - fy) < 0.5, (fx, gx, fy, gy)
    # The clip transform does the same to cached flow: mirror the map, negate dx.
    flow = np.stack([est(frames[t], frames[t + 1]) for t in range(3)])
    tf = ClipTransform(H, W, train=True, pad=0)
    _, plain = tf.apply(frames[:3], {"flow": flow}, ClipParams(flip=False))
    _, flipped = tf.apply(frames[:3], {"flow": flow}, ClipParams(flip=True))
    torch.testing.assert_close(flipped["flow"][:, 0], -plain["flow"][:, 0].flip(-1))
    torch.testing.assert_close(flipped["flow"][:, 1], plain["flow"][:, 1].flip(-1))


def test_estimators_validate_and_round_trip_their_spec():
    for est in (DISFlow(preset="fast", finest_scale=0), FarnebackFlow(winsize=9)):
        again = estimator_from_spec(est.spec())
        assert type(again) is type(est) and again.spec() == est.spec()
        pickle.loads(pickle.dumps(est))  # workers receive estimators by spec or pickle
    with pytest.raises(ValueError, match="unknown flow estimator 'raft'"):
        build_estimator("raft")
    with pytest.raises(TypeError, match="unknown arguments"):
        build_estimator("dis", presett="fast")
    with pytest.raises(ValueError, match="unknown DIS preset"):
        DISFlow(preset="slow")
    with pytest.raises(ValueError, match="same size"):
        DISFlow()(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))
    if not TVL1Flow.available():
        with pytest.raises(RuntimeError, match="opencv-contrib"):
            build_estimator("tvl1")


class _ShiftNet(torch.nn.Module):
    """A 'learned' estimator for the slot: constant flow (1.5, -0.5) at half resolution."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n, _, h, w = a.shape
        out = torch.zeros(n, 2, h // 2, w // 2) + (b - a).mean() * 0
        return out + torch.tensor([1.5, -0.5]).view(1, 2, 1, 1)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_learned_estimator_slot_loads_local_torchscript_and_state_dicts(tmp_path, monkeypatch):
    path = tmp_path / "shiftnet.pt"
    torch.jit.script(_ShiftNet()).save(str(path))
    est = build_estimator("torch", weights=str(path), batch_size=2)
    frames = [np.full((32, 16, 3), i * 20, np.uint8) for i in range(5)]
    flows = est.sequence(frames)
    # half-resolution output upsampled and its displacements doubled
    assert flows.shape == (4, 2, 32, 16)
    np.testing.assert_allclose(flows[:, 0], 3.0)
    np.testing.assert_allclose(flows[:, 1], -1.0)
    assert est.spec()["weights"] == str(path)
    pickle.loads(pickle.dumps(est))

    # arch + state dict: a module importable by name, weights loaded strictly
    (tmp_path / "myflownet.py").write_text(textwrap.dedent("""
        import torch
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(6, 2, 1)
            def forward(self, a, b):
                return self.conv(torch.cat([a, b], 1))
        def build():
            return Net()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import myflownet

    net = myflownet.build()
    with torch.no_grad():
        net.conv.weight.zero_()
        net.conv.bias.copy_(torch.tensor([2.0, 0.25]))
    torch.save(net.state_dict(), tmp_path / "net.pth")
    est = build_estimator("torch", weights=str(tmp_path / "net.pth"), arch="myflownet:build",
                          pad_to=8)
    out = est(frames[0][:30, :14], frames[1][:30, :14])
    assert out.shape == (2, 30, 14)
    np.testing.assert_allclose(out[0], 2.0)
    np.testing.assert_allclose(out[1], 0.25)
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not fit myflownet:build"):
        build_estimator("torch", weights=str(tmp_path / "bad.pth"), arch="myflownet:build")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        build_estimator("torch", weights=str(tmp_path / "missing.pt"))


# ----------------------------------------------------------------------------- codec


def test_png_round_trip_within_the_stated_quantisation_error(tmp_path):
    rng = np.random.default_rng(0)
    for step in (DEFAULT_STEP, 0.125):
        flow = rng.uniform(-160 * step, 160 * step, size=(2, 37, 23)).astype(np.float32)
        path = tmp_path / f"f{step}.png"
        write_flow(path, flow, step)
        back = read_flow(path, step)
        assert back.shape == flow.shape and back.dtype == np.float32
        lo, hi = -128 * step, 127 * step
        inside = (flow >= lo) & (flow <= hi)
        assert inside.mean() > 0.5
        assert np.abs(back - flow)[inside].max() <= step / 2 + 1e-6
        # outside the range the value saturates at the nearest bound
        np.testing.assert_allclose(back[~inside], np.clip(flow[~inside], lo, hi))
    # the file is a real 2-channel 8-bit PNG (grey + alpha)
    from PIL import Image

    with Image.open(tmp_path / "f0.25.png") as im:
        assert im.mode == "LA" and im.size == (23, 37)
    # exact levels round-trip exactly
    levels = (np.arange(-128, 128, dtype=np.float32) * DEFAULT_STEP).reshape(2, 8, 16)
    np.testing.assert_array_equal(decode_png(encode_png(levels)), levels)


def test_corrupt_or_foreign_flow_files_are_clear_errors(tmp_path):
    good = tmp_path / "good.png"
    write_flow(good, np.zeros((2, 8, 8), np.float32))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:30])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    from PIL import Image

    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(rgb)
    for path in (trunc, junk):
        with pytest.raises(FlowFileError, match=str(path.name)):
            read_flow(path)
    with pytest.raises(FlowFileError, match="not a 2-channel"):
        read_flow(rgb)
    with pytest.raises(FlowFileError, match="not found.*missing.png"):
        read_flow(tmp_path / "missing.png")


# ----------------------------------------------------------------------------- cache + loader


def _tracklets(root):
    from videoreid.data.datasets.mars import MARS

    s = MARS(root).split(0)
    return s.train + s.query + s.gallery


def test_cache_layout_meta_and_loader_round_trip(synth, cached):
    assert cached.cache_dir == synth.root / "mars" / "flow_cache"
    meta = FlowCache.open(cached.cache_dir)
    assert meta.settings() == cached.settings() and meta.anchor == synth.root / "mars"
    loader = build_loader(synth.root, H, W)
    est = estimator_from_spec(cached.estimator)
    for t in _tracklets(synth.root)[:4]:
        frames = list(t.frames)
        files = cached.flow_paths(frames)
        assert len(files) == len(frames) - 1 and all(p.is_file() for p in files)
        rel = frames[0].relative_to(synth.root / "mars")
        assert files[0] == cached.cache_dir / rel.with_suffix(".png")
        direct = tracklet_flows(frames, est)
        idx = np.arange(len(frames))
        got = loader(t, idx)
        assert got.shape == (len(frames), 2, H, W) and got.dtype == np.float32
        inside = np.abs(direct) < 31
        assert np.abs(got[:-1] - direct)[inside].max() <= DEFAULT_STEP / 2 + 1e-5
        # last frame: the previous frame's flow
        np.testing.assert_array_equal(got[-1], got[-2])
        # any index order / repeats (padded clips) map frame by frame
        sel = np.array([2, 0, len(frames) - 1, 2])
        np.testing.assert_array_equal(loader(t, sel), got[sel])
    # the loader finds the same cache when the config root is the dataset folder itself
    t = _tracklets(synth.root)[0]
    np.testing.assert_array_equal(build_loader(synth.root / "mars", H, W)(t, np.arange(3)),
                                  loader(t, np.arange(3)))
    pickle.loads(pickle.dumps(loader))  # DataLoader workers


def test_source_indices_and_one_frame_tracklets(synth, cached):
    np.testing.assert_array_equal(source_indices(np.array([0, 3, 4, 4]), 5), [0, 3, 3, 3])
    np.testing.assert_array_equal(source_indices(np.array([0, 0]), 1), [-1, -1])
    with pytest.raises(IndexError):
        source_indices(np.array([5]), 5)
    t = _tracklets(synth.root)[0]
    single = Tracklet(frames=(t.frames[0],), pid=t.pid, camid=t.camid)
    zeros = build_loader(synth.root, H, W)(single, np.array([0, 0, 0]))
    assert zeros.shape == (3, 2, H, W) and not zeros.any()


def test_missing_and_corrupt_cache_entries(synth, cached, tmp_path):
    t = _tracklets(synth.root)[1]
    path = cached.path_for(t.frames[2])
    saved = path.read_bytes()
    try:
        path.unlink()
        loader = build_loader(synth.root, H, W)
        with pytest.raises(FlowFileError) as err:
            loader(t, np.array([1, 2]))
        assert str(path) in str(err.value) and "videoreid flow --dataset" in str(err.value)
        # on the fly instead: the same flow, up to the cache's quantisation
        path.write_bytes(saved)
        want = loader(t, np.array([2]))
        path.unlink()
        got = build_loader(synth.root, H, W, on_missing="compute")(t, np.array([2]))
        inside = np.abs(got) < 31
        assert np.abs(got - want)[inside].max() <= DEFAULT_STEP / 2 + 1e-5
        path.write_bytes(saved[: len(saved) // 3])
        with pytest.raises(FlowFileError, match=path.name):
            build_loader(synth.root, H, W, on_missing="compute")(t, np.array([2]))
    finally:
        path.write_bytes(saved)
    # no cache anywhere: the error names the expected meta file and the command
    bare = tmp_path / "nocache" / "a.jpg"
    bare.parent.mkdir()
    bare.write_bytes(t.frames[0].read_bytes())
    (tmp_path / "nocache" / "b.jpg").write_bytes(t.frames[1].read_bytes())
    lone = Tracklet(frames=(bare, tmp_path / "nocache" / "b.jpg"), pid=0, camid=0)
    with pytest.raises(FlowFileError, match="flow_cache/flow_meta.json.*videoreid flow"):
        build_loader(tmp_path, H, W)(lone, np.array([0]))
    flow = build_loader(tmp_path, H, W, on_missing="compute")(lone, np.array([0, 1]))
    assert flow.shape == (2, 2, H, W)
    with pytest.raises(ValueError, match="on_missing"):
        FlowLoader(on_missing="skip")


def test_resumable_parallel_computation_and_settings_check(synth, tmp_path):
    cache_dir = tmp_path / "elsewhere"  # an explicit cache outside the dataset folder
    tracklets = _tracklets(synth.root)
    cache = FlowCache(cache_dir, synth.root / "mars", estimator=DISFlow("fast").spec())
    # duplicates (as in multi-split datasets) are computed once
    report = compute_flow_cache(tracklets + tracklets[:3], cache, workers=2, progress=False)
    assert report.tracklets == len(tracklets) and report.computed == len(tracklets)
    assert report.files_written == sum(len(t) - 1 for t in tracklets)
    files = sorted(p for p in cache_dir.rglob("*.png"))
    assert len(files) == report.files_written
    # resume: only the tracklet with a missing file is recomputed; others are not touched
    victim = cache.path_for(tracklets[2].frames[3])
    victim.unlink()
    mtimes = {p: p.stat().st_mtime_ns for p in files if p != victim}
    report = compute_flow_cache(tracklets, cache, workers=0, progress=False)
    assert (report.computed, report.skipped) == (1, len(tracklets) - 1)
    assert victim.is_file()
    untouched = set(cache.flow_paths(list(tracklets[2].frames)))
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items() if p not in untouched)
    # an explicit cache is read with the anchor its meta file records
    loader = build_loader(synth.root, H, W, cache_dir=str(cache_dir))
    assert loader(tracklets[2], np.arange(len(tracklets[2]))).shape[0] == len(tracklets[2])
    # other settings into the same cache: refused unless overwrite
    other = FlowCache(cache_dir, synth.root / "mars", estimator=FarnebackFlow().spec())
    with pytest.raises(FlowCacheError, match="--overwrite"):
        compute_flow_cache(tracklets[:1], other, progress=False)
    # a failing tracklet is reported and the others go on
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0001.jpg").write_bytes(b"garbage")
    (broken / "0002.jpg").write_bytes(b"garbage")
    bad = Tracklet(frames=(broken / "0001.jpg", broken / "0002.jpg"), pid=0, camid=0)
    cache2 = FlowCache(tmp_path / "c2", "/", estimator=DISFlow().spec())
    report = compute_flow_cache([bad, tracklets[0]], cache2, progress=False)
    assert report.computed == 1 and len(report.failed) == 1 and report.skipped == 0
    assert "0001.jpg" in report.failed[0][1]


def test_fractional_scale_flow_and_resizing(synth, tmp_path):
    """Flow at half the frame size holds half the displacements: upsampled by the models'
    ``resize_flow`` it again matches the body motion. The cache stores it at half size and
    the clip transform keeps that size relative to the image."""
    from videoreid.models.man import resize_flow

    est = FarnebackFlow()
    errors = []
    for tr in _people(synth):
        half = tracklet_flows(synth.frame_paths(tr), est, scale=0.5)
        assert half.shape == (len(tr) - 1, 2, H // 2, W // 2)
        up = resize_flow(torch.from_numpy(half), (H, W)).numpy()
        errors += [np.linalg.norm(_body_motion(up[t], tr, t) - tr.motion[t])
                   for t in range(len(tr) - 1)]
    assert np.median(errors) < 0.4, np.median(errors)

    tr = next(t for t in _people(synth) if len(t) >= 5)
    paths = synth.frame_paths(tr)
    full = tracklet_flows(paths, est)
    cache = FlowCache(tmp_path / "half", synth.root, estimator=est.spec(), scale=0.5)
    compute_flow_cache([paths], cache, progress=False)
    from videoreid.data.datasets.mars import MARS

    t = next(x for x in MARS(synth.root).split(0).train if list(x.frames) == list(paths))
    flow = build_loader(synth.root, H, W, cache_dir=str(tmp_path / "half"))(t, np.arange(4))
    assert flow.shape == (4, 2, H // 2, W // 2)
    frames = [load_frame(p) for p in paths[:4]]
    _, maps = ClipTransform(H, W, train=False)(frames, {"flow": flow})
    assert maps["flow"].shape == (4, 2, H // 2, W // 2)  # relative size kept
    # a network input of half the frame size halves full-resolution displacements
    _, maps = ClipTransform(H // 2, W // 2, train=False)(frames, {"flow": full[:4]})
    assert maps["flow"].shape == (4, 2, H // 2, W // 2)
    ratio = maps["flow"].mean((0, 2, 3)).numpy() / full[:4].mean((0, 2, 3))
    np.testing.assert_allclose(ratio, 0.5, rtol=0.05)


def test_clip_dataset_serves_flow_aligned_with_sampled_frames(synth, cached):
    from videoreid.data.clips import TestClipDataset, collate_clips
    from videoreid.data.temporal import build_plan

    tracklets = _tracklets(synth.root)[:3]
    loader = build_loader(synth.root, H, W)
    ds = TestClipDataset(tracklets, build_plan("all_consecutive", length=4),
                         ClipTransform(H, W, train=False), modalities={"flow": loader})
    batch = collate_clips([ds[k] for k in range(len(ds))])
    assert batch["flow"].shape == (len(ds), 4, 2, H, W)
    for k in range(len(ds)):
        item = ds[k]
        t = tracklets[item["tracklet_index"]]
        idx, _ = build_plan("all_consecutive", length=4)(len(t))[item["clip_index"]]
        np.testing.assert_array_equal(item["flow"].numpy(), loader(t, idx))


def test_cli_flow_computes_resumes_and_reports_errors(synth, tmp_path, capsys):
    from videoreid.cli.main import main

    cache_dir = tmp_path / "cli_cache"
    argv = ["flow", "--dataset", "mars", "--root", str(synth.root), "--cache-dir",
            str(cache_dir), "--workers", "0", "--no-progress", "--preset", "ultrafast",
            "--subsets", "query,gallery"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "computed" in out and str(cache_dir) in out
    meta = FlowCache.open(cache_dir)
    assert meta.estimator["preset"] == "ultrafast"
    n_files = len(list(cache_dir.rglob("*.png")))
    assert n_files > 0
    assert main(argv) == 0
    assert "0 computed" in capsys.readouterr().out
    assert main(argv[:-2] + ["--subsets", "train,bogus"]) == 2
    assert "unknown subsets" in capsys.readouterr().err
    assert main(argv[:-4] + ["--estimator", "farneback", "--preset", "fast"]) == 2
    assert "--preset applies to the dis estimator" in capsys.readouterr().err
    assert os.path.isfile(cache_dir / "flow_meta.json")


def test_real_mars_frames_through_an_explicit_cache(shared_dir, tmp_path):
    """Real MARS crops (shared/data/mars-mini, read-only): a cache in another folder, frame
    paths relative to the resolved dataset folder, read back by the loader."""
    from videoreid.data.datasets.mars import MARS

    ds = MARS(shared_dir / "data" / "mars-mini")
    tracklets = sorted(ds.split(0).query, key=len)[:2]
    cache = FlowCache(tmp_path / "mars_flow", ds.root, estimator=DISFlow().spec())
    report = compute_flow_cache(tracklets, cache, progress=False)
    assert report.computed == 2 and not report.failed
    assert FlowCache.open(tmp_path / "mars_flow").anchor == ds.root
    t = tracklets[0]
    loader = build_loader(ds.root.parent, 256, 128, cache_dir=str(tmp_path / "mars_flow"))
    flow = loader(t, np.array([0, 1, len(t) - 1]))
    assert flow.shape == (3, 2, 256, 128)
    direct = DISFlow()(load_frame(t.frames[0]), load_frame(t.frames[1]))
    inside = np.abs(direct) < 31
    assert np.abs(flow[0] - direct)[inside].max() <= DEFAULT_STEP / 2 + 1e-5
    assert not (ds.root / "flow_cache").exists()  # nothing written beside the shared data
