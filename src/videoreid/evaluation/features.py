"""Feature files: tracklet features with everything needed to evaluate them.

On-disk format (``.npz``, written atomically, read with ``allow_pickle=False``), format 1:

================  ===========================  ============================================
key               dtype / shape                meaning
================  ===========================  ============================================
``features``      float32 ``(N, D)``           one feature per tracklet
``pids``          int64 ``(N,)``               identity (test: original pid; −1 junk,
                                               0 MARS distractor)
``camids``        int64 ``(N,)``               0-based camera
``tracklet_ids``  unicode ``(N,)``             unique tracklet name within the dataset
``subsets``       unicode ``(N,)``             ``"query"``, ``"gallery"`` (or ``"train"``)
``dataset``       unicode scalar               dataset name, e.g. ``"mars"``
``split``         int64 scalar                 split index (0 for single-split datasets)
``protocol``      unicode scalar               default protocol (``""`` = dataset default)
``meta``          unicode scalar               JSON object: free-form provenance (model,
                                               checkpoint, clip plan, ...)
``format``        int64 scalar                 format version (1)
================  ===========================  ============================================

Row order is kept; for the MARS ``official`` protocol the gallery is all query and gallery
rows in file order, so writers should keep the official test-row order when exact tie
order matters. Multi-split datasets (iLIDS-VID, PRID2011) use one file per split.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videoreid.data.tracklet import ReIDSplit, Tracklet
from videoreid.utils.io import atomic_save

FORMAT_VERSION = 1
KEYS: tuple[str, ...] = (
    "features", "pids", "camids", "tracklet_ids", "subsets", "dataset", "split", "protocol", "meta", "format",
)
SUBSETS: tuple[str, ...] = ("train", "query", "gallery")


@dataclass
class FeatureSet:
    """Features of the tracklets of one split, with their labels.

    Attributes:
        features: ``(N, D)`` float32.
        pids: ``(N,)`` int64 identities.
        camids: ``(N,)`` int64 0-based cameras.
        tracklet_ids: ``(N,)`` str, unique.
        subsets: ``(N,)`` str, each one of ``SUBSETS``.
        dataset: dataset name.
        split: split index.
        meta: JSON-serialisable provenance.
        protocol: default evaluation protocol, ``""`` for the dataset's default.
    """

    features: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    tracklet_ids: np.ndarray
    subsets: np.ndarray
    dataset: str
    split: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    protocol: str = ""

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.pids = np.asarray(self.pids).astype(np.int64, copy=False)
        self.camids = np.asarray(self.camids).astype(np.int64, copy=False)
        self.tracklet_ids = np.asarray(self.tracklet_ids).astype(str)
        self.subsets = np.asarray(self.subsets).astype(str)
        self.split = int(self.split)
        self.validate()

    def __len__(self) -> int:
        return self.features.shape[0]

    def validate(self, source: str = "FeatureSet") -> None:
        """Raise ``ValueError`` (naming ``source``) if shapes or values are inconsistent."""
        if self.features.ndim != 2:
            raise ValueError(f"{source}: 'features' must be 2-D (N, D), got shape {self.features.shape}")
        n = self.features.shape[0]
        for name in ("pids", "camids", "tracklet_ids", "subsets"):
            a = getattr(self, name)
            if a.shape != (n,):
                raise ValueError(f"{source}: {name!r} must have shape ({n},) like 'features', got {a.shape}")
        if not np.isfinite(self.features).all():
            raise ValueError(f"{source}: 'features' contains NaN or inf")
        bad = sorted(set(np.unique(self.subsets).tolist()) - set(SUBSETS))
        if bad:
            raise ValueError(f"{source}: unknown subset names {bad}; expected {list(SUBSETS)}")
        if np.unique(self.tracklet_ids).shape[0] != n:
            raise ValueError(f"{source}: 'tracklet_ids' are not unique")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"{source}: 'dataset' must be a non-empty name")

    def indices(self, subset: str) -> np.ndarray:
        """Row indices of one subset, in file order."""
        return np.flatnonzero(self.subsets == subset)

    def describe(self) -> str:
        counts = ", ".join(f"{s} {int((self.subsets == s).sum())}" for s in SUBSETS if (self.subsets == s).any())
        return f"{self.dataset} split {self.split}: {len(self)} tracklets ({counts}), dim {self.features.shape[1]}"

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_split(
        cls,
        split: ReIDSplit,
        query_features: np.ndarray,
        gallery_features: np.ndarray,
        meta: dict[str, Any] | None = None,
    ) -> FeatureSet:
        """Query rows then gallery rows of ``split``, labels taken from its tracklets.

        Tracklet ids come from ``meta["tracklet_id"]`` (falling back to the first frame's
        path). Features are ``(len(split.query), D)`` and ``(len(split.gallery), D)``.
        """
        qf, gf = np.asarray(query_features), np.asarray(gallery_features)
        if qf.shape[0] != len(split.query) or gf.shape[0] != len(split.gallery):
            raise ValueError(
                f"features do not match {split.describe()}: {qf.shape[0]} query / {gf.shape[0]} gallery rows "
                f"for {len(split.query)} / {len(split.gallery)} tracklets"
            )
        tracks: list[Tracklet] = [*split.query, *split.gallery]
        ids = [str(t.meta.get("tracklet_id", t.frames[0] if t.frames else i)) for i, t in enumerate(tracks)]
        return cls(
            features=np.concatenate([qf, gf], axis=0),
            pids=np.array([t.pid for t in tracks], dtype=np.int64),
            camids=np.array([t.camid for t in tracks], dtype=np.int64),
            tracklet_ids=np.array(ids),
            subsets=np.array(["query"] * len(split.query) + ["gallery"] * len(split.gallery)),
            dataset=split.name,
            split=split.split_index,
            meta=dict(meta or {}),
            protocol=split.protocol or "",
        )

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the ``.npz`` file atomically (see the module docstring for the keys)."""
        self.validate()
        path = Path(path)
        arrays = {
            "features": self.features,
            "pids": self.pids,
            "camids": self.camids,
            "tracklet_ids": self.tracklet_ids,
            "subsets": self.subsets,
            "dataset": np.array(self.dataset),
            "split": np.array(self.split, dtype=np.int64),
            "protocol": np.array(self.protocol),
            "meta": np.array(json.dumps(self.meta, sort_keys=True, default=str)),
            "format": np.array(FORMAT_VERSION, dtype=np.int64),
        }

        def write(tmp: Path) -> None:
            # a file object: np.savez would append ".npz" to a bare temporary name
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_save(path, write)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureSet:
        """Read and validate a feature file; errors name the file and the expected layout."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path}: not a readable .npz feature file (truncated or damaged: "
                             f"{type(e).__name__}: {e})") from e
        missing = [k for k in KEYS if k not in data]
        if missing:
            raise ValueError(f"{path}: missing keys {missing}; a feature file holds {list(KEYS)}")
        version = int(data["format"])
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: feature file format {version}, this version reads {FORMAT_VERSION}")
        for k in ("dataset", "split", "protocol", "meta", "format"):
            if data[k].shape != ():
                raise ValueError(f"{path}: {k!r} must be a scalar, got shape {data[k].shape}")
        for k in ("pids", "camids"):
            if data[k].size and not np.issubdtype(data[k].dtype, np.integer):
                raise ValueError(f"{path}: {k!r} must be integers, got dtype {data[k].dtype}")
        if not np.issubdtype(data["features"].dtype, np.floating):
            raise ValueError(f"{path}: 'features' must be floating point, got dtype {data['features'].dtype}")
        try:
            meta = json.loads(str(data["meta"]))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: 'meta' is not valid JSON ({e})") from e
        fs = cls.__new__(cls)
        fs.features = data["features"].astype(np.float32, copy=False)
        fs.pids = data["pids"].astype(np.int64, copy=False)
        fs.camids = data["camids"].astype(np.int64, copy=False)
        fs.tracklet_ids = data["tracklet_ids"].astype(str)
        fs.subsets = data["subsets"].astype(str)
        fs.dataset = str(data["dataset"])
        fs.split = int(data["split"])
        fs.protocol = str(data["protocol"])
        fs.meta = meta
        fs.validate(source=str(path))
        return fs


def load_feature_sets(paths: Sequence[str | os.PathLike[str]]) -> list[FeatureSet]:
    """Load several feature files (e.g. the 10 splits of iLIDS-VID), in the order given."""
    return [FeatureSet.load(p) for p in paths]
