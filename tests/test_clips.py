"""Clip datasets, collate, image decoding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from videoreid.data.clips import (
    ClipDataset,
    ImageDecodeError,
    TestClipDataset,
    collate_clips,
    decode_image,
)
from videoreid.data.decode import available_backends, decode_image_with_size, jpeg_size
from videoreid.data.samplers import PKSampler
from videoreid.data.temporal import AllConsecutive, Dense, RandomSubset, RestrictedRandom
from videoreid.data.tracklet import Tracklet
from videoreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform

H, W = 64, 32


def _level(j: int) -> int:
    return 8 + 16 * j  # frame j is a flat grey image of this level (j < 15)


def _frame_ids(images: torch.Tensor) -> list[int]:
    """Recover the frame number of each ``(3, h, w)`` image written by :func:`_write`
    (from the centre, which padding/cropping never reaches)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    h, w = images.shape[-2:]
    centre = images[..., h // 2 - 2:h // 2 + 2, w // 2 - 2:w // 2 + 2]
    level = ((centre * std + mean) * 255).mean(dim=(1, 2, 3))
    return [round((float(v) - 8) / 16) for v in level]


def _write(root: Path, pid: int, camid: int, n: int, ext: str = ".jpg") -> Tracklet:
    d = root / f"p{pid}_c{camid}"
    d.mkdir(parents=True, exist_ok=True)
    frames = []
    for j in range(n):
        p = d / f"{j:04d}{ext}"
        cv2.imwrite(str(p), np.full((H, W, 3), _level(j), np.uint8))
        frames.append(p)
    return Tracklet(tuple(frames), pid, camid, {"tracklet_id": f"{pid}_{camid}"})


@pytest.fixture()
def tracklets(tmp_path: Path) -> list[Tracklet]:
    lengths = [12, 3, 9, 14, 5, 7, 10, 2]
    return [_write(tmp_path, pid=k // 2, camid=k % 2, n=n) for k, n in enumerate(lengths)]


def _flow_modality(t: Tracklet, idx: np.ndarray) -> np.ndarray:
    """A flow whose dx is the frame index (checks that maps follow the sampled frames)."""
    out = np.zeros((len(idx), 2, H, W), np.float32)
    out[:, 0] = idx[:, None, None]
    out[:, 1] = 1.0
    return out


def test_clip_dataset_item_shapes_dtypes_mask(tracklets: list[Tracklet]) -> None:
    ds = ClipDataset(tracklets, RestrictedRandom(4), ClipTransform(H, W, train=False), seed=0)
    assert len(ds) == len(tracklets) and ds.pids == [t.pid for t in tracklets]
    item = ds[0]
    assert item["images"].shape == (4, 3, H, W) and item["images"].dtype == torch.float32
    assert item["frame_mask"].dtype == torch.bool and item["frame_mask"].all()
    assert item["pids"] == 0 and item["camids"] == 0 and item["index"] == 0
    ids = _frame_ids(item["images"])
    for k, f in enumerate(ids):  # restricted random: frame k from chunk k of 12 frames
        assert 3 * k <= f < 3 * (k + 1)


def test_short_tracklet_mask_and_repeats(tracklets: list[Tracklet]) -> None:
    ds = ClipDataset(tracklets, RandomSubset(6), ClipTransform(H, W, train=False))
    item = ds[7]  # 2 frames
    assert item["frame_mask"].tolist() == [True, True, False, False, False, False]
    assert _frame_ids(item["images"]) == [0, 1, 0, 1, 0, 1]


def test_deterministic_per_seed_epoch_index(tracklets: list[Tracklet]) -> None:
    tr = ClipTransform(H, W, train=True, erasing_p=0.5, color_jitter=0.2)
    a = ClipDataset(tracklets, RandomSubset(4), tr, seed=1)
    b = ClipDataset(tracklets, RandomSubset(4), tr, seed=1)
    for i in (3, 0, 5):
        torch.testing.assert_close(a[i]["images"], b[i]["images"])
    a.set_epoch(1)
    assert a.epoch == 1
    changed = [not torch.equal(a[i]["images"], b[i]["images"]) for i in range(len(a))]
    assert any(changed)
    b.set_epoch(1)
    torch.testing.assert_close(a[3]["images"], b[3]["images"])


def test_independent_of_worker_count_and_epoch_reaches_workers(
        tracklets: list[Tracklet]) -> None:
    def batches(workers: int, epochs: list[int], persistent: bool = False) -> list[torch.Tensor]:
        ds = ClipDataset(tracklets, RandomSubset(3), ClipTransform(H, W, train=True), seed=7)
        loader = DataLoader(ds, batch_size=3, num_workers=workers, collate_fn=collate_clips,
                            persistent_workers=persistent and workers > 0)
        out = []
        for e in epochs:
            ds.set_epoch(e)
            out.extend(b["images"] for b in loader)
        return out

    ref = batches(0, [0, 1])
    for got in (batches(2, [0, 1]), batches(1, [0, 1], persistent=True)):
        assert len(got) == len(ref)
        for x, y in zip(ref, got, strict=True):
            torch.testing.assert_close(x, y)
    assert not torch.equal(ref[0], ref[len(ref) // 2])  # epochs differ


def test_collate_and_modalities_with_pk_sampler(tracklets: list[Tracklet]) -> None:
    ds = ClipDataset(tracklets, RandomSubset(4), ClipTransform(H, W, train=True, pad=4),
                     modalities={"flow": _flow_modality})
    sampler = PKSampler(ds.pids, P=2, K=2, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_clips)
    batch = next(iter(loader))
    assert batch["images"].shape == (4, 4, 3, H, W)
    assert batch["pids"].dtype == torch.int64 and batch["pids"].shape == (4,)
    assert batch["camids"].dtype == torch.int64
    assert batch["frame_mask"].shape == (4, 4) and batch["frame_mask"].dtype == torch.bool
    assert batch["flow"].shape == (4, 4, 2, H, W)
    assert batch["pids"].tolist() == [tracklets[i].pid for i in batch["index"].tolist()]
    for b in range(4):
        ids = _frame_ids(batch["images"][b])
        for t in range(4):
            # away from the borders the flow's dx (+-, flip) is the frame index in the image
            centre = batch["flow"][b, t, 0, H // 2, W // 2].abs()
            assert centre == ids[t]
            assert batch["flow"][b, t, 1, H // 2, W // 2] == 1.0


def test_repeat_offset_indices_draw_fresh_clips(tracklets: list[Tracklet]) -> None:
    ds = ClipDataset(tracklets, RandomSubset(3), ClipTransform(H, W, train=False))
    n = len(ds)
    a, b = ds[3], ds[3 + n]
    assert a["index"] == b["index"] == 3
    assert _frame_ids(a["images"]) != _frame_ids(b["images"])


def test_test_clip_dataset_enumerates_every_clip(tracklets: list[Tracklet]) -> None:
    plan = AllConsecutive(4)
    ds = TestClipDataset(tracklets, plan, ClipTransform(H // 2, W // 2, train=False))
    assert len(ds) == sum(-(-len(t) // 4) for t in tracklets)
    assert ds.clips_per_tracklet.tolist() == [-(-len(t) // 4) for t in tracklets]
    seen: dict[int, list[int]] = {}
    for k in range(len(ds)):
        item = ds[k]
        assert item["images"].shape == (4, 3, H // 2, W // 2)
        assert item["index"] == k
        ti = item["tracklet_index"]
        ids = _frame_ids(item["images"])  # decoded at half size: levels survive
        seen.setdefault(ti, []).extend(f for f, m in zip(ids, item["frame_mask"], strict=True) if m)
    assert seen == {i: list(range(len(t))) for i, t in enumerate(tracklets)}
    loader = DataLoader(TestClipDataset(tracklets, Dense(8, 4), ClipTransform(H, W, train=False)),
                        batch_size=5, collate_fn=collate_clips)
    batch = next(iter(loader))
    assert batch["images"].shape == (5, 8, 3, H, W)
    assert batch["tracklet_index"].dtype == torch.int64


def test_collate_errors() -> None:
    a = {"images": torch.zeros(4, 3, 8, 4), "pids": 1}
    b = {"images": torch.zeros(5, 3, 8, 4), "pids": 2}
    with pytest.raises(ValueError, match="images"):
        collate_clips([a, b])
    with pytest.raises(ValueError):
        collate_clips([])


def test_corrupt_image_error_names_the_file(tmp_path: Path, tracklets: list[Tracklet]) -> None:
    good = tracklets[0].frames[0]
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8not a jpeg at all" * 10)
    truncated = tmp_path / "truncated.jpg"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.png"
    text.write_text("hello")
    missing = tmp_path / "missing.jpg"
    for bad in (garbage, truncated, text, missing):
        for backend in available_backends():
            with pytest.raises(ImageDecodeError) as e:
                decode_image(bad, backend=backend)
            assert str(bad) in str(e.value)
    # inside the dataset, too
    broken = Tracklet((good, truncated, good), 0, 0, {})
    ds = ClipDataset([broken], AllConsecutiveSampler(), ClipTransform(H, W, train=False))
    with pytest.raises(ImageDecodeError, match="truncated.jpg"):
        ds[0]


class AllConsecutiveSampler(RandomSubset):
    """Every frame of a 3-frame tracklet."""

    def __init__(self) -> None:
        super().__init__(3)


def test_decoders_agree_and_reduced_decode(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8), (5, 5), 2)
    jpg, png = tmp_path / "a.jpg", tmp_path / "a.png"
    cv2.imwrite(str(jpg), img)
    cv2.imwrite(str(png), img)
    assert jpeg_size(jpg.read_bytes()) == (128, 64)
    ref = decode_image(jpg, backend="pil")
    assert ref.shape == (128, 64, 3) and ref.dtype == np.uint8
    for backend in available_backends():
        np.testing.assert_array_equal(decode_image(jpg, backend=backend), ref)
        np.testing.assert_array_equal(decode_image(png, backend=backend), img[..., ::-1])
        small, stored = decode_image_with_size(jpg, min_size=(60, 30), backend=backend)
        assert small.shape == (64, 32, 3) and stored == (128, 64)
        small, stored = decode_image_with_size(jpg, min_size=(16, 8), backend=backend)
        assert small.shape == (16, 8, 3) and stored == (128, 64)
        # DCT scaling is close to an area resize
        area = cv2.resize(ref, (8, 16), interpolation=cv2.INTER_AREA).astype(int)
        assert np.abs(small.astype(int) - area).mean() < 6
        full, stored = decode_image_with_size(jpg, min_size=(100, 30), backend=backend)
        assert full.shape == (128, 64, 3)
        # DCT-scaled decodes are libjpeg's in every backend: identical pixels
        for size in ((64, 32), (32, 16), (16, 8)):
            np.testing.assert_array_equal(decode_image(jpg, size, backend=backend),
                                          decode_image(jpg, size, backend="pil"))
    gray = tmp_path / "g.jpg"
    cv2.imwrite(str(gray), img[..., 0])
    assert decode_image(gray).shape == (128, 64, 3)


def test_real_mars_frame(shared_dir: Path) -> None:
    files = sorted((shared_dir / "data/mars-mini/mars/bbox_train").glob("*/*.jpg"))[:3]
    assert files
    for f in files:
        ref = decode_image(f, backend="pil")
        assert ref.shape == (256, 128, 3)
        for backend in available_backends():
            np.testing.assert_array_equal(decode_image(f, backend=backend), ref)


def test_test_dataset_decodes_one_clip_at_a_time(tmp_path: Path, monkeypatch) -> None:
    import videoreid.data.clips as clips_mod

    long = _write(tmp_path, pid=1, camid=0, n=14)
    calls: list[Path] = []
    real = clips_mod.decode_image_with_size

    def counting(path, *a, **kw):
        calls.append(Path(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(clips_mod, "decode_image_with_size", counting)
    ds = TestClipDataset([long], AllConsecutive(4), ClipTransform(H, W, train=False))
    assert len(ds) == 4
    for k in range(len(ds)):
        calls.clear()
        item = ds[k]
        # only this clip's distinct frames are decoded (the padded last clip: 2 frames)
        assert calls == list(long.frames[4 * k:4 * k + 4])
        assert item["clip_index"] == k


def test_maps_follow_output_size_with_reduced_decode(tracklets: list[Tracklet]) -> None:
    # frames are decoded at half size (DCT scaling); maps must still scale from the stored size
    ds = ClipDataset(tracklets, RandomSubset(2), ClipTransform(H // 2, W // 2, train=True),
                     modalities={"flow": _flow_modality, "pose": lambda t, i: np.ones(
                         (len(i), 3, H // 8, W // 8), np.float32)})
    item = ds[0]
    assert item["images"].shape == (2, 3, H // 2, W // 2)
    assert item["flow"].shape == (2, 2, H // 2, W // 2)
    assert item["pose"].shape == (2, 3, H // 16, W // 16)
    # flow displacements halve with the map: dy was 1 px at full size
    assert torch.allclose(item["flow"][:, 1, H // 4, W // 4], torch.tensor(0.5))
