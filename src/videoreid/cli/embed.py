"""``videoreid embed MODEL_DIR ... --out FEATS.npz``: one embedding per track.

Inputs (one of):

- ``--video CAM.mp4 --tracks CAM.txt`` (repeatable, one pair per camera): a tracker's
  MOTChallenge file; crops are cut from the decoded frames into ``--crops-out`` (default
  ``<out>_crops/``, kept: the ranked-results picture shows them). Skipped boxes are counted
  and printed (see :mod:`videoreid.inference.tracks`).
- ``--crops DIR``: one sub-folder of crops per tracklet.
- ``--dataset NAME --root DIR``: the query and gallery tracklets of a dataset layout.

Output: a feature store (:mod:`videoreid.retrieval.store`) that ``videoreid index`` and
``videoreid evaluate-features`` read.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL_DIR", help="model package")
    src = parser.add_argument_group("input (one kind)")
    src.add_argument("--video", type=Path, action="append", default=[],
                     help="video file of one camera (repeat with --tracks for more cameras)")
    src.add_argument("--tracks", type=Path, action="append", default=[],
                     help="MOTChallenge track file for the --video at the same position")
    src.add_argument("--crops", type=Path, default=None,
                     help="folder with one sub-folder of crops per tracklet")
    src.add_argument("--dataset", default=None, help="dataset layout name (mars, dukev, ...)")
    src.add_argument("--root", type=Path, default=None, help="dataset root for --dataset")
    parser.add_argument("--out", type=Path, required=True, help="feature store (.npz/.parquet)")
    parser.add_argument("--camera", type=int, nargs="+", default=None,
                        help="camera index of each --video (default 0, 1, ...) or of --crops")
    parser.add_argument("--crops-out", type=Path, default=None,
                        help="where video crops are written (default <out>_crops/)")
    parser.add_argument("--min-size", type=int, nargs=2, default=(16, 8), metavar=("H", "W"),
                        help="smallest box kept after clamping, pixels (default 16 8)")
    parser.add_argument("--max-frames", type=int, default=64,
                        help="per-track frame cap, evenly spaced (0: none; default 64)")
    parser.add_argument("--min-conf", type=float, default=None,
                        help="skip boxes whose conf column is below this")
    parser.add_argument("--labels", choices=("none", "track"), default="none",
                        help="'track': MOT ids are identity labels (ground-truth files)")
    parser.add_argument("--query-cameras", type=int, nargs="*", default=None,
                        help="tracks of these cameras are marked 'query', the rest 'gallery'")
    parser.add_argument("--name", default="tracks", help="dataset name recorded in the store")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="auto: bf16 where the device computes it natively, else fp32")


def _fail(msg: str) -> int:
    print(f"videoreid embed: {msg}", file=sys.stderr)
    return 2


def _video_tracklets(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    from videoreid.data.tracklet import Tracklet
    from videoreid.inference.tracks import crop_tracks, read_mot

    cams = args.camera or list(range(len(args.video)))
    if len(cams) != len(args.video):
        raise ValueError(f"{len(args.video)} --video but {len(cams)} --camera values")
    crops_root = args.crops_out or args.out.with_name(args.out.stem + "_crops")
    tracklets, rows, reports = [], [], {}
    for video, tracks, cam in zip(args.video, args.tracks, cams, strict=True):
        boxes = read_mot(tracks)
        crops, report = crop_tracks(video, boxes, crops_root / f"cam{cam}",
                                    min_size=args.min_size, max_frames=args.max_frames or None,
                                    min_conf=args.min_conf)
        print(f"{video} ({tracks}): {report.summary()}")
        reports[str(video)] = report.as_dict()
        for t in crops:
            pid = t.track_id if args.labels == "track" else -1
            tracklets.append(Tracklet(t.paths, pid=pid, camid=cam,
                                      meta={"tracklet_id": f"cam{cam}_track{t.track_id}"}))
            rows.append((t.track_id, t.frame_start, t.frame_end, len(t.frames),
                         str(crops_root / f"cam{cam}" / str(t.track_id))))
    return tracklets, {"rows": rows, "skipped": reports}


def _crop_tracklets(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    from videoreid.data.tracklet import Tracklet
    from videoreid.inference.predictor import as_tracklet

    if not args.crops.is_dir():
        raise FileNotFoundError(f"--crops {args.crops} is not a folder")
    cam = (args.camera or [0])[0]
    subdirs = sorted(p for p in args.crops.iterdir() if p.is_dir())
    if not subdirs:
        raise ValueError(f"--crops {args.crops} holds no sub-folders (one per tracklet)")
    tracklets, rows = [], []
    for i, d in enumerate(subdirs):
        t = as_tracklet(d, i)
        tid = int(d.name) if d.name.isdigit() else i
        pid = tid if args.labels == "track" else -1
        tracklets.append(Tracklet(t.frames, pid=pid, camid=cam,
                                  meta={"tracklet_id": f"cam{cam}_{d.name}"}))
        rows.append((tid, -1, -1, len(t.frames), str(d)))
    return tracklets, {"rows": rows, "skipped": {}}


def run(args: argparse.Namespace) -> int:
    from videoreid.engine.distributed import setup_logging
    from videoreid.evaluation.features import FeatureSet
    from videoreid.inference.package import PackageError
    from videoreid.inference.predictor import Predictor
    from videoreid.inference.tracks import MotFormatError
    from videoreid.retrieval.store import FeatureStore

    setup_logging()
    kinds = sum([bool(args.video or args.tracks), args.crops is not None, args.dataset is not None])
    if kinds != 1:
        return _fail("give exactly one input: --video/--tracks pairs, --crops or --dataset")
    if len(args.video) != len(args.tracks):
        return _fail(f"{len(args.video)} --video but {len(args.tracks)} --tracks; give them in "
                     "pairs (one per camera)")
    try:
        predictor = Predictor(args.model, device=args.device, batch_size=args.batch_size,
                              workers=args.workers, precision=args.precision)
    except (PackageError, NotImplementedError) as e:
        return _fail(str(e))
    split = None
    try:
        if args.video:
            tracklets, info = _video_tracklets(args)
        elif args.crops is not None:
            tracklets, info = _crop_tracklets(args)
        else:
            from videoreid.data.datasets.factory import build_dataset

            if args.root is None:
                return _fail("--dataset needs --root")
            split = build_dataset(args.dataset, args.root).split(0)
            tracklets = list(split.query) + list(split.gallery)
            info = {"rows": [(-1, -1, -1, len(t), str(Path(t.frames[0]).parent))
                             for t in tracklets], "skipped": {}}
    except (FileNotFoundError, ValueError, MotFormatError) as e:
        return _fail(str(e))
    if not tracklets:
        return _fail("no tracks left to embed (every box was skipped; see the counts above)")
    feats = predictor.embed(tracklets, progress=True)
    pkg = predictor.package
    meta = {"model_sha256": pkg.sha256, "model": pkg.name, "model_dir": str(args.model),
            "metric": predictor.metric, "normalize": predictor.normalize,
            "plan": pkg.preprocessing["test_plan"], "skipped": info["skipped"]}
    if split is not None:
        fs = FeatureSet.from_split(split, feats[: len(split.query)], feats[len(split.query):],
                                   meta=meta)
    else:
        cams = np.array([t.camid for t in tracklets])
        qcams = set(args.query_cameras or [])
        subsets = np.where(np.isin(cams, list(qcams)), "query", "gallery")
        fs = FeatureSet(feats, [t.pid for t in tracklets], cams,
                        [t.meta["tracklet_id"] for t in tracklets], subsets, args.name, 0, meta,
                        "cross_camera")
    rows = np.array([r[:4] for r in info["rows"]], dtype=np.int64).reshape(-1, 4)
    store = FeatureStore(fs, rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3],
                         np.array([r[4] for r in info["rows"]]))
    try:
        store.save(args.out)
    except ImportError as e:
        return _fail(str(e))
    print(f"wrote {args.out}: {len(store)} tracks, {feats.shape[1]}-d, model {pkg.name} "
          f"({pkg.sha256[:12]}…)")
    return 0
