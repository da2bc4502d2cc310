"""Keypoints → the 19 heatmaps and 38 part affinity fields, as OpenPose's training targets.

:func:`render_pose_maps` reproduces the label generation of OpenPose's training code
(``cpm_data_transformer.cpp`` of Cao et al.'s caffe training, unchanged in
``openpose_caffe_train``), vectorised with numpy over frames, people, parts and the grid:

- **Grid.** The maps have ``h = H // stride`` rows and ``w = W // stride`` columns for an
  ``H × W`` frame (the output size of the network, whose three 2×2 max-pools floor odd
  sizes; 16 × 8 for a 128 × 64 frame at OpenPose's stride 8).
- **Heatmaps** (``putGaussianMaps``): heatmap cell ``(gy, gx)`` sits at the pixel
  ``(start + gy·stride, start + gx·stride)`` with ``start = stride/2 − 0.5`` (the centre of
  the cell's ``stride × stride`` pixel block); each visible keypoint adds
  ``exp(−d²/(2σ²))``, skipped where the exponent exceeds ``ln 100 = 4.6052`` (values below
  1 %); the sum over people is clipped to 1. ``σ = 7`` pixels by default, OpenPose's value
  for its network input — here the frame at its own size, as AlignNet feeds 128 × 64 frames
  to OpenPose unchanged (sec. 4.2).
- **Background**: ``max(1 − max_k heatmap_k, 0)``.
- **PAFs** (``putVecMaps``): keypoints are scaled to the grid (``p / stride``, *without*
  the heatmaps' ``start`` offset, exactly as the original code does: at ``stride = 1`` the two
  conventions coincide, at stride 8 PAF cell ``g`` is sampled at pixel ``g·stride``); a cell
  belongs to limb ``A → B`` of a person when it lies in the limb's bounding box grown by
  ``paf_threshold`` cells (bounds rounded as C++ ``round``, the upper one exclusive) and its
  perpendicular distance to the line ``AB`` is at most ``paf_threshold`` (1 cell); the cell
  value is the unit vector ``(B − A)/|B − A|``, averaged over the people whose limb covers
  it. A limb with both ends at the same point has no direction and is left empty (the
  original code would divide by zero).
- **Missing keypoints** (confidence ``c <= min_confidence``; OpenPose writes ``0, 0, 0``)
  give an empty heatmap and empty PAFs for every limb that touches them — never an error.

The channel order is :mod:`videoreid.modalities.pose.layout`'s (heatmaps, background, PAFs in
network order, x before y).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from videoreid.modalities.pose.layout import NUM_HEATMAPS, NUM_KEYPOINTS, NUM_MAPS, PAF_LIMBS

__all__ = ["GAUSSIAN_CUTOFF", "map_size", "render_pose_maps", "render_heatmaps", "render_pafs"]

GAUSSIAN_CUTOFF = 4.6052  # ln(100): OpenPose skips Gaussian values below 1 %

_LIMB_A = np.array([a for a, _ in PAF_LIMBS])
_LIMB_B = np.array([b for _, b in PAF_LIMBS])


def map_size(frame_size: Sequence[int], stride: int) -> tuple[int, int]:
    """``(h, w) = (H // stride, W // stride)`` (at least 1) for a frame of ``(H, W)``."""
    H, W = int(frame_size[0]), int(frame_size[1])
    return max(1, H // int(stride)), max(1, W // int(stride))


def _as_tpk3(keypoints: np.ndarray) -> np.ndarray:
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape[-2:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must end in (18, 3) (x, y, confidence; COCO-18 order), "
                         f"got shape {kp.shape}")
    while kp.ndim < 4:
        kp = kp[None]
    if kp.ndim != 4:
        raise ValueError(f"keypoints must be (18, 3), (P, 18, 3) or (T, P, 18, 3), got {kp.shape}")
    return kp


def _cround(v: np.ndarray) -> np.ndarray:
    """C++ ``round``: halves away from zero (numpy rounds halves to even)."""
    return np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5))


def render_heatmaps(
    keypoints: np.ndarray, frame_size: Sequence[int], stride: int = 8, sigma: float = 7.0,
    min_confidence: float = 0.0,
) -> np.ndarray:
    """The 18 part heatmaps and the background map.

    Args:
        keypoints: ``(T, P, 18, 3)`` ``(x, y, c)`` in pixels of the frame (also ``(P, 18, 3)``
            or ``(18, 3)``; ``P = 0`` people is allowed).
        frame_size: ``(H, W)`` of the frame.
        stride: frame pixels per map cell.
        sigma: Gaussian standard deviation in frame pixels.
        min_confidence: keypoints with ``c <= min_confidence`` are missing.
    Returns:
        ``(T, 19, h, w)`` float32 in ``[0, 1]``.
    """
    kp = _as_tpk3(keypoints)
    T = kp.shape[0]
    h, w = map_size(frame_size, stride)
    start = stride / 2.0 - 0.5
    gy = start + np.arange(h) * stride
    gx = start + np.arange(w) * stride
    present = kp[..., 2] > min_confidence  # (T, P, 18)
    inv = 1.0 / (2.0 * sigma * sigma)
    ey = ((gy - kp[..., 1, None]) ** 2 * inv).astype(np.float32)  # (T, P, 18, h)
    ex = ((gx - kp[..., 0, None]) ** 2 * inv).astype(np.float32)  # (T, P, 18, w)
    # exp(-(ey + ex)) = exp(-ey) exp(-ex): exponentials on the axes only, not the grid
    g = np.exp(-np.minimum(ey, 50.0))[..., :, None] * np.exp(-np.minimum(ex, 50.0))[..., None, :]
    g[(ey[..., :, None] + ex[..., None, :]) > GAUSSIAN_CUTOFF] = 0.0
    g *= present[..., None, None]
    out = np.empty((T, NUM_HEATMAPS, h, w), dtype=np.float32)
    out[:, :NUM_KEYPOINTS] = np.minimum(g.sum(axis=1), 1.0)
    out[:, NUM_KEYPOINTS] = np.maximum(1.0 - out[:, :NUM_KEYPOINTS].max(axis=1), 0.0)
    return out


def render_pafs(
    keypoints: np.ndarray, frame_size: Sequence[int], stride: int = 8,
    paf_threshold: float = 1.0, min_confidence: float = 0.0,
) -> np.ndarray:
    """The 38 part affinity field channels (limbs in network order, x then y).

    Args:
        keypoints, frame_size, stride, min_confidence: as for :func:`render_heatmaps`.
        paf_threshold: limb half-width in map cells (OpenPose: 1).
    Returns:
        ``(T, 38, h, w)`` float32; non-zero cells hold (averages of) unit vectors.
    """
    kp = _as_tpk3(keypoints)
    T, P = kp.shape[:2]
    h, w = map_size(frame_size, stride)
    out = np.zeros((T, len(PAF_LIMBS), 2, h, w), dtype=np.float32)
    if P == 0:
        return out.reshape(T, 2 * len(PAF_LIMBS), h, w)
    A = kp[:, :, _LIMB_A, :2] / stride  # (T, P, L, 2), grid units
    B = kp[:, :, _LIMB_B, :2] / stride
    vis = (kp[:, :, _LIMB_A, 2] > min_confidence) & (kp[:, :, _LIMB_B, 2] > min_confidence)
    d = B - A
    norm = np.hypot(d[..., 0], d[..., 1])
    vis &= norm > 0
    v = d / np.where(norm > 0, norm, 1.0)[..., None]  # unit direction (T, P, L, 2)
    thr = float(paf_threshold)
    min_x = np.maximum(_cround(np.minimum(A[..., 0], B[..., 0]) - thr), 0)
    max_x = np.minimum(_cround(np.maximum(A[..., 0], B[..., 0]) + thr), w)
    min_y = np.maximum(_cround(np.minimum(A[..., 1], B[..., 1]) - thr), 0)
    max_y = np.minimum(_cround(np.maximum(A[..., 1], B[..., 1]) + thr), h)
    # the per-cell work in float32 (keypoint files have 3 decimals; halves the memory traffic)
    A, v = A.astype(np.float32), v.astype(np.float32)
    gx = np.arange(w, dtype=np.float32)
    gy = np.arange(h, dtype=np.float32)
    in_x = (gx >= min_x[..., None]) & (gx < max_x[..., None])  # (T, P, L, w)
    in_y = (gy >= min_y[..., None]) & (gy < max_y[..., None])  # (T, P, L, h)
    bax = gx - A[..., 0, None]  # (T, P, L, w)
    bay = gy - A[..., 1, None]  # (T, P, L, h)
    # perpendicular distance |ba × v| of every cell to the limb's line
    dist = np.abs(bax[..., None, :] * v[..., 1, None, None] - bay[..., :, None] * v[..., 0, None, None])
    inside = (dist <= thr) & in_y[..., :, None] & in_x[..., None, :] & vis[..., None, None]
    if P == 1:  # the common case (one person per re-id crop): no averaging needed
        m = inside[:, 0]
        out[:, :, 0] = m * v[:, 0, :, 0, None, None]
        out[:, :, 1] = m * v[:, 0, :, 1, None, None]
    else:
        denom = np.maximum(inside.sum(axis=1), 1)  # people covering each cell (T, L, h, w)
        out[:, :, 0] = (inside * v[..., 0, None, None]).sum(axis=1) / denom
        out[:, :, 1] = (inside * v[..., 1, None, None]).sum(axis=1) / denom
    return out.reshape(T, 2 * len(PAF_LIMBS), h, w)


def render_pose_maps(
    keypoints: np.ndarray,
    frame_size: Sequence[int],
    stride: int = 8,
    sigma: float = 7.0,
    paf_threshold: float = 1.0,
    min_confidence: float = 0.0,
) -> np.ndarray:
    """All 57 maps (heatmaps, background, PAFs) of ``T`` frames (see the module docstring).

    Args:
        keypoints: ``(T, P, 18, 3)`` ``(x, y, c)`` in frame pixels (or ``(P, 18, 3)``,
            ``(18, 3)``); people padded with ``c = 0`` rows are simply absent.
        frame_size: ``(H, W)`` of the frames.
        stride: frame pixels per map cell (OpenPose: 8).
        sigma: heatmap Gaussian std in frame pixels (OpenPose: 7).
        paf_threshold: PAF half-width in cells (OpenPose: 1).
        min_confidence: keypoints with ``c <= min_confidence`` count as missing.
    Returns:
        ``(T, 57, H // stride, W // stride)`` float32.
    """
    if stride < 1 or sigma <= 0 or paf_threshold < 0:
        raise ValueError(f"render_pose_maps: need stride >= 1, sigma > 0, paf_threshold >= 0; "
                         f"got {stride}, {sigma}, {paf_threshold}")
    heat = render_heatmaps(keypoints, frame_size, stride, sigma, min_confidence)
    paf = render_pafs(keypoints, frame_size, stride, paf_threshold, min_confidence)
    out = np.concatenate([heat, paf], axis=1)
    assert out.shape[1] == NUM_MAPS
    return out
