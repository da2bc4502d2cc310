"""``videoreid index build|search``: gallery indices over feature stores.

::

    videoreid index build FEATS [FEATS ...] --out INDEX [--kind exact|faiss-exact|ivf-pq]
    videoreid index search INDEX QUERY_FEATS --k 20 [--exclude-same-camera]
                           [--out results.csv|results.json] [--picture ranked.png]

``search`` writes one row per (query, rank): query track, camera and frames, gallery track,
camera, frames, distance, and ``match`` when both sides carry identity labels; with labels
it also prints, per query, the rank of its first true match in the gallery.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build an index over gallery feature stores")
    b.add_argument("features", type=Path, nargs="+", metavar="FEATS")
    b.add_argument("--out", type=Path, required=True, help="index folder")
    b.add_argument("--kind", choices=("exact", "faiss-exact", "ivf-pq"), default="exact")
    b.add_argument("--metric", choices=("euclidean", "cosine"), default=None,
                   help="default: the model package's")
    b.add_argument("--subset", default=None,
                   help="index only rows of this subset (e.g. gallery); default all rows")
    for name in ("nlist", "m", "nbits", "nprobe", "refine"):
        b.add_argument(f"--{name}", type=int, default=None, help=f"ivf-pq {name}")
    b.add_argument("--refine-codes", choices=("SQ8", "SQfp16", "Flat"), default=None)
    s = sub.add_parser("search", help="search an index with query feature stores")
    s.add_argument("index", type=Path, metavar="INDEX")
    s.add_argument("query", type=Path, metavar="QUERY_FEATS")
    s.add_argument("--k", type=int, default=20)
    s.add_argument("--exclude-same-camera", action="store_true",
                   help="only return gallery tracks of other cameras")
    s.add_argument("--subset", default=None, help="use only query rows of this subset")
    s.add_argument("--out", type=Path, default=None, help="results .csv or .json")
    s.add_argument("--picture", type=Path, default=None, help="ranked-results PNG")
    s.add_argument("--num-queries", type=int, default=6, help="queries in the picture")
    s.add_argument("--topk", type=int, default=5, help="results per query in the picture")


def _fail(msg: str) -> int:
    print(f"videoreid index: {msg}", file=sys.stderr)
    return 2


def _build(args: argparse.Namespace) -> int:
    from videoreid.retrieval.index import GalleryIndex
    from videoreid.retrieval.store import concat_stores, load_store

    stores = [load_store(p) for p in args.features]
    store = concat_stores(stores, [str(p) for p in args.features])
    if args.subset:
        store = store.select(store.features.subsets == args.subset)
        if not len(store):
            return _fail(f"no rows of subset {args.subset!r} in {[str(p) for p in args.features]}")
    params = {k: getattr(args, k) for k in ("nlist", "m", "nbits", "nprobe", "refine")
              if getattr(args, k) is not None}
    if args.refine_codes:
        params["refine_codes"] = args.refine_codes
    index = GalleryIndex(store, args.kind, args.metric, params)
    index.save(args.out)
    print(f"index {args.out}: {args.kind}, {len(index)} gallery tracks, {index.dim}-d, "
          f"{index.metric}, model {index.model_sha256[:12]}…"
          + (f", {index.params}" if index.params else ""))
    return 0


def _rows(index: Any, queries: Any, result: Any) -> list[dict[str, Any]]:
    g, q = index.gallery, queries
    labelled = bool((q.features.pids >= 0).any() and (g.features.pids >= 0).any())
    out = []
    for i in range(len(q)):
        for r, (j, d) in enumerate(zip(result.indices[i], result.distances[i], strict=True)):
            if j < 0:
                break
            row = {"query": q.features.tracklet_ids[i], "query_camera": int(q.features.camids[i]),
                   "query_track": int(q.track_ids[i]),
                   "query_frames": f"{q.frame_start[i]}-{q.frame_end[i]}",
                   "rank": r + 1, "gallery": g.features.tracklet_ids[j],
                   "gallery_camera": int(g.features.camids[j]), "gallery_track": int(g.track_ids[j]),
                   "gallery_frames": f"{g.frame_start[j]}-{g.frame_end[j]}",
                   "distance": round(float(d), 6)}
            if labelled:
                row["match"] = int(q.features.pids[i] >= 0 and
                                   q.features.pids[i] == g.features.pids[j])
            out.append(row)
    return out


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    from videoreid.utils.io import atomic_write_json, atomic_write_text

    if path.suffix == ".json":
        atomic_write_json(path, rows)
        return
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def first_match_ranks(index: Any, queries: Any, exclude_same_camera: bool) -> np.ndarray:
    """Per labelled query, the 1-based rank of its first true match (0: none in the gallery).

    Uses the full ranking (``k`` = gallery size) so ranks beyond ``--k`` are found too.
    """
    res = index.search(queries, k=len(index), exclude_same_camera=exclude_same_camera)
    gp = index.gallery.features.pids
    ranks = np.zeros(len(queries), dtype=np.int64)
    for i, p in enumerate(queries.features.pids):
        if p < 0:
            ranks[i] = -1
            continue
        hits = np.flatnonzero((res.indices[i] >= 0) & (gp[np.maximum(res.indices[i], 0)] == p))
        ranks[i] = hits[0] + 1 if hits.size else 0
    return ranks


def _picture(index: Any, queries: Any, result: Any, path: Path, n: int, topk: int) -> Path:
    """One row per query: its crops, then its top-``topk`` gallery tracks (green/red when
    both sides carry identity labels, gray when unknown), via :mod:`videoreid.viz.ranking`."""
    from videoreid.data.tracklet import Tracklet
    from videoreid.inference.predictor import folder_frames
    from videoreid.viz.canvas import label_bar, save_image, vstack
    from videoreid.viz.ranking import render_ranked_list, tracklet_frames

    def frames(store: Any, i: int) -> list[np.ndarray]:
        src = Path(str(store.sources[i]))
        if not src.is_dir():
            raise FileNotFoundError(f"crops of {store.features.tracklet_ids[i]} not found at "
                                    f"{src} (the picture needs the crops kept by embed)")
        return tracklet_frames(Tracklet(folder_frames(src), pid=-1, camid=0), 4)

    q, g = queries.features, index.gallery.features
    rows = []
    for i in np.unique(np.linspace(0, len(q) - 1, num=min(n, len(q))).round().astype(int)):
        shown = [(int(j), float(d)) for j, d in zip(result.indices[i][:topk],
                                                     result.distances[i][:topk], strict=True)
                 if j >= 0]
        known = q.pids[i] >= 0
        rows.append(render_ranked_list(
            frames(queries, int(i)), [frames(index.gallery, j) for j, _ in shown],
            [bool(g.pids[j] == q.pids[i]) if known and g.pids[j] >= 0 else None
             for j, _ in shown],
            [[f"#{r} {g.tracklet_ids[j]}", f"frames {index.gallery.frame_start[j]}-"
              f"{index.gallery.frame_end[j]}", f"d = {d:.3g}"]
             for r, (j, d) in enumerate(shown, start=1)],
            query_label=[f"query {q.tracklet_ids[i]}",
                         f"frames {queries.frame_start[i]}-{queries.frame_end[i]}"]))
    img = vstack(rows, gap=14)
    title = (f"{q.dataset}: each query track beside its {topk} nearest gallery tracks "
             "(green/red: same/other identity where labels exist, gray: unknown)")
    img = vstack([label_bar(title, img.shape[1], 18, bold_first=True), img], gap=4)
    return save_image(img, path)


def _search(args: argparse.Namespace) -> int:
    from videoreid.retrieval.index import GalleryIndex
    from videoreid.retrieval.store import load_store

    index = GalleryIndex.load(args.index)
    queries = load_store(args.query)
    if args.subset:
        queries = queries.select(queries.features.subsets == args.subset)
    if not len(queries):
        return _fail(f"{args.query}: no query rows")
    index.check_queries(queries, str(args.query))
    result = index.search(queries, k=args.k, exclude_same_camera=args.exclude_same_camera)
    rows = _rows(index, queries, result)
    if args.out:
        _write(args.out, rows)
    fs = queries.features
    print(f"searched {len(queries)} queries of {args.query} in {args.index} "
          f"({index.kind}, {len(index)} gallery tracks, k={args.k}"
          f"{', other cameras only' if args.exclude_same_camera else ''})")
    for i in range(min(len(queries), 10)):
        top = ", ".join(f"{index.gallery.features.tracklet_ids[j]} ({d:.3g})"
                        for j, d in zip(result.indices[i][:3], result.distances[i][:3],
                                        strict=True) if j >= 0)
        print(f"  {fs.tracklet_ids[i]}: {top}")
    if (fs.pids >= 0).any() and (index.gallery.features.pids >= 0).any():
        ranks = first_match_ranks(index, queries, args.exclude_same_camera)
        have = ranks > 0
        labelled = ranks >= 0
        print(f"{fs.dataset} ({args.query} vs {args.index}, "
              f"{'cross-camera' if args.exclude_same_camera else 'all cameras'}): "
              f"{int(have.sum())}/{int(labelled.sum())} labelled queries have a true match; "
              f"rank-1 {int((ranks == 1).sum())}/{int(have.sum())}, "
              f"within top-{args.k} {int(((ranks >= 1) & (ranks <= args.k)).sum())}/"
              f"{int(have.sum())}; ranks of the first true match: "
              + json.dumps({str(fs.tracklet_ids[i]): int(ranks[i]) for i in np.flatnonzero(have)}))
    if args.picture:
        _picture(index, queries, result, args.picture, args.num_queries, args.topk)
        print(f"picture: {args.picture}")
    if args.out:
        print(f"results: {args.out} ({len(rows)} rows)")
    return 0


def run(args: argparse.Namespace) -> int:
    from videoreid.retrieval.index import IndexError_

    try:
        return _build(args) if args.action == "build" else _search(args)
    except (IndexError_, FileNotFoundError, ValueError, ImportError) as e:
        return _fail(str(e))
