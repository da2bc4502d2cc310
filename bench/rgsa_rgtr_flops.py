"""Multiply-accumulates of one RGSA+RGTR clip at the paper's size, counted by PyTorch.

``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs of every matmul/conv/bmm the
forward pass dispatches (2 FLOPs = 1 MAC), per module. One clip: T = 8 frames of 256×128,
ResNet-50 with ``last_stride=1`` (16×8 map, N = 128 positions, C = 2048), r1 = 32, r2 = 256,
eval mode, random weights (FLOPs do not depend on them). Elementwise work (BN, ReLU, sigmoid,
softmax) is not counted — it is small next to the matmuls and convs. Prints a markdown table
(rows: backbone, RGSA relation module, RGSA ``W_A``, RGTR, total) and writes ``--json``.

Usage (the figures in docs/methods/rgsa_rgtr.md)::

    python bench/rgsa_rgtr_flops.py --json runs/rgsa_rgtr_flops.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from videoreid.models.rgsa_rgtr import RGSARGTR
from videoreid.utils.io import atomic_write_json


def count(relation_impl: str, t: int, height: int, width: int) -> dict[str, float]:
    """GMAC per clip, per part of the model."""
    model = RGSARGTR(0, backbone="resnet50", seq_len=t, image_size=(height, width),
                     relation_impl=relation_impl).eval()
    images = torch.randn(1, t, 3, height, width)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model({"images": images})
    flops = counter.get_flop_counts()

    def gmac(name: str) -> float:
        return sum(flops.get(name, {}).values()) / 2e9

    total = sum(sum(v.values()) for k, v in flops.items() if k == "Global") / 2e9
    return {
        "backbone": gmac("RGSARGTR.backbone"),
        "rgsa_relation": gmac("RGSARGTR.rgsa.relation"),
        "rgsa_W_A": gmac("RGSARGTR.rgsa.attention"),
        "rgtr": gmac("RGSARGTR.rgtr"),
        "total": total,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    results = {impl: count(impl, args.frames, args.height, args.width)
               for impl in ("projected", "naive")}
    print(f"GMAC per clip (T={args.frames}, {args.height}x{args.width}, forward, "
          "matmul/conv only)\n")
    print("| part | projected | naive |")
    print("|---|---|---|")
    for key in ("backbone", "rgsa_relation", "rgsa_W_A", "rgtr", "total"):
        print(f"| {key} | {results['projected'][key]:.2f} | {results['naive'][key]:.2f} |")
    if args.json:
        atomic_write_json(args.json, {"frames": args.frames, "height": args.height,
                                      "width": args.width, "gmac_per_clip": results})


if __name__ == "__main__":
    main()
