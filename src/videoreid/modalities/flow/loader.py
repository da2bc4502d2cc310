"""The ``flow`` modality of the clip loaders: cached flow aligned with sampled frames.

``FlowLoader(tracklet, indices (T,)) -> (T, 2, h, w)`` float32, entry ``i`` being the forward
flow ``F^{indices[i]}`` from that frame to the next frame of the tracklet, ``(dx, dy)`` in
pixels of the flow map. The map has the cache's ``scale`` times the frame size (1.0 by
default: full resolution); ``ClipTransform`` resizes it with the frames (rescaling the
displacements) and negates ``dx`` on a horizontal flip.

Last frame. Frame ``T-1`` of a tracklet has no successor, so no flow; it gets the flow of
frame ``T-2`` (the motion just before it — a person's motion is smooth over one frame, and a
zero map would tell the flow stream that the person stopped). A one-frame tracklet gets zeros.
The same rule applies to repeat-padded clips of short tracklets, so padding repeats flows
exactly as it repeats frames.

Cache discovery. With ``cache_dir=None`` the loader looks for ``flow_cache/flow_meta.json``
in each frame's folder and its parents up to ``root`` (memoised per folder), so the cache
written by ``videoreid flow`` into the dataset folder is found whether the config's
``data.root`` is the parent root or the dataset folder. A missing cache or file is an
error naming the file and the command to run; with ``on_missing="compute"`` the flow is
estimated on the fly instead (with the cache's recorded estimator when a cache exists,
else ``estimator``/``estimator_args``) and nothing is written. A corrupt file is always an
error (recompute it with ``videoreid flow ... --overwrite``).

Prefer a precomputed cache to ``on_missing="compute"`` in training: on-the-fly DIS costs ~5x
the cache read per clip, and DIS run in a main process that also runs torch makes a later
``fork`` of DataLoader workers hang in their ``cv2.setNumThreads`` call (observed with
OpenCV 5.0 here; ``videoreid flow`` itself uses spawned workers).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from videoreid.modalities.flow.cache import CACHE_DIRNAME, META_NAME, FlowCache, find_cache
from videoreid.modalities.flow.codec import FlowFileError
from videoreid.modalities.flow.compute import load_frame
from videoreid.modalities.flow.estimators import (
    FlowEstimator,
    build_estimator,
    estimator_from_spec,
)

__all__ = ["FlowLoader", "build_loader", "source_indices"]

ON_MISSING = ("error", "compute")


def source_indices(indices: np.ndarray, num_frames: int) -> np.ndarray:
    """The frame whose flow file serves each requested frame: ``min(i, T - 2)``.

    Returns ``-1`` everywhere for a one-frame tracklet (zero flow).
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= num_frames):
        raise IndexError(f"frame indices {indices.tolist()} out of range for a tracklet of "
                         f"{num_frames} frames")
    if num_frames < 2:
        return np.full_like(indices, -1)
    return np.minimum(indices, num_frames - 2)


class FlowLoader:
    """Modality callable ``(tracklet, indices) -> (T, 2, h, w)`` float32 (see module docstring).

    Args:
        root: dataset root of the config (upper bound of the cache search; messages).
        cache_dir: an explicit cache folder (else discovered beside the frames).
        anchor: folder the cache's frame paths are relative to (default: recorded in the
            cache's ``flow_meta.json``).
        on_missing: ``"error"`` or ``"compute"`` (estimate missing flow on the fly).
        estimator, estimator_args: estimator for ``"compute"`` when no cache exists.
        scale: flow map size (relative to the frames) for ``"compute"`` when no cache exists.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        anchor: str | os.PathLike[str] | None = None,
        on_missing: str = "error",
        estimator: str = "dis",
        estimator_args: dict[str, Any] | None = None,
        scale: float = 1.0,
    ) -> None:
        if on_missing not in ON_MISSING:
            raise ValueError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
        self.root = Path(root) if root is not None else None
        self.on_missing = on_missing
        self.estimator_spec = build_estimator(estimator, **(estimator_args or {})).spec()
        self.scale = float(scale)
        self._fixed = FlowCache.open(cache_dir, anchor) if cache_dir is not None else None
        if self._fixed is None and anchor is not None:
            raise ValueError("anchor is only meaningful with an explicit cache_dir")
        self._by_dir: dict[str, FlowCache | None] = {}
        self._estimators: dict[str, FlowEstimator] = {}

    def __repr__(self) -> str:
        where = self._fixed.cache_dir if self._fixed else f"<frames>/../{CACHE_DIRNAME}"
        return f"FlowLoader(cache={str(where)!r}, on_missing={self.on_missing!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_estimators"] = {}  # rebuilt lazily in each DataLoader worker
        return state

    # ------------------------------------------------------------------ lookup
    def cache_for(self, frame: str | os.PathLike[str]) -> FlowCache | None:
        """The cache serving ``frame`` (explicit, or discovered and memoised per folder)."""
        if self._fixed is not None:
            return self._fixed
        key = os.path.dirname(os.path.abspath(os.fspath(frame)))
        if key not in self._by_dir:
            self._by_dir[key] = find_cache(frame, stop=self.root)
        return self._by_dir[key]

    def _estimator(self, spec: dict[str, Any]) -> FlowEstimator:
        key = repr(sorted(spec.items()))
        if key not in self._estimators:
            self._estimators[key] = estimator_from_spec(spec)
        return self._estimators[key]

    def _missing_message(self, what: str, tracklet: Any) -> str:
        tid = tracklet.meta.get("tracklet_id") if hasattr(tracklet, "meta") else None
        root = self.root if self.root is not None else "DATASET_ROOT"
        return (f"{what} (tracklet {tid or tracklet.frames[0]}). Compute the flow cache first: "
                f"`videoreid flow --dataset NAME --root {root}`, or set "
                "data.modality_args.flow.on_missing=compute to estimate flow on the fly")

    # ------------------------------------------------------------------ loading
    def __call__(self, tracklet: Any, indices: np.ndarray) -> np.ndarray:
        """Flow of the frames ``indices`` of ``tracklet`` → ``(T, 2, h, w)`` float32."""
        frames: Sequence[Any] = tracklet.frames
        src = source_indices(indices, len(frames))
        if src.size and src[0] < 0:
            return self._zeros(frames[0], len(src))
        flows = {int(j): self._flow(tracklet, int(j)) for j in np.unique(src)}
        shapes = {f.shape for f in flows.values()}
        if len(shapes) > 1:
            raise ValueError(f"flow maps of tracklet {tracklet.frames[0]} have different sizes "
                             f"{sorted(shapes)}; its frames must share one size")
        return np.stack([flows[int(j)] for j in src])

    def _flow(self, tracklet: Any, j: int) -> np.ndarray:
        frame = tracklet.frames[j]
        cache = self.cache_for(frame)
        if cache is None:
            if self.on_missing == "error":
                where = self.root if self.root is not None else Path(frame).parent
                raise FlowFileError(self._missing_message(
                    f"no flow cache ({CACHE_DIRNAME}/{META_NAME}) found in the folders from "
                    f"{Path(frame).parent} up to {where} for frame {frame}", tracklet))
            return self._compute(tracklet, j, self.estimator_spec, self.scale)
        path = cache.path_for(frame)
        if not path.is_file():
            if self.on_missing == "error":
                raise FlowFileError(self._missing_message(
                    f"flow file {path} for frame {frame} is missing from the cache "
                    f"{cache.cache_dir}", tracklet))
            return self._compute(tracklet, j, cache.estimator, cache.scale)
        return cache.read(frame)

    def _compute(self, tracklet: Any, j: int, spec: dict[str, Any], scale: float) -> np.ndarray:
        a = load_frame(tracklet.frames[j], scale)
        b = load_frame(tracklet.frames[j + 1], scale)
        return self._estimator(spec)(a, b)

    def _zeros(self, frame: Any, n: int) -> np.ndarray:
        cache = self.cache_for(frame)
        scale = cache.scale if cache is not None else self.scale
        with Image.open(frame) as im:  # reads the header only
            w, h = im.size
        return np.zeros((n, 2, max(1, round(h * scale)), max(1, round(w * scale))), np.float32)


def build_loader(root: str | os.PathLike[str], height: int, width: int, **kwargs: Any) -> FlowLoader:
    """Entry of ``videoreid.engine.builders.MODALITY_LOADERS["flow"]``.

    ``height``/``width`` (the network input size) are not used: flow is returned at the
    cache's resolution and resized with the frames by ``ClipTransform``. ``kwargs`` are
    ``data.modality_args.flow`` (see :class:`FlowLoader`).
    """
    del height, width
    return FlowLoader(root=root, **kwargs)
