"""Where cached flow lives on disk, and the cache's metadata file.

Layout (default: inside the resolved dataset folder, e.g. ``data/mars/``)::

    <dataset folder>/flow_cache/flow_meta.json                          settings (below)
    <dataset folder>/flow_cache/<frame path relative to the anchor>.png  one flow per frame

The *anchor* is the folder frame paths are taken relative to: the dataset folder, i.e. the
cache's parent by default. The flow file of frame ``bbox_train/0001/0001C1T0001F001.jpg`` is
``flow_cache/bbox_train/0001/0001C1T0001F001.png`` (the image suffix is replaced). The file of
frame ``t`` holds the forward flow ``F^t`` from frame ``t`` to frame ``t + 1`` of its tracklet
(the paper's ``(I^{t-1}, I^t) → F^{t-1}``), so the last frame of a tracklet has no file (see
``loader`` for what it gets). The cache may live elsewhere (``cache_dir``), as long as its
meta file records the anchor (relative to the cache folder) or the reader is given it.

``flow_meta.json``::

    {"format": "videoreid-flow-cache", "version": 1,
     "codec": {"format": "png8-la", "step": 0.25, "zero": 128},
     "estimator": {"name": "dis", "preset": "medium", ...},
     "scale": 1.0,          # flow map size / frame size; displacements in px of the map
     "anchor": "..",        # relative to the cache folder
     "pairs": "file of frame t = flow from frame t to t+1 of its tracklet"}

A cache is complete for a tracklet when the files of its frames ``0..T-2`` all exist; files are
written atomically, so existing files are whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videoreid.modalities.cache_paths import absolute, find_cache_dir
from videoreid.modalities.flow.codec import DEFAULT_STEP, FORMAT, ZERO, read_flow, write_flow
from videoreid.utils.io import atomic_write_json

__all__ = ["CACHE_DIRNAME", "META_NAME", "FlowCache", "FlowCacheError", "find_cache"]

CACHE_DIRNAME = "flow_cache"
META_NAME = "flow_meta.json"
META_FORMAT = "videoreid-flow-cache"
META_VERSION = 1


class FlowCacheError(RuntimeError):
    """A flow cache is absent, inconsistent or was built with other settings."""


class FlowCache:
    """Paths, settings and I/O of one flow cache.

    Args:
        cache_dir: the cache folder (holds ``flow_meta.json``).
        anchor: folder that frame paths are relative to (default: ``cache_dir``'s parent).
        estimator: the estimator's ``spec()``.
        step: quantisation step of the PNG codec, px per level.
        scale: flow map size relative to the frame size.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        anchor: str | os.PathLike[str] | None = None,
        *,
        estimator: dict[str, Any],
        step: float = DEFAULT_STEP,
        scale: float = 1.0,
    ) -> None:
        if step <= 0:
            raise ValueError(f"flow quantisation step must be > 0, got {step}")
        if not 0 < scale <= 1:
            raise ValueError(f"flow scale must be in (0, 1], got {scale}")
        self.cache_dir = Path(absolute(cache_dir))
        self.anchor = Path(absolute(anchor)) if anchor is not None else self.cache_dir.parent
        self.estimator = dict(estimator)
        self.step = float(step)
        self.scale = float(scale)

    def __repr__(self) -> str:
        return (f"FlowCache({str(self.cache_dir)!r}, anchor={str(self.anchor)!r}, "
                f"estimator={self.estimator.get('name')!r}, step={self.step}, scale={self.scale})")

    # ------------------------------------------------------------------ metadata
    @property
    def meta_path(self) -> Path:
        return self.cache_dir / META_NAME

    def meta(self) -> dict[str, Any]:
        """The content of ``flow_meta.json`` for these settings."""
        return {
            "format": META_FORMAT, "version": META_VERSION,
            "codec": {"format": FORMAT, "step": self.step, "zero": ZERO},
            "estimator": self.estimator, "scale": self.scale,
            "anchor": os.path.relpath(self.anchor, self.cache_dir),
            "pairs": "file of frame t = forward flow from frame t to t+1 of its tracklet "
                     "(dx, dy) in px of the flow map; the last frame of a tracklet has no file",
        }

    def settings(self) -> dict[str, Any]:
        """What must agree between a cache on disk and a request to extend it."""
        m = self.meta()
        return {"codec": m["codec"], "estimator": m["estimator"], "scale": m["scale"]}

    def save_meta(self, overwrite: bool = False) -> None:
        """Write ``flow_meta.json``; an existing one with other settings is an error unless
        ``overwrite`` (whose caller recomputes every file it needs)."""
        if self.meta_path.is_file() and not overwrite:
            have = FlowCache.open(self.cache_dir, anchor=self.anchor)
            if have.settings() != self.settings():
                raise FlowCacheError(
                    f"{self.meta_path} was built with {have.settings()}, not the requested "
                    f"{self.settings()}; use --overwrite (overwrite=True) to recompute it, or "
                    "another --cache-dir")
            return
        atomic_write_json(self.meta_path, self.meta())

    @classmethod
    def open(cls, cache_dir: str | os.PathLike[str],
             anchor: str | os.PathLike[str] | None = None) -> FlowCache:
        """Open an existing cache from its ``flow_meta.json``.

        Raises:
            FlowCacheError: no or an unreadable meta file (names it).
        """
        cache_dir = Path(cache_dir)
        path = cache_dir / META_NAME
        if not path.is_file():
            raise FlowCacheError(f"no flow cache at {cache_dir}: {path} is missing; compute it "
                                 "with `videoreid flow --dataset NAME --root DATASET_ROOT`")
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise FlowCacheError(f"cannot read flow cache metadata {path}: {e}") from e
        if meta.get("format") != META_FORMAT or meta.get("version") != META_VERSION:
            raise FlowCacheError(f"{path} is not a version-{META_VERSION} videoreid flow cache "
                                 f"(format={meta.get('format')!r}, version={meta.get('version')!r})")
        codec = meta.get("codec", {})
        if codec.get("format") != FORMAT or codec.get("zero") != ZERO:
            raise FlowCacheError(f"{path}: unsupported flow codec {codec}")
        if anchor is None:
            anchor = cache_dir / meta.get("anchor", "..")
        return cls(cache_dir, anchor, estimator=meta["estimator"], step=float(codec["step"]),
                   scale=float(meta.get("scale", 1.0)))

    # ------------------------------------------------------------------ paths
    def path_for(self, frame: str | os.PathLike[str]) -> Path:
        """The flow file of ``frame`` (holding the flow from it to the next frame).

        Raises:
            FlowCacheError: ``frame`` is not under the anchor folder.
        """
        rel = os.path.relpath(absolute(frame), self.anchor)
        if rel.startswith(os.pardir + os.sep) or rel == os.pardir or os.path.isabs(rel):
            raise FlowCacheError(f"frame {frame} is not under the flow cache's anchor folder "
                                 f"{self.anchor} (cache {self.cache_dir}); pass the dataset "
                                 "folder the cache was built for as anchor")
        return self.cache_dir / (os.path.splitext(rel)[0] + ".png")

    def flow_paths(self, frames: Sequence[str | os.PathLike[str]]) -> list[Path]:
        """Files of frames ``0..T-2`` (the last frame has none)."""
        return [self.path_for(f) for f in list(frames)[:-1]]

    def missing(self, frames: Sequence[str | os.PathLike[str]]) -> list[Path]:
        """Flow files of the tracklet that do not exist yet."""
        return [p for p in self.flow_paths(frames) if not p.is_file()]

    def is_complete(self, frames: Sequence[str | os.PathLike[str]]) -> bool:
        return not self.missing(frames)

    # ------------------------------------------------------------------ I/O
    def read(self, frame: str | os.PathLike[str]) -> np.ndarray:
        """Flow of ``frame`` → ``(2, h, w)`` float32 (px of the flow map)."""
        return read_flow(self.path_for(frame), self.step)

    def write(self, frame: str | os.PathLike[str], flow: np.ndarray) -> Path:
        """Write the flow of ``frame`` atomically; returns the file."""
        path = self.path_for(frame)
        write_flow(path, flow, self.step)
        return path


def find_cache(frame: str | os.PathLike[str], stop: str | os.PathLike[str] | None = None,
               dirname: str = CACHE_DIRNAME) -> FlowCache | None:
    """The nearest ``<ancestor>/flow_cache/flow_meta.json`` above ``frame``, opened.

    Ancestors are searched from the frame's folder upwards, up to and including ``stop``
    (default: the filesystem root).
    """
    found = find_cache_dir(frame, dirname, META_NAME, stop)
    return FlowCache.open(found) if found is not None else None
