"""Feature stores: one embedding per track, with camera, track id and frame range.

A store is a feature file of :mod:`videoreid.evaluation.features` (so ``videoreid
evaluate-features`` reads it unchanged) with extra per-row keys:

================  ===========================  ============================================
key               dtype / shape                meaning
================  ===========================  ============================================
``track_ids``     int64 ``(N,)``               the tracker's track id (−1 if none)
``frame_start``   int64 ``(N,)``               first frame of the track (1-based, MOT)
``frame_end``     int64 ``(N,)``               last frame of the track
``num_frames``    int64 ``(N,)``               crops embedded (after skips and the cap)
``sources``       unicode ``(N,)``             video file / crop folder the track came from
================  ===========================  ============================================

``meta`` (JSON) holds ``model_sha256`` (the model package's hash, see
:func:`videoreid.inference.package.package_hash`), ``model``, ``metric``, ``normalize``, and
what was skipped while reading tracks. ``pids`` are identity labels when known (a ground-truth
track file: ``--labels track``), else −1 (unknown; protocols ignore such rows).

Files are ``.npz`` (written atomically). ``.parquet`` is accepted when ``pyarrow`` is
installed (optional): one row per track, ``feature`` as a list column, ``meta`` in the
schema metadata.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videoreid.evaluation.features import FeatureSet
from videoreid.utils.io import atomic_path, atomic_save

__all__ = ["EXTRA_KEYS", "FeatureStore", "concat_stores", "load_store"]

EXTRA_KEYS: tuple[str, ...] = ("track_ids", "frame_start", "frame_end", "num_frames", "sources")


@dataclass
class FeatureStore:
    """Features plus per-track metadata.

    Attributes:
        features: the :class:`~videoreid.evaluation.features.FeatureSet` (labels, cameras,
            subsets, ``meta``).
        track_ids, frame_start, frame_end, num_frames: ``(N,)`` int64.
        sources: ``(N,)`` str.
    """

    features: FeatureSet
    track_ids: np.ndarray
    frame_start: np.ndarray
    frame_end: np.ndarray
    num_frames: np.ndarray
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))

    def __post_init__(self) -> None:
        n = len(self.features)
        for k in ("track_ids", "frame_start", "frame_end", "num_frames"):
            setattr(self, k, np.asarray(getattr(self, k)).astype(np.int64, copy=False))
        self.sources = np.asarray(self.sources).astype(str)
        if self.sources.shape == (0,) and n:
            self.sources = np.array([""] * n)
        for k in EXTRA_KEYS:
            if getattr(self, k).shape != (n,):
                raise ValueError(f"FeatureStore: {k!r} must have shape ({n},), "
                                 f"got {getattr(self, k).shape}")

    def __len__(self) -> int:
        return len(self.features)

    @property
    def model_sha256(self) -> str:
        return str(self.features.meta.get("model_sha256", ""))

    def select(self, rows: np.ndarray) -> FeatureStore:
        """A new store holding ``rows`` (indices or boolean mask), in that order."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        fs = self.features
        sub = FeatureSet(fs.features[rows], fs.pids[rows], fs.camids[rows],
                         fs.tracklet_ids[rows], fs.subsets[rows], fs.dataset, fs.split,
                         dict(fs.meta), fs.protocol)
        return FeatureStore(sub, self.track_ids[rows], self.frame_start[rows],
                            self.frame_end[rows], self.num_frames[rows], self.sources[rows])

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``.npz`` (or ``.parquet`` with pyarrow) atomically."""
        path = Path(path)
        if path.suffix == ".parquet":
            return self._save_parquet(path)
        fs = self.features
        fs.validate()
        tmp_fs = Path(str(path) + ".part.npz")
        # reuse the feature-file writer for the base keys, then add ours in one archive
        fs.save(tmp_fs)
        try:
            with np.load(tmp_fs, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        finally:
            tmp_fs.unlink(missing_ok=True)
        arrays.update({k: getattr(self, k) for k in EXTRA_KEYS})

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_save(path, write)
        return path

    def _save_parquet(self, path: Path) -> Path:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError(f"{path}: writing Parquet needs pyarrow (pip install pyarrow); "
                              "or use a .npz file") from e
        fs = self.features
        table = pa.table({
            "feature": list(fs.features), "pid": fs.pids, "camid": fs.camids,
            "tracklet_id": fs.tracklet_ids, "subset": fs.subsets,
            **{k: getattr(self, k) for k in EXTRA_KEYS},
        })
        info = {"dataset": fs.dataset, "split": fs.split, "protocol": fs.protocol,
                "meta": fs.meta}
        table = table.replace_schema_metadata({"videoreid": json.dumps(info, default=str)})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path


def _load_parquet(path: Path) -> FeatureStore:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from e
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"videoreid")
    if raw is None:
        raise ValueError(f"{path}: not a videoreid feature store (no 'videoreid' metadata)")
    info = json.loads(raw)
    cols = table.to_pydict()
    feats = np.asarray(cols["feature"], dtype=np.float32).reshape(len(cols["pid"]), -1)
    fs = FeatureSet(feats, cols["pid"], cols["camid"], cols["tracklet_id"], cols["subset"],
                    info["dataset"], info["split"], info["meta"], info["protocol"])
    return FeatureStore(fs, *(np.asarray(cols[k]) for k in EXTRA_KEYS))


def load_store(path: str | os.PathLike[str]) -> FeatureStore:
    """Read a store; a plain feature file (no track keys) gets ``track_ids = −1`` etc.

    Raises:
        FileNotFoundError / ValueError: naming the file and what was expected.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        return _load_parquet(path)
    fs = FeatureSet.load(path)
    n = len(fs)
    with np.load(path, allow_pickle=False) as z:
        extra = {k: z[k] for k in EXTRA_KEYS if k in z.files}
    defaults = {"track_ids": np.full(n, -1), "frame_start": np.full(n, -1),
                "frame_end": np.full(n, -1), "num_frames": np.full(n, -1),
                "sources": np.array([""] * n)}
    try:
        return FeatureStore(fs, **{k: extra.get(k, defaults[k]) for k in EXTRA_KEYS})
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def concat_stores(stores: Sequence[FeatureStore], names: Sequence[str] = ()) -> FeatureStore:
    """Rows of several stores of the same model, in order.

    Raises:
        ValueError: the stores come from different models (``model_sha256``) or have
            different feature sizes, or tracklet ids collide.
    """
    if not stores:
        raise ValueError("no feature stores given")
    names = list(names) or [f"store {i}" for i in range(len(stores))]
    first = stores[0]
    for s, name in zip(stores[1:], names[1:], strict=True):
        if s.model_sha256 != first.model_sha256:
            raise ValueError(f"{name} was embedded by model {s.model_sha256[:12] or '?'}…, "
                             f"{names[0]} by {first.model_sha256[:12] or '?'}…; features of "
                             "different models cannot be compared")
        if s.features.features.shape[1] != first.features.features.shape[1]:
            raise ValueError(f"{name}: feature size {s.features.features.shape[1]} != "
                             f"{first.features.features.shape[1]} of {names[0]}")
    fss = [s.features for s in stores]
    meta: dict[str, Any] = dict(first.features.meta)
    fs = FeatureSet(
        np.concatenate([f.features for f in fss]), np.concatenate([f.pids for f in fss]),
        np.concatenate([f.camids for f in fss]), np.concatenate([f.tracklet_ids for f in fss]),
        np.concatenate([f.subsets for f in fss]), first.features.dataset, first.features.split,
        meta, first.features.protocol)
    return FeatureStore(fs, *(np.concatenate([getattr(s, k) for s in stores])
                              for k in EXTRA_KEYS))
