"""``videoreid export MODEL_DIR --format onnx|torchscript [--out FILE]``.

Writes a graph mapping clips ``images (B, T, 3, H, W)`` (``flow (B, T, 2, H, W)`` too for
flow models) to clip embeddings ``(B, D)``, with dynamic ``B`` and ``T``, then runs it on
random clips and prints the largest difference from PyTorch (``--no-check`` skips that).
See :mod:`videoreid.inference.export`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL_DIR", help="model package")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument("--out", type=Path, default=None,
                        help="output file (default MODEL_DIR/model.onnx or model.pt)")
    parser.add_argument("--no-check", action="store_true",
                        help="do not compare the exported model with PyTorch")


def run(args: argparse.Namespace) -> int:
    from videoreid.inference.export import ExportError, check_export, export_model
    from videoreid.inference.package import PackageError, read_package

    try:
        flow = "flow" in read_package(args.model).modalities
        path = export_model(args.model, args.out, args.format)
    except (ExportError, PackageError, ValueError) as e:
        print(f"videoreid export: {e}", file=sys.stderr)
        return 2
    print(f"exported {args.model} to {path} ({args.format}; inputs images"
          f"{' + flow' if flow else ''} "
          "(B, T, C, H, W) with dynamic B and T; output embedding (B, D))")
    if not args.no_check:
        try:
            diff = check_export(args.model, path)
        except ImportError as e:
            print(f"videoreid export: not checked: {e}", file=sys.stderr)
            return 0
        print(f"check: max |{args.format} - pytorch| = {diff:.2e} on random clips of two "
              "batch sizes and clip lengths")
    return 0
