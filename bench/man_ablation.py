"""Table 2 of Kiran et al. (flow-guided Mutual Attention) on the synthetic ``occlusion`` benchmark.

Trains each row from scratch with the same data, seed, budget and hyper-parameters and
reports retrieval (mAP, rank-1, rank-5):

* ``baseline_tp``   — "Baseline [16] (One Stream), Pooling": ``baseline``, temporal average
* ``two_stream_tp`` — "No Attention (Two Stream), Pooling": ``man`` with ``stage=None``, avg
* ``gated_tp``      — "Gated Attention (One Stream), Pooling": ``gated_attention``, avg
* ``mutual_tp``     — "Mutual Attention (Two Stream), Pooling": ``man``, layer3, avg
* ``baseline_rnn``  — "Baseline [16], RNN"
* ``baseline_ta``   — "Baseline [16], Temporal Attention"
* ``mutual_wa``     — "Mutual Attention, Weighted Addition": ``man``, layer3, eq. 6–8

Setting (CPU-sized, not the paper's): ``resnet_tiny`` streams (layer3 8×4, layer4 4×2 at
128×64, 64 channels), ε width 64, RNN hidden 64, shallow flow CNN widths 16-32-32-32-32,
T = 4 consecutive frames, P×K = 8×2 clips, Adam lr 1e-3 from scratch, weight decay 5e-4,
CE + triplet (margin 0.3), plain classifier (no BNNeck, as in the paper), about ``--steps``
optimisation steps (whole passes of the P×K sampler), flip + 4 px pad-and-crop; test: every
clip of 4 consecutive frames, clip features averaged, euclidean, the layout's default
protocol (``market`` for the MARS layout). Flow: DIS (medium) computed once into the
dataset's ``flow_cache`` (its CPU time is reported). One torch thread (``--threads``): on a
shared machine two threads spend most of their CPU time spinning.
Dataset: ``generate("mars", ids=--ids, cameras=--cameras, preset="occlusion", seed=0)`` at
128×64, written once into ``--out/data``.

Example (the table in docs/methods/man.md)::

    .venv/bin/python bench/man_ablation.py --out runs/man_ablation --steps 200 \
        --json runs/man_ablation/results.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

VARIANTS: dict[str, dict[str, Any]] = {
    "baseline_tp": {"name": "baseline", "args": {"aggregation": "avg"}},
    "two_stream_tp": {"name": "man", "args": {"stage": None, "aggregation": "avg"}},
    "gated_tp": {"name": "gated_attention", "args": {"aggregation": "avg"}},
    "mutual_tp": {"name": "man", "args": {"stage": "layer3", "aggregation": "avg"}},
    "baseline_rnn": {"name": "baseline", "args": {"aggregation": "rnn"}},
    "baseline_ta": {"name": "baseline", "args": {"aggregation": "attention"}},
    "mutual_wa": {"name": "man", "args": {"stage": "layer3", "aggregation": "weighted"}},
}
LABELS = {
    "baseline_tp": ("Baseline (One Stream)", "Pooling", "75.8 / 83.1"),
    "two_stream_tp": ("No Attention (Two Stream)", "Pooling", "76.7 / 84.3"),
    "gated_tp": ("Gated Attention (One Stream)", "Pooling", "77.4 / 84.6"),
    "mutual_tp": ("Mutual Attention (Two Stream)", "Pooling", "79.1 / 85.4"),
    "baseline_rnn": ("Baseline", "RNN", "75.7 / 82.9"),
    "baseline_ta": ("Baseline", "Temporal Attention", "76.7 / 83.3"),
    "mutual_wa": ("Mutual Attention", "Weighted Addition", "80.0 / 86.6"),
}


def make_config(variant: str, args: argparse.Namespace, seed: int) -> Any:
    from videoreid.config import config_from_dict

    v = VARIANTS[variant]
    margs: dict[str, Any] = {"backbone": args.backbone, "bnneck": False, **v["args"]}
    if v["name"] == "man":
        margs.update(embed_hidden=args.embed_hidden, rnn_hidden=args.rnn_hidden)
    elif v["name"] == "gated_attention":
        margs.update(flow_channels=[16, 32, 32, 32, 32])
    else:
        margs.update(rnn_hidden=args.rnn_hidden, attention_hidden=64)
    return config_from_dict({
        "seed": seed,
        "output_dir": str(Path(args.out) / f"{variant}_seed{seed}"),
        "data": {
            "dataset": "mars", "root": str(Path(args.out) / "data"),
            "height": 128, "width": 64,
            "synth": {"layout": "mars", "ids": args.ids, "cameras": args.cameras,
                      "preset": "occlusion", "seed": 0, "height": 128, "width": 64,
                      "args": {"keypoints": False}},
            "train_sampler": {"name": "consecutive", "args": {"length": args.T}},
            "test_plan": {"name": "all_consecutive", "args": {"length": args.T}},
            "P": args.P, "K": args.K, "workers": 0,
            "augment": {"flip": 0.5, "pad": 4, "erasing": 0.0, "color_jitter": 0.0},
            "modalities": ["flow"] if v["name"] != "baseline" else [],
        },
        "model": {"name": v["name"], "args": margs},
        "loss": [{"name": "ce"}, {"name": "triplet", "margin": 0.3}],
        "optim": {"name": "adam", "lr": args.lr, "weight_decay": 5e-4},
    })


def run_variant(variant: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from videoreid.engine import builders
    from videoreid.engine.hooks import HookBase
    from videoreid.engine.trainer import Trainer

    class Losses(HookBase):
        def __init__(self) -> None:
            self.epochs: list[dict[str, float]] = []

        def after_epoch(self) -> None:
            self.epochs.append({k: float(v) for k, v in self.trainer.epoch_log.items()
                                if k.startswith("loss/")})

    cfg = make_config(variant, args, seed)
    split = builders.build_splits(cfg)[0]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    builders.seed_everything(cfg.seed)
    modalities = builders.build_modalities(cfg)
    train_tf, _ = builders.build_transforms(cfg)
    model = builders.build_model_from_config(cfg, split.num_train_pids)
    objective = builders.build_objective_from_config(cfg, model, split.num_train_pids)
    optimizer, _ = builders.build_optimizer(model, objective, name="adam", lr=cfg.optim.lr,
                                            weight_decay=cfg.optim.weight_decay)
    loader = builders.build_train_loader(cfg, split.train, train_tf, modalities)
    rec = Losses()
    iters = len(loader)
    epochs = max(1, round(args.steps / iters))
    Trainer(model, objective, optimizer, loader, epochs=epochs, iters_per_epoch=iters,
            hooks=[rec], progress=args.progress).train()
    train_cpu = time.process_time() - cpu0
    cfg.train.progress = args.progress
    res, _ = builders.evaluate_model(model, split, cfg, "cpu", modalities=modalities)
    return {
        "variant": variant, "seed": seed, "label": LABELS[variant][0],
        "aggregation": LABELS[variant][1], "paper": LABELS[variant][2],
        "steps": epochs * iters, "mAP": float(res["mAP"]), "rank1": float(res["cmc"][0]),
        "rank5": float(res["cmc"][4]), "protocol": res.get("protocol", split.protocol),
        "params": sum(p.numel() for p in model.parameters()),
        "first_epoch_loss": rec.epochs[0], "last_epoch_loss": rec.epochs[-1],
        "train_cpu_s": train_cpu, "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
    }


def chance_map(split: Any) -> float:
    """Expected mAP of a random ranking under the split's protocol (exact, no draws)."""
    from videoreid.evaluation.chance import split_chance

    return split_chance(split)["mAP"]


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | feature aggregation | seed | mAP | R1 | R5 | paper MARS mAP / R1 | "
             "params | CPU s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['aggregation']} | {r['seed']} | {100 * r['mAP']:.1f} | "
            f"{100 * r['rank1']:.1f} | {100 * r['rank5']:.1f} | {r['paper']} | "
            f"{r['params'] / 1e3:.0f} k | {r['cpu_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="work folder (dataset + flow cache)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--ids", type=int, default=32)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--P", type=int, default=8)
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--embed-hidden", type=int, default=64)
    p.add_argument("--rnn-hidden", type=int, default=64)
    p.add_argument("--backbone", default="resnet_tiny")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write all results here (atomic, after every run)")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    from videoreid.engine import builders
    from videoreid.modalities.flow import compute_dataset_flows
    from videoreid.utils.io import atomic_write_json

    split = builders.build_splits(make_config("baseline_tp", args, 0))[0]
    cpu0 = time.process_time()
    cache, report = compute_dataset_flows("mars", Path(args.out) / "data", workers=0,
                                          progress=args.progress)
    flow_cpu = time.process_time() - cpu0
    chance = chance_map(split)
    print(f"# command: {' '.join(sys.argv)}")
    print(f"# data: {split.describe()}, {len(split.train)} train tracklets, "
          f"{split.num_train_pids} train ids, {len(split.query)} queries, "
          f"{len(split.gallery)} gallery, protocol {split.protocol}, chance mAP "
          f"{100 * chance:.1f}; flow: {report.summary()} in {flow_cpu:.0f} CPU s "
          f"({cache.estimator['name']} {cache.estimator.get('preset', '')})", flush=True)
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            r = run_variant(variant, args, seed)
            rows.append(r)
            print(json.dumps({k: r[k] for k in ("variant", "seed", "mAP", "rank1", "cpu_s")}),
                  flush=True)
            if args.json:
                atomic_write_json(args.json, {"command": " ".join(sys.argv), "chance_mAP": chance,
                                              "flow_cpu_s": flow_cpu, "args": vars(args),
                                              "runs": rows})
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
