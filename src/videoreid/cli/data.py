"""``videoreid data``: dataset utilities.

    videoreid data stats --dataset mars --root /data [--split K] [--all-splits]

prints, for the chosen split, per-subset counts (tracklets, ids, cameras, frames, junk,
distractors) and the tracklet-length distribution (min/median/mean/max and a histogram).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import numpy as np

from videoreid.data.datasets.factory import DATASETS, build_dataset
from videoreid.data.tracklet import ReIDSplit, Tracklet, subset_statistics

# histogram bin edges in frames: the lengths of video re-id tracklets span 1..~1000
LENGTH_BINS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 512)
_BAR = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    stats = sub.add_parser("stats", help="per-subset counts and tracklet-length distribution")
    stats.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="dataset name")
    stats.add_argument("--root", required=True, help="dataset parent folder or the dataset folder itself")
    group = stats.add_mutually_exclusive_group()
    group.add_argument("--split", type=int, default=0, help="split index (0-based; default 0)")
    group.add_argument("--all-splits", action="store_true", help="print every split")


def length_histogram(lengths: Sequence[int], edges: Sequence[int] = LENGTH_BINS) -> list[tuple[str, int]]:
    """Counts of tracklet lengths in ``[edges[i], edges[i+1])`` plus a last open bin.

    Returns:
        ``[(label, count), ...]`` with labels like ``"8-15"`` and ``">=512"``.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    bounds = list(edges) + [np.iinfo(np.int64).max]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        label = f">={lo}" if hi == bounds[-1] else (f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}")
        out.append((label, int(((lengths >= lo) & (lengths < hi)).sum())))
    return out


def format_split_stats(split: ReIDSplit, num_splits: int, root: str) -> str:
    """The text ``videoreid data stats`` prints for one split."""
    subsets: list[tuple[str, list[Tracklet]]] = [
        ("train", split.train), ("query", split.query), ("gallery", split.gallery)
    ]
    lines = [
        f"dataset {split.name} (root {root}), split {split.split_index} of {num_splits}, "
        f"default protocol {split.protocol}",
        "",
        f"{'subset':<8} {'tracklets':>9} {'ids':>6} {'cameras':>7} {'frames':>10} {'junk':>6} {'distractors':>11}",
    ]
    stats = {name: subset_statistics(ts) for name, ts in subsets}
    for name, _ in subsets:
        s = stats[name]
        lines.append(
            f"{name:<8} {s['tracklets']:>9} {s['ids']:>6} {s['cameras']:>7} {s['frames']:>10} "
            f"{s['junk']:>6} {s['distractors']:>11}"
        )
    lines += ["", "tracklet length (frames)", f"{'subset':<8} {'min':>6} {'median':>8} {'mean':>8} {'max':>6}"]
    for name, _ in subsets:
        s = stats[name]
        lines.append(f"{name:<8} {s['len_min']:>6} {s['len_median']:>8.1f} {s['len_mean']:>8.1f} {s['len_max']:>6}")
    lines += ["", "length histogram (tracklets per length bin)"]
    hists = {name: length_histogram([len(t) for t in ts]) for name, ts in subsets}
    labels = [label for label, _ in hists["train"]]
    lines.append(f"{'frames':<8} " + " ".join(f"{n:>8}" for n, _ in subsets) + "  all")
    totals = [sum(hists[n][i][1] for n, _ in subsets) for i in range(len(labels))]
    peak = max(totals) if totals and max(totals) > 0 else 1
    for i, label in enumerate(labels):
        counts = " ".join(f"{hists[n][i][1]:>8}" for n, _ in subsets)
        bar = "#" * round(_BAR * totals[i] / peak)
        lines.append(f"{label:<8} {counts}  {bar}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.action != "stats":
        raise SystemExit(f"videoreid data: unknown action {args.action!r}")
    try:
        ds = build_dataset(args.dataset, args.root)
    except (FileNotFoundError, ValueError) as e:
        print(f"videoreid data stats: {e}", file=sys.stderr)
        return 1
    if args.all_splits:
        indices = list(range(ds.num_splits))
    else:
        if not 0 <= args.split < ds.num_splits:
            print(f"videoreid data stats: {ds.name} has splits 0..{ds.num_splits - 1}, not {args.split}", file=sys.stderr)
            return 2
        indices = [args.split]
    blocks = [format_split_stats(ds.split(k), ds.num_splits, str(ds.root)) for k in indices]
    test_rows = getattr(ds, "test_tracklets", None)
    if test_rows is not None:
        s = subset_statistics(test_rows)
        blocks.append(
            f"all test rows (the official MARS gallery, queries included): {s['tracklets']} tracklets, "
            f"{s['ids']} ids, {s['frames']} frames, {s['junk']} junk, {s['distractors']} distractors"
        )
    print("\n\n".join(blocks))
    return 0
