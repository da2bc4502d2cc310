"""Clip-consistent transforms of frames and aligned maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipParams, ClipTransform

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _denorm(x: torch.Tensor) -> torch.Tensor:
    """Back to 0..255 (float) from normalised ``(..., 3, H, W)``."""
    return (x * STD + MEAN) * 255.0


def _pattern(H: int = 64, W: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _box_frame(H: int, W: int, top: int, left: int, h: int, w: int) -> np.ndarray:
    f = np.zeros((H, W, 3), np.uint8)
    f[top:top + h, left:left + w] = 255
    return f


def test_normalisation_values() -> None:
    t = ClipTransform(4, 2, train=False)
    frame = np.zeros((4, 2, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 255, 0, 51
    x, maps = t([frame], {})
    assert x.shape == (1, 3, 4, 2) and x.dtype == torch.float32 and maps == {}
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    for c in range(3):
        torch.testing.assert_close(x[0, c], torch.full((4, 2), expected[c]), atol=1e-5, rtol=0)
    t2 = ClipTransform(4, 2, train=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x2, _ = t2([frame], {})
    torch.testing.assert_close(x2[0, :, 0, 0], torch.tensor([1.0, -1.0, 0.4 - 1.0]), atol=1e-5,
                               rtol=0)


def test_test_mode_resizes_only() -> None:
    t = ClipTransform(32, 16, train=False)
    f = np.full((64, 32, 3), 100, np.uint8)
    x, maps = t([f, f], {"pose": np.ones((2, 5, 8, 4), np.float32)})
    assert x.shape == (2, 3, 32, 16)
    torch.testing.assert_close(_denorm(x), torch.full_like(x, 100.0), atol=1e-3, rtol=0)
    assert maps["pose"].shape == (2, 5, 4, 2)  # 1/8 of the frame stays 1/8 of the output


def test_same_geometry_on_every_frame_matches_reference() -> None:
    H, W = 64, 32
    base = _pattern(H, W)
    frames = [np.clip(base.astype(int) + 3 * k, 0, 255).astype(np.uint8) for k in range(4)]
    t = ClipTransform(H, W, train=True, flip_p=0.5, pad=6)
    for seed in range(8):
        rng = np.random.default_rng(seed)
        params = t.sample_params(np.random.default_rng(seed))
        x, _ = t(frames, {}, rng)
        for k, f in enumerate(frames):
            # reference: flip, then out[y, x] = in[y + ty, x + tx], zero outside
            g = f[:, ::-1] if params.flip else f
            ref = np.zeros_like(g)
            for y in range(H):
                for xx in range(W):
                    sy, sx = y + params.ty, xx + params.tx
                    if 0 <= sy < H and 0 <= sx < W:
                        ref[y, xx] = g[sy, sx]
            torch.testing.assert_close(_denorm(x[k]), torch.from_numpy(ref).permute(2, 0, 1).float(),
                                       atol=1e-3, rtol=0)


def test_maps_aligned_same_resolution_exact() -> None:
    H, W = 64, 32
    frame = _box_frame(H, W, 10, 4, 20, 9)
    box = (frame[..., 0] > 0).astype(np.float32)
    maps = {"pose": np.stack([box[None], box[None]])}  # (T=2, C=1, H, W)
    t = ClipTransform(H, W, train=True, flip_p=0.5, pad=8, erasing_p=0.5, color_jitter=0.3)
    flips = set()
    for seed in range(12):
        x, out = t([frame, frame], maps, np.random.default_rng(seed))
        params = t.sample_params(np.random.default_rng(seed))
        flips.add(params.flip)
        m = out["pose"]
        assert m.shape == (2, 1, H, W)
        torch.testing.assert_close(m[0], m[1])
        img_box = (_denorm(x[0])[0] > 127).float()
        if params.erase is None:  # erasing hides part of the image box but not of the map
            torch.testing.assert_close(m[0, 0], img_box)
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    assert flips == {True, False}


def _centre(a: torch.Tensor) -> tuple[float, float]:
    ys, xs = torch.meshgrid(torch.arange(a.shape[0]) + 0.5, torch.arange(a.shape[1]) + 0.5,
                            indexing="ij")
    s = a.sum()
    return float((a * ys).sum() / s), float((a * xs).sum() / s)


def test_maps_aligned_half_resolution() -> None:
    H, W = 64, 32
    frame = _box_frame(H, W, 12, 6, 24, 10)  # even coordinates: exact at half resolution
    small = np.zeros((1, 1, H // 2, W // 2), np.float32)
    small[..., 6:18, 3:8] = 1.0
    t = ClipTransform(H, W, train=True, flip_p=0.5, pad=5)
    for seed in range(16):
        params = t.sample_params(np.random.default_rng(seed))
        x, out = t([frame], {"pose": small}, np.random.default_rng(seed))
        m = out["pose"][0, 0]
        assert m.shape == (H // 2, W // 2)
        img_box = (_denorm(x[0])[0] > 127).float()
        cy, cx = _centre(img_box)
        my, mx = _centre(m)
        assert abs(2 * my - cy) < 1e-4 and abs(2 * mx - cx) < 1e-4, params
        torch.testing.assert_close(m.sum() * 4, img_box.sum(), atol=1e-3, rtol=0)
        if params.tx % 2 == 0 and params.ty % 2 == 0:  # whole map pixels: an exact shift
            torch.testing.assert_close(m, img_box[::2, ::2])


def test_flow_x_negated_on_flip_and_scaled_on_resize() -> None:
    flow = np.zeros((3, 2, 8, 4), np.float32)
    flow[:, 0], flow[:, 1] = 3.0, -1.0
    flow[:, 0, :, 0] = 5.0  # a marked left column
    frames = [np.zeros((8, 4, 3), np.uint8)] * 3
    t = ClipTransform(8, 4, train=True)
    no_geo = ClipParams()
    _, out = t.apply(frames, {"flow": flow, "other": flow}, ClipParams(flip=True))
    f = out["flow"]
    torch.testing.assert_close(f[:, 0, :, :3], torch.full((3, 8, 3), -3.0))
    torch.testing.assert_close(f[:, 0, :, 3], torch.full((3, 8), -5.0))  # left column now right
    torch.testing.assert_close(f[:, 1], torch.full((3, 8, 4), -1.0))  # y unchanged
    torch.testing.assert_close(out["other"][:, 0, :, 3], torch.full((3, 8), 5.0))  # not flow
    _, out = t.apply(frames, {"flow": flow}, no_geo)
    torch.testing.assert_close(out["flow"], torch.from_numpy(flow))
    # output twice the frame size: flow map doubles in size, its displacements double too
    big = ClipTransform(16, 8, train=False)
    _, out = big(frames, {"flow": np.full((3, 2, 8, 4), 1.5, np.float32)})
    assert out["flow"].shape == (3, 2, 16, 8)
    torch.testing.assert_close(out["flow"], torch.full((3, 2, 16, 8), 3.0))
    _, out = ClipTransform(16, 8, train=False, scale_flow=False)(
        frames, {"flow": np.full((3, 2, 8, 4), 1.5, np.float32)})
    torch.testing.assert_close(out["flow"], torch.full((3, 2, 16, 8), 1.5))


def test_flip_rules_swap_and_negate_channels() -> None:
    # channel c holds the constant c + 1 and a marker in its left column
    maps = np.stack([np.full((8, 4), c + 1.0, np.float32) for c in range(3)])[None].repeat(2, 0)
    maps[:, :, :, 0] = 10.0
    frames = [np.zeros((8, 4, 3), np.uint8)] * 2
    t = ClipTransform(8, 4, train=True, flip_rules={"parts": ([1, 0, 2], [1.0, 1.0, -1.0])})
    _, out = t.apply(frames, {"parts": maps, "plain": maps}, ClipParams(flip=True))
    m = out["parts"]
    torch.testing.assert_close(m[:, 0, :, :3], torch.full((2, 8, 3), 2.0))  # was channel 1
    torch.testing.assert_close(m[:, 1, :, :3], torch.full((2, 8, 3), 1.0))  # was channel 0
    torch.testing.assert_close(m[:, 2, :, :3], torch.full((2, 8, 3), -3.0))  # negated
    torch.testing.assert_close(m[:, :, :, 3], torch.tensor([10.0, 10.0, -10.0]).view(1, 3, 1).expand(2, 3, 8))
    torch.testing.assert_close(out["plain"][:, :, :, 3], torch.full((2, 3, 8), 10.0))  # no rule
    _, out = t.apply(frames, {"parts": maps}, ClipParams())
    torch.testing.assert_close(out["parts"], torch.from_numpy(maps))  # no flip: untouched
    with pytest.raises(ValueError, match="covers 3 channels"):
        t.apply(frames, {"parts": maps[:, :2]}, ClipParams(flip=True))


def test_pose_flip_rule_equals_mirrored_pose_maps() -> None:
    from videoreid.modalities.pose import FLIP_PERMUTATION, FLIP_SIGN, flip_pose_maps

    rng = np.random.default_rng(0)
    maps = rng.random((2, 57, 16, 8), dtype=np.float32)
    frames = [np.zeros((16, 8, 3), np.uint8)] * 2
    t = ClipTransform(16, 8, train=True, flip_rules={"pose": (FLIP_PERMUTATION, FLIP_SIGN)})
    _, out = t.apply(frames, {"pose": maps}, ClipParams(flip=True))
    torch.testing.assert_close(out["pose"], torch.from_numpy(flip_pose_maps(maps)))


def test_colour_and_erasing_images_only_same_on_all_frames() -> None:
    frame = _pattern(32, 16, seed=1)
    maps = {"pose": np.random.default_rng(0).random((3, 4, 32, 16), dtype=np.float32)}
    t = ClipTransform(32, 16, train=True, flip_p=0.0, pad=0, erasing_p=1.0, color_jitter=0.4)
    x, out = t([frame] * 3, maps, np.random.default_rng(0))
    params = t.sample_params(np.random.default_rng(0))
    assert params.erase is not None and params.brightness != 1.0
    torch.testing.assert_close(x[0], x[1])
    torch.testing.assert_close(x[0], x[2])
    top, left, h, w = params.erase
    assert torch.all(x[:, :, top:top + h, left:left + w] == 0)  # erased = mean colour
    assert not torch.all(x[:, :, :top, :] == 0)
    torch.testing.assert_close(out["pose"], torch.from_numpy(maps["pose"]))  # untouched
    plain = ClipTransform(32, 16, train=False)([frame], {})[0]
    assert not torch.allclose(x[0, :, :top], plain[0, :, :top])  # colour changed


def test_brightness_reference() -> None:
    frame = np.full((4, 2, 3), 100, np.uint8)
    t = ClipTransform(4, 2, train=True)
    x, _ = t.apply([frame], {}, ClipParams(brightness=1.5))
    torch.testing.assert_close(_denorm(x), torch.full((1, 3, 4, 2), 150.0), atol=1e-3, rtol=0)
    x, _ = t.apply([frame], {}, ClipParams(brightness=3.0))
    torch.testing.assert_close(_denorm(x), torch.full((1, 3, 4, 2), 255.0), atol=1e-3, rtol=0)


def test_random_choices_vary_and_are_seeded() -> None:
    t = ClipTransform(64, 32, train=True, flip_p=0.5, pad=10, erasing_p=0.5, color_jitter=0.2)
    draws = [t.sample_params(np.random.default_rng(s)) for s in range(64)]
    assert {d.flip for d in draws} == {True, False}
    assert {d.tx for d in draws} <= set(range(-10, 11)) and len({d.tx for d in draws}) > 10
    assert 10 < sum(d.erase is not None for d in draws) < 54
    assert t.sample_params(np.random.default_rng(3)) == draws[3]
    with pytest.raises(ValueError):
        t([_pattern()], {}, None)


def test_bad_inputs() -> None:
    t = ClipTransform(8, 4, train=False)
    with pytest.raises(ValueError, match="uint8"):
        t([np.zeros((8, 4, 3), np.float32)], {})
    with pytest.raises(ValueError, match="flow"):
        t([np.zeros((8, 4, 3), np.uint8)], {"flow": np.zeros((1, 3, 8, 4), np.float32)})
    with pytest.raises(ValueError, match="T=2"):
        t([np.zeros((8, 4, 3), np.uint8)] * 2, {"pose": np.zeros((1, 3, 8, 4), np.float32)})
