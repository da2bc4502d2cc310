"""``videoreid extract CONFIG --checkpoint CKPT --out FILE``: query+gallery features to a file.

Writes a ``videoreid.evaluation.features.FeatureSet`` (.npz) with the config's test clip plan
and ``eval.normalize``; evaluate it later with ``videoreid evaluate-features``.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    parser.add_argument("--out", required=True, help="output feature file (.npz)")


def run(args: argparse.Namespace) -> int:
    from videoreid.cli.evaluate import resolve_checkpoint
    from videoreid.config import ConfigError, load_config
    from videoreid.data.temporal import build_plan
    from videoreid.engine.builders import (
        build_modalities,
        build_splits,
        build_transforms,
        inference_options,
        load_model_from_checkpoint,
    )
    from videoreid.engine.distributed import resolve_device, setup_logging
    from videoreid.engine.extract import extract_split

    setup_logging()
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"videoreid extract: {e}", file=sys.stderr)
        return 2
    if isinstance(cfg.data.dataset, list):
        print("videoreid extract: a feature file holds one dataset; `videoreid evaluate` "
              "evaluates a joint config per dataset", file=sys.stderr)
        return 2
    if cfg.data.split == "all":
        print("videoreid extract: choose one split (data.split=K); a feature file holds one",
              file=sys.stderr)
        return 2
    device = resolve_device(cfg.train.device)
    (split,) = build_splits(cfg)
    ckpt = resolve_checkpoint(args.checkpoint, None)
    model = load_model_from_checkpoint(cfg, ckpt, split.num_train_pids, device)
    _, test_tf = build_transforms(cfg)
    plan = build_plan(cfg.data.test_plan.name, **cfg.data.test_plan.args)
    fs = extract_split(model, split, plan, test_tf, batch_size=cfg.eval.batch_size,
                       device=device, normalize=cfg.eval.normalize, workers=cfg.data.workers,
                       modalities=build_modalities(cfg), amp=cfg.train.amp,
                       progress=cfg.train.progress, **inference_options(cfg))
    fs.save(args.out)
    print(f"wrote {len(fs.features)} features of dimension {fs.features.shape[1]} "
          f"({split.describe()}, checkpoint {ckpt}) to {args.out}")
    return 0
