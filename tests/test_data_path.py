"""uint8 clips from the workers, finished (colour, normalisation, erasing) batched on the device.

Tolerances: test mode (resize + normalise) is bit-identical to the float path. With colour
jitter the device path re-does OpenCV's uint8 arithmetic in float32; rounding of the contrast
mean can land on the other side of .5, so a few values differ by at most 2 grey levels
(< 0.1 % of them).
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from videoreid.data.clips import ClipDataset, TestClipDataset, collate_clips, load_clip
from videoreid.data.temporal import build_plan, build_sampler
from videoreid.data.tracklet import Tracklet
from videoreid.data.transforms import IMAGENET_STD, ClipParams, ClipTransform
from videoreid.engine.trainer import Trainer
from videoreid.losses.objective import build_objective
from videoreid.models.output import ReIDOutput

H, W = 32, 16
STD_LEVEL = 1.0 / (255.0 * min(IMAGENET_STD))  # one grey level after normalisation, at most


def frames(n: int = 3, seed: int = 0, size=(40, 20)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def finished(t: ClipTransform, clip: list[np.ndarray], p: ClipParams) -> torch.Tensor:
    x, _ = t.apply(clip, {}, p)
    assert x.dtype == torch.uint8 and x.shape == (len(clip), 3, H, W)
    batch = {"images": x[None], "photometric": t.photometric_vector(p)[None]}
    out = t.finish_batch(batch)
    assert "photometric" not in out
    return out["images"][0]


def test_test_mode_uint8_then_finish_is_bit_identical():
    clip = frames()
    for size in ((40, 20), (H, W), (16, 8)):  # down, same, up
        clip = frames(size=size)
        ref, _ = ClipTransform(H, W, train=False)(clip)
        t8 = ClipTransform(H, W, train=False, output="uint8")
        x, _ = t8(clip)
        assert x.dtype == torch.uint8
        got = t8.finish_batch({"images": x[None]})["images"][0]
        assert torch.equal(got, ref)


def test_train_mode_device_finish_matches_float_path():
    kw = dict(flip_p=0.5, pad=4, erasing_p=0.5, color_jitter=0.4)
    tf = ClipTransform(H, W, train=True, **kw)
    t8 = ClipTransform(H, W, train=True, output="uint8", **kw)
    clip = frames()
    differ = total = 0
    seen = set()
    for seed in range(40):
        p = tf.sample_params(np.random.default_rng(seed))
        seen.add((p.flip, p.erase is not None, p.tx != 0))
        ref, _ = tf.apply(clip, {}, p)
        got = finished(t8, clip, p)
        diff = (got - ref).abs()
        assert diff.max() <= 2 * STD_LEVEL + 1e-5, (seed, p)
        differ += int((diff > 1e-5).sum())
        total += diff.numel()
        if p.erase is not None:  # erased = 0 (the mean colour) on every frame, exactly
            top, left, h, w = p.erase
            assert torch.all(got[:, :, top:top + h, left:left + w] == 0)
    assert differ < 1e-3 * total
    assert len(seen) >= 6  # flips, erasing and shifts all exercised


def test_finish_without_colour_is_exact_and_float_batches_pass_through():
    t8 = ClipTransform(H, W, train=True, output="uint8", flip_p=0.5, pad=4, erasing_p=1.0)
    tf = ClipTransform(H, W, train=True, flip_p=0.5, pad=4, erasing_p=1.0)
    clip = frames()
    p = ClipParams(flip=True, tx=3, ty=-2, erase=(4, 2, 10, 6))
    assert torch.equal(finished(t8, clip, p), tf.apply(clip, {}, p)[0])
    x = torch.randn(2, 3, 3, H, W)
    assert t8.finish_batch({"images": x})["images"] is x
    with pytest.raises(ValueError, match="output must be"):
        ClipTransform(H, W, train=False, output="int16")


@pytest.fixture(scope="module")
def tracklets(tmp_path_factory) -> list[Tracklet]:
    root = tmp_path_factory.mktemp("frames")
    out = []
    for i in range(4):
        paths = []
        for j, f in enumerate(frames(6, seed=i)):
            p = root / f"{i}_{j}.png"
            cv2.imwrite(str(p), f)
            paths.append(p)
        out.append(Tracklet(tuple(paths), pid=i % 2, camid=i % 2, meta={}))
    return out


def test_loader_items_are_uint8_with_their_photometric_choices(tracklets):
    kw = dict(flip_p=0.5, pad=4, erasing_p=0.5, color_jitter=0.3)
    t8 = ClipTransform(H, W, train=True, output="uint8", **kw)
    tf = ClipTransform(H, W, train=True, **kw)
    sampler = build_sampler("consecutive", length=3)
    ds8, dsf = ClipDataset(tracklets, sampler, t8, seed=1), ClipDataset(tracklets, sampler, tf, seed=1)
    b8 = collate_clips([ds8[i] for i in range(4)])
    bf = collate_clips([dsf[i] for i in range(4)])
    assert b8["images"].dtype == torch.uint8 and b8["photometric"].shape == (4, 7)
    assert set(b8) - set(bf) == {"photometric"}
    got = t8.finish_batch(b8)["images"]
    assert (got - bf["images"]).abs().max() <= 2 * STD_LEVEL + 1e-5  # same clips, same draws


class Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.seen: list[torch.dtype] = []

    def forward(self, batch):
        self.seen.append(batch["images"].dtype)
        emb = self.fc(batch["images"].mean((1, 3, 4)))
        return ReIDOutput(embedding=emb, logits=emb if self.training else None)


class SlowLoader:
    """Batches that take ``delay`` seconds each to arrive."""

    def __init__(self, batches, delay: float) -> None:
        self.batches, self.delay = batches, delay

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for b in self.batches:
            time.sleep(self.delay)
            yield b


def test_trainer_finishes_uint8_batches_and_logs_data_wait(tracklets):
    t8 = ClipTransform(H, W, train=True, output="uint8", color_jitter=0.2, erasing_p=0.5)
    ds = ClipDataset(tracklets, build_sampler("consecutive", length=3), t8)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_clips)
    model = Recorder()
    objective = build_objective([{"name": "ce"}], 2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model, objective, opt, loader, epochs=1, progress=False)  # auto finish
    trainer.train()
    assert model.seen and set(model.seen) == {torch.float32}
    # the time spent waiting for data is logged per epoch; the loader sleeps 0.05 s a batch
    batches = [collate_clips([ds[0], ds[1]])] * 3
    trainer = Trainer(model, objective, opt, SlowLoader(batches, 0.05), epochs=1,
                      batch_transform=t8.finish_batch, progress=False)
    trainer.train()
    log = trainer.epoch_log
    assert log["data_wait_s"] >= 3 * 0.05 and 0 < log["data_wait_frac"] <= 1.0


def test_extract_workers_get_uint8_clips_and_features_are_unchanged(tracklets):
    """``extract_features`` hands uint8 clips over and normalises batched: same features."""
    from videoreid.engine.extract import extract_features

    plan = build_plan("all_consecutive", length=3)
    tf = ClipTransform(H, W, train=False)
    class Embed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen = []

        def forward(self, batch):
            self.seen.append(batch["images"].dtype)
            return ReIDOutput(embedding=batch["images"].mean((1, 3, 4)))

    model = Embed()
    got = extract_features(model, tracklets, plan, tf, batch_size=2, progress=False,
                           precision="fp32")
    assert set(model.seen) == {torch.float32}
    ds = TestClipDataset(tracklets, plan, tf)
    want = np.zeros((len(tracklets), 3))
    for k in range(len(ds)):
        item = ds[k]
        want[item["tracklet_index"]] += item["images"].mean((0, 2, 3)).numpy()
    want /= ds.clips_per_tracklet[:, None]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert load_clip(tracklets[0], np.arange(3), np.ones(3, bool), tf, None)["images"].dtype \
        == torch.float32  # the caller's transform is not changed
