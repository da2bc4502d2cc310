"""Where precomputed pose data lives on disk (written by ``videoreid pose``).

Layout (default: inside the resolved dataset folder, e.g. ``data/mars/``)::

    <dataset folder>/pose_cache/pose_meta.json                              settings (below)
    <dataset folder>/pose_cache/<frame path relative to the anchor>.npy      kind "maps"
    <dataset folder>/pose_cache/<frame dir>/<frame stem>_keypoints.json     kind "keypoints"

The *anchor* is the folder frame paths are taken relative to (the cache's parent unless the
meta file says otherwise). Kind ``maps``: one ``(57, h, w)`` float16 ``.npy`` per frame in
the channel order of :mod:`~videoreid.modalities.pose.layout`. Kind ``keypoints``: OpenPose
JSON per frame, as OpenPose itself would write beside the frame.

``pose_meta.json``::

    {"format": "videoreid-pose-cache", "version": 1, "kind": "maps" | "keypoints",
     "source": {"name": "keypoints" | "openpose", ...}, "stride": 8, "sigma": 7.0,
     "paf_threshold": 1.0, "anchor": ".."}

Files are written atomically, so an existing file is whole.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from videoreid.modalities.cache_paths import absolute, find_cache_dir
from videoreid.modalities.pose.keypoints import keypoints_path
from videoreid.modalities.pose.layout import NUM_MAPS
from videoreid.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["CACHE_DIRNAME", "META_NAME", "KINDS", "PoseCache", "PoseCacheError", "find_pose_cache"]

CACHE_DIRNAME = "pose_cache"
META_NAME = "pose_meta.json"
META_FORMAT = "videoreid-pose-cache"
META_VERSION = 1
KINDS = ("maps", "keypoints")


class PoseCacheError(RuntimeError):
    """A pose cache is absent, inconsistent, or a file in it is missing or corrupt."""


class PoseCache:
    """Paths, settings and I/O of one pose cache.

    Args:
        cache_dir: the cache folder (holds ``pose_meta.json``).
        anchor: folder frame paths are relative to (default: ``cache_dir``'s parent).
        kind: ``"maps"`` or ``"keypoints"``.
        source: description of what produced the data (``{"name": ..., ...}``).
        stride, sigma, paf_threshold: map settings (kind ``maps``).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        anchor: str | os.PathLike[str] | None = None,
        *,
        kind: str,
        source: dict[str, Any],
        stride: int = 8,
        sigma: float = 7.0,
        paf_threshold: float = 1.0,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"pose cache kind must be one of {KINDS}, got {kind!r}")
        self.cache_dir = Path(absolute(cache_dir))
        self.anchor = Path(absolute(anchor)) if anchor is not None else self.cache_dir.parent
        self.kind = kind
        self.source = dict(source)
        self.stride, self.sigma, self.paf_threshold = int(stride), float(sigma), float(paf_threshold)

    def __repr__(self) -> str:
        return f"PoseCache({str(self.cache_dir)!r}, kind={self.kind!r}, source={self.source})"

    # ------------------------------------------------------------------ metadata
    def meta(self) -> dict[str, Any]:
        return {"format": META_FORMAT, "version": META_VERSION, "kind": self.kind,
                "source": self.source, "stride": self.stride, "sigma": self.sigma,
                "paf_threshold": self.paf_threshold,
                "anchor": os.path.relpath(self.anchor, self.cache_dir),
                "channels": "19 heatmaps (COCO-18 + background), 38 PAFs (network order, x,y)"}

    def write_meta(self, overwrite: bool = False) -> None:
        """Create the folder and ``pose_meta.json``; an existing cache must match."""
        path = self.cache_dir / META_NAME
        if path.is_file() and not overwrite:
            have = json.loads(path.read_text())
            want = self.meta()
            keys = ("kind", "source", "stride", "sigma", "paf_threshold")
            diff = {k: (have.get(k), want[k]) for k in keys if have.get(k) != want[k]}
            if diff:
                raise PoseCacheError(f"{path} was written with other settings {diff} "
                                     "(have, want); pass overwrite to replace it")
            return
        atomic_write_json(path, self.meta())

    @classmethod
    def open(cls, cache_dir: str | os.PathLike[str],
             anchor: str | os.PathLike[str] | None = None) -> PoseCache:
        """Open an existing cache from its ``pose_meta.json``."""
        cache_dir = Path(cache_dir)
        path = cache_dir / META_NAME
        if not path.is_file():
            raise PoseCacheError(f"no pose cache at {cache_dir} ({META_NAME} missing); run "
                                 "`videoreid pose --dataset NAME --root DIR` first")
        meta = json.loads(path.read_text())
        if meta.get("format") != META_FORMAT or meta.get("version") != META_VERSION:
            raise PoseCacheError(f"{path}: not a version-{META_VERSION} {META_FORMAT} file")
        if anchor is None:
            anchor = cache_dir / meta.get("anchor", "..")
        return cls(cache_dir, anchor, kind=meta["kind"], source=meta.get("source", {}),
                   stride=meta.get("stride", 8), sigma=meta.get("sigma", 7.0),
                   paf_threshold=meta.get("paf_threshold", 1.0))

    # ------------------------------------------------------------------ paths
    def relative(self, frame: str | os.PathLike[str]) -> Path:
        rel = os.path.relpath(absolute(frame), self.anchor)
        if rel.startswith(".."):
            raise PoseCacheError(f"frame {frame} is outside the cache's anchor {self.anchor}")
        return Path(rel)

    def path_for(self, frame: str | os.PathLike[str]) -> Path:
        """The cache file of ``frame`` (``.npy`` maps or ``_keypoints.json``)."""
        rel = self.relative(frame)
        if self.kind == "maps":
            return self.cache_dir / rel.with_suffix(".npy")
        return keypoints_path(self.cache_dir / rel)

    # ------------------------------------------------------------------ I/O
    def read_maps(self, frame: str | os.PathLike[str]) -> np.ndarray:
        """``(57, h, w)`` float32 maps of ``frame``."""
        path = self.path_for(frame)
        try:
            maps = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise PoseCacheError(f"pose map file {path} for frame {frame} is missing from the "
                                 f"cache {self.cache_dir}; run `videoreid pose` again") from None
        except (ValueError, OSError) as e:
            raise PoseCacheError(f"corrupt pose map file {path} ({e}); recompute it with "
                                 "`videoreid pose ... --overwrite`") from None
        if maps.ndim != 3 or maps.shape[0] != NUM_MAPS:
            raise PoseCacheError(f"{path}: expected ({NUM_MAPS}, h, w) maps, got {maps.shape}")
        return maps.astype(np.float32)

    def write_maps(self, frame: str | os.PathLike[str], maps: np.ndarray) -> None:
        if maps.ndim != 3 or maps.shape[0] != NUM_MAPS:
            raise ValueError(f"expected ({NUM_MAPS}, h, w) maps, got {maps.shape}")
        buf = io.BytesIO()
        np.save(buf, np.asarray(maps, dtype=np.float16), allow_pickle=False)
        atomic_write_bytes(self.path_for(frame), buf.getvalue())

    def write_keypoints_text(self, frame: str | os.PathLike[str], text: str) -> None:
        atomic_write_text(self.path_for(frame), text)


def find_pose_cache(frame: str | os.PathLike[str], stop: str | os.PathLike[str] | None = None,
                    dirname: str = CACHE_DIRNAME) -> PoseCache | None:
    """The nearest ``<ancestor>/pose_cache/pose_meta.json`` above ``frame``, opened.

    Ancestors are searched from the frame's folder upwards, up to and including ``stop``
    (default: the filesystem root).
    """
    found = find_cache_dir(frame, dirname, META_NAME, stop)
    return PoseCache.open(found) if found is not None else None
