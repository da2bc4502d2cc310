"""The ``pose`` modality of the clip loaders: 57 OpenPose maps aligned with sampled frames.

``PoseLoader(tracklet, indices (T,)) -> (T, 57, h, w)`` float32 in the channel order of
:mod:`~videoreid.modalities.pose.layout`, at ``1/stride`` of the stored frame size (16 × 8
for 128 × 64 frames at OpenPose's stride 8); ``ClipTransform`` resizes the maps with the
frames, keeping their resolution relative to the image.

Sources (``source``):

- ``"keypoints"`` (default): read each frame's OpenPose JSON — ``<frame stem>_keypoints.json``
  beside the frame (as OpenPose and the synthetic generator write it), else in a
  ``pose_cache/`` of kind ``keypoints`` found above the frame (written by
  ``videoreid pose --mode keypoints``) — and render the maps exactly as OpenPose's training
  targets (:func:`~videoreid.modalities.pose.render.render_pose_maps`). Rendering is
  vectorised: a few milliseconds per 15-frame clip of 128 × 64 frames, ~10-20 ms at
  256 × 128 (one busy core).
- ``"maps"``: read maps precomputed by ``videoreid pose --mode maps`` (e.g. the OpenPose
  network's outputs) from the ``pose_cache/`` of kind ``maps`` found above the frame.

The third source, the OpenPose network fine-tuned inside the model, is not a loader: it is
``AlignNet(pose_source="openpose")`` (see :mod:`videoreid.models.alignnet`), which needs no
``pose`` modality at all.

Horizontal flip. A mirrored image needs mirrored maps *and* left/right channels swapped and
PAF x components negated (:func:`~videoreid.modalities.pose.layout.flip_pose_maps`).
``engine.builders.build_transforms`` gives ``ClipTransform`` this rule
(``FLIP_PERMUTATION``, ``FLIP_SIGN``) whenever ``pose`` is among ``data.modalities``.

Missing data. Keypoints OpenPose did not find (``0, 0, 0``) give empty maps — that is part
of the format. A missing *file* is an error naming it (``on_missing="error"``), or, with
``on_missing="empty"``, the frame gets the maps of "nobody detected" (empty heatmaps,
background 1, zero PAFs); missing files are counted in :attr:`PoseLoader.missing` and
reported with ``logging.warning``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from videoreid.modalities.pose.cache import PoseCache, PoseCacheError, find_pose_cache
from videoreid.modalities.pose.keypoints import KeypointFileError, keypoints_path, read_keypoints
from videoreid.modalities.pose.layout import NUM_KEYPOINTS, NUM_MAPS
from videoreid.modalities.pose.render import map_size, render_pose_maps

log = logging.getLogger(__name__)

__all__ = ["SOURCES", "PoseLoader", "build_loader", "frame_size"]

SOURCES = ("keypoints", "maps")
ON_MISSING = ("error", "empty")
PEOPLE = ("all", "best")


def frame_size(frame: str | os.PathLike[str]) -> tuple[int, int]:
    """``(H, W)`` of an image file, from its header only."""
    try:
        with Image.open(frame) as im:
            w, h = im.size
    except (OSError, ValueError) as e:
        raise OSError(f"cannot read the size of frame {frame}: {e}") from None
    return int(h), int(w)


class PoseLoader:
    """Modality callable ``(tracklet, indices) -> (T, 57, h, w)`` float32 (module docstring).

    Args:
        root: dataset root of the config (upper bound of the cache search; messages).
        source: ``"keypoints"`` (render from OpenPose JSON) or ``"maps"`` (cached maps).
        stride: frame pixels per map cell (OpenPose: 8).
        sigma: heatmap Gaussian std in frame pixels (OpenPose: 7).
        paf_threshold: PAF half-width in cells (OpenPose: 1).
        min_confidence: keypoints with confidence ``<=`` this are missing.
        people: ``"all"`` renders every detected person (what OpenPose's maps show for the
            crop) or ``"best"`` only the one with the largest summed confidence.
        cache_dir: an explicit ``pose_cache`` folder (else discovered above each frame).
        on_missing: ``"error"`` or ``"empty"`` for a missing keypoint file (see module doc).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        source: str = "keypoints",
        stride: int = 8,
        sigma: float = 7.0,
        paf_threshold: float = 1.0,
        min_confidence: float = 0.0,
        people: str = "all",
        cache_dir: str | os.PathLike[str] | None = None,
        on_missing: str = "error",
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"pose source must be one of {SOURCES}, got {source!r} (the "
                             "OpenPose network runs inside the model: model.args.pose_source)")
        if on_missing not in ON_MISSING:
            raise ValueError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
        if people not in PEOPLE:
            raise ValueError(f"people must be one of {PEOPLE}, got {people!r}")
        if int(stride) < 1 or sigma <= 0 or paf_threshold < 0:
            raise ValueError(f"need stride >= 1, sigma > 0, paf_threshold >= 0; got {stride}, "
                             f"{sigma}, {paf_threshold}")
        self.root = Path(root) if root is not None else None
        self.source = source
        self.stride, self.sigma = int(stride), float(sigma)
        self.paf_threshold, self.min_confidence = float(paf_threshold), float(min_confidence)
        self.people = people
        self.on_missing = on_missing
        self._fixed = PoseCache.open(cache_dir) if cache_dir is not None else None
        self._by_dir: dict[str, PoseCache | None] = {}
        self.missing = 0

    def __repr__(self) -> str:
        return (f"PoseLoader(source={self.source!r}, stride={self.stride}, sigma={self.sigma}, "
                f"paf_threshold={self.paf_threshold}, people={self.people!r})")

    # ------------------------------------------------------------------ lookup
    def cache_for(self, frame: str | os.PathLike[str]) -> PoseCache | None:
        """The cache serving ``frame`` (explicit, or discovered and memoised per folder)."""
        if self._fixed is not None:
            return self._fixed
        key = os.path.dirname(os.path.abspath(os.fspath(frame)))
        if key not in self._by_dir:
            self._by_dir[key] = find_pose_cache(frame, stop=self.root)
        return self._by_dir[key]

    def _hint(self) -> str:
        root = self.root if self.root is not None else "DATASET_ROOT"
        return (f"run OpenPose with --write_json beside the frames, or `videoreid pose --dataset "
                f"NAME --root {root} --source openpose --weights body_pose_model.pth`, or set "
                "data.modality_args.pose.on_missing=empty")

    def keypoints(self, frame: str | os.PathLike[str]) -> np.ndarray:
        """``(P, 18, 3)`` keypoints of one frame (see the module docstring for the lookup)."""
        beside = keypoints_path(frame)
        if beside.is_file():
            kp = read_keypoints(beside)
        else:
            cache = self.cache_for(frame)
            path = cache.path_for(frame) if cache is not None and cache.kind == "keypoints" \
                else None
            if path is not None and path.is_file():
                kp = read_keypoints(path)
            elif self.on_missing == "error":
                raise KeypointFileError(f"no keypoint file for frame {frame}: neither {beside} "
                                        f"nor a pose_cache of kind 'keypoints' above it; "
                                        f"{self._hint()}")
            else:
                self.missing += 1
                if self.missing & (self.missing - 1) == 0:  # 1, 2, 4, 8, ...
                    log.warning("no keypoint file for %s (%d frame(s) so far); using empty "
                                "maps", frame, self.missing)
                kp = np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
        if self.people == "best" and len(kp) > 1:
            kp = kp[[int(np.argmax(kp[..., 2].sum(axis=1)))]]
        return kp

    # ------------------------------------------------------------------ loading
    def __call__(self, tracklet: Any, indices: np.ndarray) -> np.ndarray:
        """Maps of the frames ``indices`` of ``tracklet`` → ``(T, 57, h, w)`` float32."""
        frames: Sequence[Any] = tracklet.frames
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(frames)):
            raise IndexError(f"frame indices {indices.tolist()} out of range for a tracklet of "
                             f"{len(frames)} frames")
        uniq, inverse = np.unique(indices, return_inverse=True)
        if self.source == "maps":
            maps = [self._cached_maps(frames[int(j)]) for j in uniq]
        else:
            maps = self._render([frames[int(j)] for j in uniq])
        shapes = {m.shape for m in maps}
        if len(shapes) > 1:
            raise ValueError(f"pose maps of tracklet {frames[0]} have different sizes "
                             f"{sorted(shapes)}; its frames must share one size")
        return np.stack([maps[k] for k in inverse.reshape(-1)]).astype(np.float32, copy=False)

    def _cached_maps(self, frame: Any) -> np.ndarray:
        cache = self.cache_for(frame)
        if cache is None or cache.kind != "maps":
            raise PoseCacheError(f"no pose_cache of kind 'maps' above frame {frame}; run "
                                 "`videoreid pose --dataset NAME --root DIR --mode maps` first "
                                 "or use data.modality_args.pose.source=keypoints")
        return cache.read_maps(frame)

    def _render(self, frames: Sequence[Any]) -> list[np.ndarray]:
        """Render frames, one vectorised call per distinct frame size."""
        kps = [self.keypoints(f) for f in frames]
        sizes = [frame_size(f) for f in frames]
        out: list[np.ndarray | None] = [None] * len(frames)
        for size in set(sizes):
            idx = [i for i, s in enumerate(sizes) if s == size]
            p = max((len(kps[i]) for i in idx), default=0)
            batch = np.zeros((len(idx), p, NUM_KEYPOINTS, 3), np.float32)
            for r, i in enumerate(idx):
                batch[r, :len(kps[i])] = kps[i]
            maps = render_pose_maps(batch, size, self.stride, self.sigma, self.paf_threshold,
                                    self.min_confidence)
            for r, i in enumerate(idx):
                out[i] = maps[r]
        assert all(m is not None and m.shape[0] == NUM_MAPS for m in out)
        return out  # type: ignore[return-value]

    def output_size(self, frame_hw: Sequence[int]) -> tuple[int, int]:
        """``(h, w)`` of the maps for frames of ``frame_hw``."""
        return map_size(frame_hw, self.stride)


def build_loader(root: str | os.PathLike[str], height: int, width: int, **kwargs: Any) -> PoseLoader:
    """Entry of ``videoreid.engine.builders.MODALITY_LOADERS["pose"]``.

    ``height``/``width`` (the network input size) are not used: maps are made at
    ``1/stride`` of the stored frames and resized with them by ``ClipTransform``. ``kwargs``
    are ``data.modality_args.pose`` (see :class:`PoseLoader`).
    """
    del height, width
    return PoseLoader(root=root, **kwargs)
