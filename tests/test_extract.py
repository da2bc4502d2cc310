"""Feature extraction: streamed, bounded-memory aggregation equals the naive all-at-once result."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videoreid.data.clips import load_clip
from videoreid.data.temporal import build_plan
from videoreid.data.tracklet import Tracklet
from videoreid.data.transforms import ClipTransform
from videoreid.engine.extract import extract_features
from videoreid.models.output import ReIDOutput

H, W = 32, 16


class TinyNet(nn.Module):
    """Conv + BN (eval mode: per-sample) + temporal mean; records every batch size it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 5)
        self.batch_sizes: list[int] = []

    def forward(self, batch: dict) -> ReIDOutput:
        x = batch["images"]  # (B, T, 3, H, W)
        b, t = x.shape[:2]
        self.batch_sizes.append(b)
        f = torch.relu(self.bn(self.conv(x.flatten(0, 1)))).mean((2, 3)).view(b, t, -1)
        m = batch["frame_mask"].to(f.dtype).unsqueeze(-1)
        pooled = (f * m).sum(1) / m.sum(1)
        return ReIDOutput(embedding=self.fc(pooled))


def make_tracklet(folder, n: int, seed: int, pid: int) -> Tracklet:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"{i:04d}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        paths.append(p)
    return Tracklet(tuple(paths), pid=pid, camid=pid % 2, meta={"tracklet_id": folder.name})


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions are slower with several threads on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tracklets(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    lengths = [150, 3, 17, 1, 9]  # one long tracklet (hundreds of frames) and short ones
    return [make_tracklet(root / f"t{i}", n, seed=i, pid=i) for i, n in enumerate(lengths)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = TinyNet()
    with torch.no_grad():  # non-trivial BN statistics
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def naive_clip_embeddings(model, tracklets, plan, transform):
    """Every clip of a tracklet in ONE forward pass: the reference, ``[((clips, D), (clips,))]``
    (embeddings and numbers of real frames)."""
    out = []
    for t in tracklets:
        clips = [load_clip(t, idx, mask, transform, None) for idx, mask in plan(len(t))]
        batch = {"images": torch.stack([c["images"] for c in clips]),
                 "frame_mask": torch.stack([c["frame_mask"] for c in clips])}
        with torch.no_grad():
            out.append((model(batch).embedding.double(),
                        batch["frame_mask"].double().sum(1)))
    return out


def aggregate(clip_embeddings, normalize):
    rows = []
    for emb, real in clip_embeddings:
        if normalize in ("before", "both"):
            emb = F.normalize(emb, dim=1)
        f = (emb * real[:, None]).sum(0) / real.sum()
        if normalize in ("after", "both"):
            f = F.normalize(f, dim=0)
        rows.append(f)
    return torch.stack(rows).float().numpy()


@pytest.mark.parametrize("plan_spec", [("all_consecutive", {"length": 4}),
                                       ("dense", {"length": 4, "stride": 2}),
                                       ("chunks", {"length": 15}),
                                       ("first_of_segments", {"length": 4})])
def test_streamed_equals_naive(model, tracklets, plan_spec):
    plan = build_plan(plan_spec[0], **plan_spec[1])
    transform = ClipTransform(H, W, train=False)
    reference = naive_clip_embeddings(model, tracklets, plan, transform)
    total_clips = sum(len(plan(len(t))) for t in tracklets)
    for normalize in ("none", "before", "after", "both"):
        model.batch_sizes.clear()
        got = extract_features(model, tracklets, plan, transform, batch_size=3, device="cpu",
                               normalize=normalize, progress=False, precision="fp32")
        assert got.shape == (len(tracklets), 5) and got.dtype == np.float32
        np.testing.assert_allclose(got, aggregate(reference, normalize), rtol=1e-5, atol=1e-6)
        # bounded memory: never more than batch_size clips in a forward pass, each clip once
        assert max(model.batch_sizes) <= 3
        assert sum(model.batch_sizes) == total_clips
        if normalize in ("after", "both"):
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_long_tracklet_is_streamed_in_batches(model, tracklets):
    """The 150-frame tracklet spans many batches and is still averaged correctly."""
    plan = build_plan("all_consecutive", length=4)
    transform = ClipTransform(H, W, train=False)
    long_only = tracklets[:1]
    want = aggregate(naive_clip_embeddings(model, long_only, plan, transform), "none")
    model.batch_sizes.clear()
    got = extract_features(model, long_only, plan, transform, batch_size=8, progress=False,
                           precision="fp32")
    assert model.batch_sizes == [8] * 4 + [6]  # 38 clips of 4 frames, in batches of <= 8
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_batch_size_and_workers_do_not_change_features(model, tracklets):
    plan = build_plan("dense", length=4, stride=2)
    transform = ClipTransform(H, W, train=False)
    subset = tracklets[1:]
    a = extract_features(model, subset, plan, transform, batch_size=1, progress=False,
                         precision="fp32")
    b = extract_features(model, subset, plan, transform, batch_size=64, workers=2,
                         progress=False, precision="fp32")
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mode_restored_and_bad_arguments(model, tracklets):
    plan = build_plan("all_consecutive", length=4)
    transform = ClipTransform(H, W, train=False)
    model.train()
    try:
        extract_features(model, tracklets[1:2], plan, transform, progress=False)
        assert model.training  # restored
    finally:
        model.eval()
    with pytest.raises(ValueError, match="normalize"):
        extract_features(model, tracklets, plan, transform, normalize="l2")
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(model, tracklets, plan, transform, batch_size=0)


class MeanGrey(nn.Module):
    """Embedding = mask-averaged mean of the red channel (a linear function of the grey)."""

    def forward(self, batch: dict) -> ReIDOutput:
        g = batch["images"][:, :, 0].mean((-2, -1))  # (B, T)
        m = batch["frame_mask"].to(g.dtype)
        return ReIDOutput(embedding=((g * m).sum(1) / m.sum(1))[:, None])


def test_padded_clip_weighs_by_its_real_frames(tmp_path):
    """Hand-computed: 5 flat frames of grey 0, 50, 100, 150, 200 cut into clips of 4.

    ``all_consecutive(4)`` gives [0, 1, 2, 3] and [4, pad, pad, pad]. Weighted by real frames
    the tracklet feature is (4 * mean(0, 50, 100, 150) + 1 * 200) / 5 = grey 100, the mean of
    the five frames; a plain clip mean would give (75 + 200) / 2 = 137.5 (frame 4 counted 4x).
    """
    greys = [0, 50, 100, 150, 200]
    folder = tmp_path / "flat"
    folder.mkdir()
    paths = []
    for i, g in enumerate(greys):
        p = folder / f"{i:04d}.png"
        cv2.imwrite(str(p), np.full((H, W, 3), g, dtype=np.uint8))
        paths.append(p)
    t = Tracklet(tuple(paths), pid=0, camid=0, meta={})
    transform = ClipTransform(H, W, train=False)
    plan = build_plan("all_consecutive", length=4)
    assert [int(m.sum()) for _, m in plan(len(t))] == [4, 1]

    def red(grey: float) -> float:  # normalised red value of a flat grey frame
        return (grey / 255.0 - transform.mean[0]) / transform.std[0]

    for batch_size in (1, 2):
        got = extract_features(MeanGrey(), [t], plan, transform, batch_size=batch_size,
                               progress=False)
        assert got.shape == (1, 1)
        assert got[0, 0] == pytest.approx(red(100.0), abs=1e-5)
        assert abs(got[0, 0] - red(137.5)) > 0.5  # far from the unweighted mean
