"""Gallery indices: exact search (numpy/torch) and faiss back-ends behind one interface.

Kinds:

- ``exact`` (numpy/torch, no extra dependency): distances from
  :func:`videoreid.evaluation.distance.compute_distance` (the evaluation's own function),
  blocks of queries at a time (memory ``block × gallery``), and a *stable* top-k: ties are
  broken by gallery row order, exactly as the evaluation ranks. Exact search on a store
  therefore ranks every query like ``videoreid evaluate-features`` does.
- ``faiss-exact``: ``IndexFlatL2`` / ``IndexFlatIP`` (same neighbours, faster BLAS; ties
  among exactly equal distances may come in another order).
- ``ivf-pq``: ``IndexIVFPQ`` (``nlist`` lists, ``m`` sub-quantisers of ``nbits`` bits,
  ``nprobe`` lists searched) whose shortlist of ``k × refine`` candidates is re-ranked by a
  second, finer code (``refine_codes``: ``SQ8`` 8-bit scalar codes, 1 byte/dimension, or
  ``Flat`` full vectors). Distances returned are those of the re-ranking stage.

Metrics: ``euclidean`` (faiss works with squared L2; the root is taken on the way out, which
keeps the order) and ``cosine`` (rows L2-normalised, inner product, ``1 − ip``).

Files. An index is a folder written atomically (built in a temporary sibling, then renamed
into place)::

    INDEX/index.json     kind, metric, dimension, size, parameters, model_sha256
    INDEX/gallery.npz    the gallery feature store (features, cameras, track ids, ...)
    INDEX/faiss.index    faiss kinds only

``model_sha256`` is the model package's hash taken from the gallery store; :meth:`search`
refuses query features embedded by another model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videoreid.retrieval.store import FeatureStore, load_store

log = logging.getLogger(__name__)

__all__ = ["KINDS", "IndexError_", "SearchResult", "GalleryIndex", "stable_topk",
           "build_faiss", "default_ivf_params"]

KINDS = ("exact", "faiss-exact", "ivf-pq")
FORMAT_VERSION = 1


class IndexError_(ValueError):  # noqa: N801 - avoid shadowing the builtin IndexError
    """Index file missing/malformed, or a search that would compare different models."""


@dataclass
class SearchResult:
    """Per query, the ``k`` nearest gallery rows (``-1`` / ``inf`` pad when fewer exist).

    Attributes:
        indices: ``(Nq, k)`` int64 gallery rows. distances: ``(Nq, k)`` float32.
    """

    indices: np.ndarray
    distances: np.ndarray


def stable_topk(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``k`` smallest of ``dist`` ``(B, N)``, ties in column order (a stable sort).

    Equal to ``np.argsort(dist, kind="stable")[:, :k]`` without sorting whole rows: a
    partition finds each row's k-th value, then only the candidates ``<=`` it are sorted.
    ``inf`` entries are excluded rows; they are returned as index ``-1``.
    """
    b, n = dist.shape
    k_eff = min(k, n)
    idx = np.full((b, k), -1, dtype=np.int64)
    out = np.full((b, k), np.inf, dtype=np.float32)
    if k_eff == 0:
        return idx, out
    kth = np.partition(dist, k_eff - 1, axis=1)[:, k_eff - 1]
    for r in range(b):
        cand = np.flatnonzero(dist[r] <= kth[r])  # ascending column order
        order = cand[np.argsort(dist[r, cand], kind="stable")][:k_eff]
        order = order[np.isfinite(dist[r, order])]
        idx[r, : order.size] = order
        out[r, : order.size] = dist[r, order]
    return idx, out


def default_ivf_params(n: int, dim: int) -> dict[str, Any]:
    """IVF-PQ defaults: ``nlist ≈ 4√n`` (≥ 39 training points per list), ``m`` the largest
    divisor of ``dim`` ≤ 64 (sub-vectors of ≥ 8 dims), 8 bits, ``nprobe = nlist/16`` (≥ 8),
    re-rank ``refine = 8`` × k candidates with 8-bit scalar codes."""
    nlist = int(max(1, min(round(4 * math.sqrt(max(n, 1))), n // 39 if n >= 39 else 1)))
    m = max(d for d in range(1, min(64, dim) + 1) if dim % d == 0)
    return {"nlist": nlist, "m": m, "nbits": 8, "nprobe": max(1, min(nlist, max(8, nlist // 16))),
            "refine": 8, "refine_codes": "SQ8"}


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:
        raise ImportError("this index kind needs faiss: pip install 'videoreid[faiss]' "
                          "(faiss-cpu); the 'exact' kind needs nothing extra") from e
    return faiss


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)
    return x


def build_faiss(features: np.ndarray, kind: str, metric: str, params: dict[str, Any],
                train_size: int | None = None, seed: int = 0) -> Any:
    """A trained, filled faiss index over ``features`` ``(N, D)`` (see module docstring)."""
    faiss = _faiss()
    x = _prepare(features, metric)
    n, d = x.shape
    mt = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    if kind == "faiss-exact":
        index = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
        index.add(x)
        return index
    if kind != "ivf-pq":
        raise IndexError_(f"unknown index kind {kind!r}; choose from {', '.join(KINDS)}")
    refine = int(params.get("refine", 0))
    codes = str(params.get("refine_codes", "SQ8"))
    spec = f"IVF{int(params['nlist'])},PQ{int(params['m'])}x{int(params['nbits'])}"
    if refine:
        spec += ",RFlat" if codes == "Flat" else f",Refine({codes})"
    index = faiss.index_factory(d, spec, mt)
    rng = np.random.default_rng(seed)
    ts = min(n, int(train_size or max(256 * int(params["nlist"]), 2 ** int(params["nbits"]) * 64)))
    sample = x[np.sort(rng.choice(n, size=ts, replace=False))] if ts < n else x
    index.train(sample)
    for a in range(0, n, 65536):  # add in chunks: bounded temporaries
        index.add(x[a: a + 65536])
    set_search_params(index, params)
    return index


def set_search_params(index: Any, params: dict[str, Any]) -> None:
    faiss = _faiss()
    base = index
    if isinstance(index, (faiss.IndexRefine, faiss.IndexRefineFlat)):
        index.k_factor = float(max(1, int(params.get("refine", 1))))
        base = faiss.downcast_index(index.base_index)
    ivf = faiss.extract_index_ivf(base) if not isinstance(base, faiss.IndexFlat) else None
    if ivf is not None:
        ivf.nprobe = int(params.get("nprobe", 16))


def _faiss_distances(raw: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        return np.maximum(1.0 - raw, 0.0).astype(np.float32)
    return np.sqrt(np.maximum(raw, 0.0)).astype(np.float32)


class GalleryIndex:
    """A searchable gallery (module docstring).

    Args:
        gallery: the gallery feature store.
        kind: one of :data:`KINDS`.
        metric: ``"euclidean"`` or ``"cosine"`` (default: the store's ``meta["metric"]``,
            i.e. the model package's).
        params: ``ivf-pq`` parameters (defaults :func:`default_ivf_params`).
    """

    def __init__(self, gallery: FeatureStore, kind: str = "exact", metric: str | None = None,
                 params: dict[str, Any] | None = None, _faiss_index: Any = None) -> None:
        if kind not in KINDS:
            raise IndexError_(f"unknown index kind {kind!r}; choose from {', '.join(KINDS)}")
        self.gallery = gallery
        self.kind = kind
        self.metric = metric or str(gallery.features.meta.get("metric", "euclidean"))
        if self.metric not in ("euclidean", "cosine"):
            raise IndexError_(f"unknown metric {self.metric!r}; choose euclidean or cosine")
        feats = gallery.features.features
        self.params = dict(default_ivf_params(*feats.shape)) if kind == "ivf-pq" else {}
        self.params.update(params or {})
        self._faiss = _faiss_index
        if kind != "exact" and self._faiss is None:
            self._faiss = build_faiss(feats, kind, self.metric, self.params)

    def __len__(self) -> int:
        return len(self.gallery)

    @property
    def model_sha256(self) -> str:
        return self.gallery.model_sha256

    @property
    def dim(self) -> int:
        return int(self.gallery.features.features.shape[1])

    def check_queries(self, queries: FeatureStore, name: str = "query features") -> None:
        """Refuse features of another model or of another size."""
        q_hash = queries.model_sha256
        if q_hash != self.model_sha256:
            raise IndexError_(
                f"{name} were embedded by model {q_hash[:12] or '<unknown>'}…, the index's "
                f"gallery by model {self.model_sha256[:12] or '<unknown>'}…; features of "
                "different models are not comparable (embed both with the same package)")
        if queries.features.features.shape[1] != self.dim:
            raise IndexError_(f"{name} have dimension {queries.features.features.shape[1]}, "
                              f"the index {self.dim}")

    # ------------------------------------------------------------------ search

    def _excluded(self, q_cam: np.ndarray, q_ids: np.ndarray, same_camera: bool) -> np.ndarray:
        g = self.gallery.features
        ex = q_ids[:, None] == g.tracklet_ids[None, :]  # the query's own track
        if same_camera:
            ex |= q_cam[:, None] == g.camids[None, :]
        return ex

    def search(self, queries: FeatureStore, k: int = 20, exclude_same_camera: bool = False,
               block: int | None = None) -> SearchResult:
        """The ``k`` nearest gallery rows of each query row.

        Args:
            queries: query store (same model as the gallery).
            k: results per query.
            exclude_same_camera: drop gallery rows seen by the query's camera.
            block: queries per distance block (exact kind). The default, 4096 queries (the
                evaluation's own block) unless a block would exceed ~256 MB, gives distances
                bit-identical to the evaluation's: a matrix product's last bits depend on
                its shape, so another block size may swap exactly-near ties.

        The query's own track (same tracklet id) is never returned.
        """
        self.check_queries(queries)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        qf = queries.features
        nq, ng = len(qf), len(self)
        if self.kind == "exact":
            from videoreid.evaluation.distance import compute_distance

            block = block or max(1, min(4096, (1 << 26) // max(ng, 1)))
            idx = np.full((nq, k), -1, dtype=np.int64)
            dist = np.full((nq, k), np.inf, dtype=np.float32)
            for a in range(0, nq, block):
                sl = slice(a, a + block)
                d = np.asarray(compute_distance(qf.features[sl], self.gallery.features.features,
                                                self.metric), dtype=np.float32)
                d[self._excluded(qf.camids[sl], qf.tracklet_ids[sl], exclude_same_camera)] = np.inf
                idx[sl], dist[sl] = stable_topk(d, k)
            return SearchResult(idx, dist)
        return self._search_faiss(queries, k, exclude_same_camera)

    def _search_faiss(self, queries: FeatureStore, k: int, same_camera: bool) -> SearchResult:
        qf = queries.features
        x = _prepare(qf.features, self.metric)
        nq, ng = len(qf), len(self)
        idx = np.full((nq, k), -1, dtype=np.int64)
        dist = np.full((nq, k), np.inf, dtype=np.float32)
        todo = np.arange(nq)
        fetch = min(ng, k)
        while todo.size:
            raw_d, raw_i = self._faiss.search(x[todo], fetch)
            d = _faiss_distances(raw_d, self.metric)
            valid = raw_i >= 0
            safe = np.where(valid, raw_i, 0)
            g = self.gallery.features
            ex = qf.tracklet_ids[todo][:, None] == g.tracklet_ids[safe]
            if same_camera:
                ex |= qf.camids[todo][:, None] == g.camids[safe]
            valid &= ~ex
            done = []
            for j, q in enumerate(todo):
                keep = np.flatnonzero(valid[j])[:k]
                if keep.size == k or fetch >= ng:
                    idx[q, : keep.size] = raw_i[j, keep]
                    dist[q, : keep.size] = d[j, keep]
                    done.append(j)
            todo = np.delete(todo, done)
            fetch = min(ng, fetch * 4)  # too many exclusions: look further
        return SearchResult(idx, dist)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index folder atomically (module docstring)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            self.gallery.save(tmp / "gallery.npz")
            if self._faiss is not None:
                _faiss().write_index(self._faiss, str(tmp / "faiss.index"))
            info = {"format": "videoreid-index", "format_version": FORMAT_VERSION,
                    "kind": self.kind, "metric": self.metric, "dim": self.dim,
                    "size": len(self), "params": self.params,
                    "model_sha256": self.model_sha256,
                    "model": self.gallery.features.meta.get("model", "")}
            (tmp / "index.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
            old = None
            if path.exists():
                old = path.parent / f".{path.name}.old.{os.getpid()}"
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GalleryIndex:
        """Read an index folder written by :meth:`save`."""
        path = Path(path)
        info_path = path / "index.json"
        if not info_path.is_file():
            raise IndexError_(f"{path}: not an index (no index.json; build one with "
                              "`videoreid index build FEATURES --out INDEX`)")
        try:
            info = json.loads(info_path.read_text())
        except json.JSONDecodeError as e:
            raise IndexError_(f"{info_path}: not valid JSON ({e})") from e
        if info.get("format") != "videoreid-index" or info.get("format_version") != FORMAT_VERSION:
            raise IndexError_(f"{info_path}: unknown index format {info.get('format')!r} "
                              f"version {info.get('format_version')!r}")
        gallery = load_store(path / "gallery.npz")
        if gallery.model_sha256 != info.get("model_sha256"):
            raise IndexError_(f"{path}: gallery.npz and index.json name different models")
        index = None
        if info["kind"] != "exact":
            index = _faiss().read_index(str(path / "faiss.index"))
            set_search_params(index, info["params"])
        return cls(gallery, info["kind"], info["metric"], info["params"], _faiss_index=index)
