"""``videoreid evaluate-features FILE [FILE ...]``: evaluate saved feature files.

One file evaluates one split; several files (e.g. the 10 splits of iLIDS-VID) are evaluated
one by one and summarised as mean ± std. The printed table names dataset, split and
protocol on every row.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from videoreid.evaluation.distance import METRICS
from videoreid.evaluation.features import load_feature_sets
from videoreid.evaluation.normalization import MODES
from videoreid.evaluation.protocol import evaluate_features, evaluate_splits, format_table
from videoreid.evaluation.rank import PROTOCOLS
from videoreid.utils.io import atomic_write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="feature file(s) (.npz)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="evaluation protocol (default: the file's, else the dataset's)")
    parser.add_argument("--metric", choices=METRICS, default="euclidean")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    parser.add_argument("--k1", type=int, default=20)
    parser.add_argument("--k2", type=int, default=6)
    parser.add_argument("--lambda", dest="lambda_value", type=float, default=0.3)
    parser.add_argument("--score-norm", action="store_true", help="row/column score normalisation (AlignNet)")
    parser.add_argument("--score-norm-mode", choices=MODES, default="symmetric")
    parser.add_argument("--max-rank", type=int, default=50)
    parser.add_argument("--per-camera", action="store_true", help="also print the per-camera-pair table")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def _camera_table(r: dict[str, Any]) -> str:
    pc = r["per_camera"]
    cams = pc["cameras"]
    lines = [f"{r['dataset']} split {r['split']} {r['protocol']}: rank-1 / mAP (%) per query camera (rows) "
             f"x gallery camera (columns)"]
    lines.append("      " + "".join(f"{'cam ' + str(c):>14}" for c in cams))
    for i, a in enumerate(cams):
        cells = []
        for j in range(len(cams)):
            r1, ap = pc["rank1"][i, j], pc["mAP"][i, j]
            cells.append(f"{'-':>14}" if not np.isfinite(r1) else f"{100 * r1:6.1f}/{100 * ap:5.1f} ")
        lines.append(f"cam {a:<2}" + "".join(cells))
    lines.append(f"cross-camera mean: rank-1 {100 * pc['cross_camera_rank1']:.1f}, mAP {100 * pc['cross_camera_mAP']:.1f}")
    return "\n".join(lines)


def _load(files: list[Path]) -> list:
    """Load the files; refuse the same file twice and files of different datasets."""
    from videoreid.utils.errors import UserError

    seen: dict[Path, Path] = {}
    for f in files:
        key = f.resolve()
        if key in seen:
            raise UserError(f"{f} is given twice (as {seen[key]} and {f}); each split's file "
                            "once, or the mean ± std would count it twice")
        seen[key] = f
    try:
        sets = load_feature_sets(files)
    except ValueError as e:
        raise UserError(str(e)) from e
    names = {(fs.dataset, fs.split) for fs in sets}
    if len(names) < len(sets):
        dup = [f"{p} ({fs.dataset} split {fs.split})" for p, fs in zip(files, sets, strict=True)]
        raise UserError("several files hold the same dataset split: " + ", ".join(dup))
    datasets = sorted({fs.dataset for fs in sets})
    if len(datasets) > 1:
        owners = ", ".join(f"{p}: {fs.dataset}" for p, fs in zip(files, sets, strict=True))
        raise UserError(f"the files are of different datasets ({owners}); averaging them "
                        "would mean nothing — evaluate each dataset on its own")
    return sets


def run(args: argparse.Namespace) -> int:
    from videoreid.config import check_protocol

    sets = _load(list(args.files))
    check_protocol(sets[0].dataset, args.protocol, "--protocol")
    kw = dict(protocol=args.protocol, metric=args.metric, rerank=args.rerank, score_norm=args.score_norm,
              max_rank=args.max_rank, per_camera=args.per_camera, k1=args.k1, k2=args.k2,
              lambda_value=args.lambda_value, score_norm_mode=args.score_norm_mode)
    if len(sets) == 1:
        result: dict[str, Any] = evaluate_features(sets[0], **kw)
        singles = [result]
    else:
        result = evaluate_splits(sets, **kw)
        singles = result["per_split"]
    print(format_table(result))
    if args.per_camera:
        for r in singles:
            print()
            print(_camera_table(r))
    if args.json is not None:
        atomic_write_json(args.json, _jsonable(result))
    return 0
