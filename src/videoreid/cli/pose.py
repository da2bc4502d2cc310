"""``videoreid pose``: precompute and cache pose maps or keypoints for a dataset.

Examples::

    # render the 57 maps from the OpenPose JSON files beside the frames (synthetic data)
    videoreid pose --dataset mars --root data/synth
    # run the OpenPose network (local converted weights) and cache its maps ...
    videoreid pose --dataset ilidsvid --root data --source openpose --weights body_pose_model.pth --device cuda
    # ... or the keypoints it finds, as OpenPose JSON
    videoreid pose --dataset mars --root data --source openpose --weights body_pose_model.pth --mode keypoints

The cache goes to ``<dataset folder>/pose_cache/`` and is found by the ``pose`` modality
(``data.modality_args.pose.source: maps`` for maps; keypoints are found automatically).
"""

from __future__ import annotations

import argparse
import logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset name (mars, ilidsvid, ...)")
    parser.add_argument("--root", required=True, help="dataset root (parent or dataset folder)")
    parser.add_argument("--mode", choices=("maps", "keypoints"), default="maps",
                        help="cache the 57 maps (default) or OpenPose JSON keypoints")
    parser.add_argument("--source", choices=("keypoints", "openpose"), default="keypoints",
                        help="render keypoint files beside the frames, or run the network")
    parser.add_argument("--weights", default=None,
                        help="converted OpenPose COCO weights (body_pose_model.pth), local file")
    parser.add_argument("--cache-dir", default=None,
                        help="cache folder (default: <dataset folder>/pose_cache)")
    parser.add_argument("--stride", type=int, default=8, help="frame pixels per map cell")
    parser.add_argument("--sigma", type=float, default=7.0, help="heatmap std, frame pixels")
    parser.add_argument("--paf-threshold", type=float, default=1.0, help="PAF half-width, cells")
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="peak threshold for --mode keypoints")
    parser.add_argument("--subsets", nargs="+", default=["train", "query", "gallery"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--on-missing", choices=("error", "empty"), default="error",
                        help="a frame without keypoint file: error, or empty maps (counted)")
    parser.add_argument("--overwrite", action="store_true", help="recompute cached files")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from videoreid.modalities.pose.compute import compute_dataset_pose

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cache, report = compute_dataset_pose(
        args.dataset, args.root, mode=args.mode, source=args.source, weights=args.weights,
        cache_dir=args.cache_dir, stride=args.stride, sigma=args.sigma,
        paf_threshold=args.paf_threshold, threshold=args.threshold, subsets=args.subsets,
        batch_size=args.batch_size, device=args.device, on_missing=args.on_missing,
        overwrite=args.overwrite, progress=False if args.no_progress else None)
    print(f"pose cache ({cache.kind}, source {cache.source['name']}): {cache.cache_dir}")
    print(str(report))
    return 0
