"""``videoreid evaluate CONFIG --checkpoint CKPT [--protocol P] [--rerank] [--score-norm]``.

Extracts query/gallery features with the config's test clip plan and evaluates them under
the named protocol (default: ``eval.protocol`` or the dataset's own). ``--checkpoint`` is a
checkpoint file, or a run directory (its newest checkpoint; with ``data.split=all`` the
newest of each ``split<k>/``), in which case all splits are evaluated and summarised as
mean ± std.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint file, or a run directory (newest checkpoint)")
    parser.add_argument("--protocol", default=None,
                        help="official | market | query_in_gallery | cross_camera")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    parser.add_argument("--score-norm", action="store_true",
                        help="row/column z-score normalisation of similarities (AlignNet)")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")


def resolve_checkpoint(path: str | Path, split_index: int | None) -> Path:
    """A checkpoint file as given, or the newest epoch checkpoint under a run directory."""
    from videoreid.engine.checkpoint import CheckpointManager

    path = Path(path)
    if path.is_file():
        return path
    candidates = [path / "checkpoints"]
    if split_index is not None:
        candidates.insert(0, path / f"split{split_index}" / "checkpoints")
    for c in candidates:
        latest = CheckpointManager(c).latest()
        if latest is not None:
            return latest
    raise FileNotFoundError(f"no checkpoint file {path} and no epoch_*.pt under "
                            f"{', '.join(str(c) for c in candidates)}")


def run(args: argparse.Namespace) -> int:
    from videoreid.config import ConfigError, load_config
    from videoreid.data.joint import eval_parts
    from videoreid.engine.builders import (
        build_modalities,
        build_splits,
        evaluate_model,
        load_model_from_checkpoint,
    )
    from videoreid.engine.distributed import resolve_device, setup_logging
    from videoreid.evaluation.protocol import evaluate_splits, format_table
    from videoreid.utils.io import atomic_write_json

    setup_logging()
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"videoreid evaluate: {e}", file=sys.stderr)
        return 2
    from videoreid.config import check_protocol
    from videoreid.engine.checkpoint import verify_checkpoint

    try:  # every check before the (long) feature extraction
        check_protocol(cfg.data.dataset, args.protocol, "--protocol")
    except ConfigError as e:
        print(f"videoreid evaluate: {e}", file=sys.stderr)
        return 2
    device = resolve_device(cfg.train.device)
    splits = build_splits(cfg)
    multi = len(splits) > 1
    if multi and Path(args.checkpoint).is_file():
        print("videoreid evaluate: data.split=all needs --checkpoint RUN_DIR (one checkpoint "
              "per split under RUN_DIR/split<k>/checkpoints), or set data.split=K",
              file=sys.stderr)
        return 2
    ckpts = [resolve_checkpoint(args.checkpoint, s.split_index if multi else None)
             for s in splits]
    for ckpt in ckpts:
        verify_checkpoint(ckpt)
    modalities = build_modalities(cfg)
    results, feature_sets = [], []
    for split, ckpt in zip(splits, ckpts, strict=True):
        model = load_model_from_checkpoint(cfg, ckpt, split.num_train_pids, device)
        for part in eval_parts(split):  # a joint config: every dataset on its own
            result, fs = evaluate_model(model, part, cfg, device, modalities=modalities,
                                        protocol=args.protocol, rerank=args.rerank or None,
                                        score_norm=args.score_norm or None)
            result["checkpoint"] = str(ckpt)
            results.append(result)
            feature_sets.append(fs)
    print(format_table(results))
    summary = {"results": [{k: v for k, v in r.items() if k != "ap"} for r in results]}
    if multi:
        names = list(dict.fromkeys(r["dataset"] for r in results))
        for name in names:  # one dataset, or each dataset of a joint config
            mine = [fs for r, fs in zip(results, feature_sets, strict=True)
                    if r["dataset"] == name]
            protocol = next(r["protocol"] for r in results if r["dataset"] == name)
            agg = evaluate_splits(mine, protocol=protocol, metric=cfg.eval.metric,
                                  rerank=args.rerank or cfg.eval.rerank,
                                  score_norm=args.score_norm or cfg.eval.score_norm,
                                  max_rank=cfg.eval.max_rank,
                                  score_norm_mode=cfg.eval.score_norm_mode)
            if len(names) == 1:
                summary["mean"], summary["std"] = agg.get("mean"), agg.get("std")
            else:
                summary.setdefault("mean", {})[name] = agg.get("mean")
                summary.setdefault("std", {})[name] = agg.get("std")
            print(f"{name} ({protocol}), mean over {len(mine)} splits: {agg.get('mean')}\n"
                  f"std: {agg.get('std')}")
    if args.out:
        from videoreid.engine.builders import to_jsonable

        atomic_write_json(args.out, to_jsonable(summary))
    return 0
