"""The 57 OpenPose COCO body maps: keypoint names, limb list, channel order, flip rule.

Channel order (the one order used everywhere in this project, ``NUM_MAPS = 57``):

- ``0..17``: part heatmaps of the COCO-18 keypoints in OpenPose's order
  (:data:`KEYPOINT_NAMES`: 0 nose, 1 neck, 2-4 right shoulder/elbow/wrist, 5-7 left,
  8-10 right hip/knee/ankle, 11-13 left, 14/15 right/left eye, 16/17 right/left ear);
- ``18``: background heatmap;
- ``19..56``: part affinity fields, two channels (x then y) per limb, limbs in the order of
  the network's PAF output :data:`PAF_LIMBS` — channel ``19 + 2j`` is the x component and
  ``20 + 2j`` the y component of limb ``j``, a unit vector pointing from ``PAF_LIMBS[j][0]``
  to ``PAF_LIMBS[j][1]``.

This is OpenPose's own output order for the COCO body model (its C++ API returns body parts,
background, then PAFs), and the order of ``torch.cat([heatmaps, pafs], 1)`` for the two
outputs of the network (``Mconv7_stage6_L2``: 19 heatmaps, ``Mconv7_stage6_L1``: 38 PAFs).
The PAF limb order is the *network's* order (the order of the original training code,
``mid_1/mid_2`` in ``cpm_data_transformer.cpp``), not OpenPose's ``POSE_BODY_PART_PAIRS``
drawing order (:data:`POSE_PAIRS`); pytorch-openpose's ``mapIdx`` table maps the latter to
channels of the former, and :data:`PAIR_TO_PAF` reproduces that table.
"""

from __future__ import annotations

import numpy as np
import torch

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear",
    "l_ear",
)
NUM_KEYPOINTS = 18
NUM_HEATMAPS = 19  # 18 parts + background
BACKGROUND = 18
NUM_PAFS = 38
NUM_MAPS = NUM_HEATMAPS + NUM_PAFS  # 57
PAF_OFFSET = NUM_HEATMAPS  # first PAF channel

# The network's PAF limbs (0-based keypoint indices, (from, to)), in output-channel order.
PAF_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16),
    (1, 5), (5, 6), (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17),
)

# OpenPose's POSE_BODY_PART_PAIRS for COCO (its drawing / assembly order).
POSE_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)

# Left/right mirror of each keypoint (nose and neck map to themselves).
MIRROR_KEYPOINT: tuple[int, ...] = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)


def keypoint_index(name: str) -> int:
    """Index of a COCO-18 keypoint name (see :data:`KEYPOINT_NAMES`)."""
    try:
        return KEYPOINT_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown keypoint {name!r}; valid: {list(KEYPOINT_NAMES)}") from None


def paf_index(a: str | int, b: str | int) -> int:
    """Index ``j`` in :data:`PAF_LIMBS` of the limb joining keypoints ``a`` and ``b``
    (names or indices, either direction)."""
    ia = keypoint_index(a) if isinstance(a, str) else int(a)
    ib = keypoint_index(b) if isinstance(b, str) else int(b)
    for j, (p, q) in enumerate(PAF_LIMBS):
        if {p, q} == {ia, ib}:
            return j
    raise ValueError(f"no OpenPose COCO limb joins {a!r} and {b!r}")


def paf_channels(a: str | int, b: str | int) -> tuple[int, int]:
    """The (x, y) channels of the limb joining ``a`` and ``b`` in the 57-channel order."""
    j = paf_index(a, b)
    return PAF_OFFSET + 2 * j, PAF_OFFSET + 2 * j + 1


# pytorch-openpose's ``mapIdx``: channels of each POSE_PAIRS limb in the 57-channel order.
PAIR_TO_PAF: tuple[tuple[int, int], ...] = tuple(paf_channels(a, b) for a, b in POSE_PAIRS)


def _flip_rule() -> tuple[np.ndarray, np.ndarray]:
    perm = np.arange(NUM_MAPS)
    sign = np.ones(NUM_MAPS, dtype=np.float32)
    for k in range(NUM_KEYPOINTS):
        perm[k] = MIRROR_KEYPOINT[k]
    for j, (a, b) in enumerate(PAF_LIMBS):
        ma, mb = MIRROR_KEYPOINT[a], MIRROR_KEYPOINT[b]
        jm = PAF_LIMBS.index((ma, mb))  # every mirrored limb exists, same direction
        perm[PAF_OFFSET + 2 * j] = PAF_OFFSET + 2 * jm
        perm[PAF_OFFSET + 2 * j + 1] = PAF_OFFSET + 2 * jm + 1
        sign[PAF_OFFSET + 2 * j] = -1.0  # x components change sign in a mirror image
    return perm, sign


FLIP_PERMUTATION, FLIP_SIGN = _flip_rule()
FLIP_PERMUTATION.setflags(write=False)
FLIP_SIGN.setflags(write=False)


def flip_pose_maps(maps: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The maps of the horizontally mirrored image.

    Mirrors the last (x) axis, swaps left/right heatmaps and left/right limbs, and negates
    the PAF x components: ``out[..., c, :, ::-1] = FLIP_SIGN[c] * maps[..., FLIP_PERMUTATION[c], :, :]``.
    For maps rendered at pixel centres ``x = start + g·stride`` this equals rendering the
    mirrored keypoints ``x' = W - 1 - x`` with left and right exchanged (exactly for
    heatmaps; for PAFs exactly at ``stride = 1``, see ``render``).

    Args:
        maps: ``(..., 57, h, w)`` array (numpy or torch; torch tensors are returned as torch).
    Returns:
        the flipped maps, same shape and type.
    """
    if maps.shape[-3] != NUM_MAPS:
        raise ValueError(f"flip_pose_maps: expected {NUM_MAPS} channels at dim -3, got "
                         f"shape {tuple(maps.shape)}")
    if isinstance(maps, torch.Tensor):
        perm = torch.from_numpy(FLIP_PERMUTATION.copy()).to(maps.device)
        sign = torch.from_numpy(FLIP_SIGN.copy()).to(device=maps.device, dtype=maps.dtype)
        out = maps.index_select(maps.dim() - 3, perm) * sign.view(-1, 1, 1)
        return torch.flip(out, dims=[-1])
    out = np.take(maps, FLIP_PERMUTATION, axis=-3) * FLIP_SIGN.reshape(-1, 1, 1)
    return np.ascontiguousarray(out[..., ::-1]).astype(maps.dtype, copy=False)
