"""``videoreid package RUN_DIR|CHECKPOINT --out MODEL_DIR``: a self-describing model package.

Writes ``model.safetensors`` (inference weights, no classifier) and ``model.json`` (model,
preprocessing, clip plan, normalisation, provenance); see
:mod:`videoreid.inference.package`. The package is all ``videoreid embed``,
``videoreid export`` and ``videoreid.load_model`` need.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, metavar="RUN_DIR|CHECKPOINT",
                        help="a training run folder (config.yaml + checkpoints/) or a checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="package folder to write")
    parser.add_argument("--config", type=Path, default=None,
                        help="config file (default: the run's config.yaml)")


def run(args: argparse.Namespace) -> int:
    from videoreid.engine.distributed import setup_logging
    from videoreid.inference.package import PackageError, package_from_run

    setup_logging()
    try:
        pkg = package_from_run(args.source, args.out, config=args.config)
    except (PackageError, FileNotFoundError) as e:
        print(f"videoreid package: {e}", file=sys.stderr)
        return 2
    m = pkg.meta
    pre = m["preprocessing"]
    print(f"model package {pkg.directory}: {pkg.name}, embedding {m['embedding_dim']}-d, "
          f"input {pre['height']}x{pre['width']}, plan {pre['test_plan']['name']} "
          f"{pre['test_plan'].get('args', {})}, {m['retrieval']['metric']} distance, "
          f"sha256 {pkg.sha256[:12]}…; dropped {len(m['weights']['dropped'])} training-only "
          "tensors")
    return 0
