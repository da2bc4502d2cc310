"""``videoreid flow``: precompute optical flow for every tracklet of a dataset.

    videoreid flow --dataset mars --root /data [--estimator dis] [--preset medium]
                   [--workers 8] [--cache-dir DIR] [--scale 1.0] [--step 0.25] [--overwrite]

Writes ``<dataset folder>/flow_cache/`` (see ``videoreid.modalities.flow.cache``): one 8-bit
2-channel PNG per frame holding the flow to the next frame, and ``flow_meta.json``. Runs
are resumable: tracklets whose files all exist are skipped, so an interrupted run continues
where it stopped. Exit status 1 when some tracklets failed (each is logged).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import yaml


def _key_values(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"{what}: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from videoreid.data.datasets.factory import DATASETS
    from videoreid.modalities.flow.codec import DEFAULT_STEP
    from videoreid.modalities.flow.estimators import ESTIMATORS

    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="dataset name")
    parser.add_argument("--root", required=True,
                        help="dataset parent folder or the dataset folder itself")
    parser.add_argument("--cache-dir", default=None,
                        help="cache folder (default: <dataset folder>/flow_cache)")
    parser.add_argument("--estimator", default="dis", choices=sorted(ESTIMATORS),
                        help="flow estimator (default: dis)")
    parser.add_argument("--preset", default=None,
                        help="DIS preset: ultrafast, fast or medium (default medium)")
    parser.add_argument("--estimator-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="further estimator argument, e.g. finest_scale=0 or "
                             "weights=liteflownet.pt (repeatable)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="flow map size relative to the frames (default 1.0)")
    parser.add_argument("--step", type=float, default=DEFAULT_STEP,
                        help=f"PNG quantisation step in px (default {DEFAULT_STEP}: range "
                             "[-128 step, 127 step])")
    parser.add_argument("--subsets", default="train,query,gallery",
                        help="comma-separated subsets of each split (default all)")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes (0: in this process; default 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute complete tracklets too (and replace other settings)")
    parser.add_argument("--dataset-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset loader option, e.g. seed=1 for prid2011 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from videoreid.modalities.flow.cache import FlowCacheError
    from videoreid.modalities.flow.compute import compute_dataset_flows

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        est_args = _key_values(args.estimator_arg, "--estimator-arg")
        if args.preset is not None:
            if args.estimator != "dis":
                raise ValueError("--preset applies to the dis estimator only")
            est_args["preset"] = args.preset
        cache, report = compute_dataset_flows(
            args.dataset, args.root, cache_dir=args.cache_dir, estimator=args.estimator,
            estimator_args=est_args, step=args.step, scale=args.scale,
            subsets=[s for s in args.subsets.split(",") if s], workers=args.workers,
            overwrite=args.overwrite, progress=False if args.no_progress else None,
            dataset_args=_key_values(args.dataset_arg, "--dataset-arg"))
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, FlowCacheError) as e:
        print(f"videoreid flow: {e}", file=sys.stderr)
        return 2
    print(f"{report.summary()}\ncache: {cache.cache_dir}")
    for first, reason in report.failed[:20]:
        print(f"  failed: tracklet starting at {first}: {reason}", file=sys.stderr)
    if len(report.failed) > 20:
        print(f"  ... and {len(report.failed) - 20} more", file=sys.stderr)
    return 1 if report.failed else 0
