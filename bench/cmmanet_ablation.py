"""CMMANet ablation (tables III–IV of Hu et al.) on the synthetic ``occlusion`` benchmark.

Trains each variant from scratch with the same data, seed, budget and hyper-parameters and
reports retrieval (mAP, rank-1, rank-5) plus how concentrated each MAM's submodules are:

* ``baseline``              — tables IV/V "Baseline": no MAM, CE + triplet
* ``single_mam``            — "Baseline + Single MAM" (MAM after layer4, diversity loss)
* ``single_mam_con``        — "... + Loss_con"
* ``multi_mam``             — "Baseline + Multi-MAM" (MAMs after layer3 and layer4)
* ``multi_mam_con``         — "... + Loss_con" (the full model)
* ``multi_mam_con_restricted`` — table III: the full model with restricted random sampling
  instead of Random Interval Sampling

Concentration is measured on the first 6-frame clip of every query and gallery tracklet
(eval mode): ``in_stripe`` = mean diagonal of ``Â`` (eq. 9), i.e. the share of submodule k's
attention mass that lies in horizontal stripe k (``1/K`` for uniform maps, 1 at the optimum
of Loss_con); ``overlap`` = mean pairwise Bhattacharyya coefficient ``Σ √(a_j a_k)`` of the
submodules (1 = identical maps, 0 = disjoint; the quantity the diversity loss pushes down);
``peak`` = mean of each map's largest weight.

Setting (CPU-sized, not the paper's): ``resnet_tiny`` backbone (layer3 8×4, layer4 4×2 at
128×64, 64 channels), MAM hidden width 16 (the paper's ``D/8``), K = 4, N = 6 frames,
P×K = 8×2 clips, Adam lr 1e-3 (from scratch; the paper's 2e-4 is for a pre-trained
ResNet-50), weight decay 5e-4, all loss weights 1, about ``--steps`` optimisation steps (whole
epochs of the P×K sampler; RIS draws a new interval each epoch); flip + 4 px pad-and-crop
augmentation; test clips of 6 consecutive frames averaged, euclidean distance, the layout's
default protocol (``market`` for the MARS layout). One thread (``--threads``): on a shared
machine two threads spend most of their CPU time spinning.
Dataset: ``generate("mars", ids=--ids, cameras=--cameras, preset="occlusion", seed=0)`` at
128×64, written once into ``--out/data``.

Each run reports the process CPU time it used (the machine is shared; wall time is not
meaningful). Example (the table in docs/methods/cmmanet.md)::

    .venv/bin/python bench/cmmanet_ablation.py --out runs/cmmanet_ablation --steps 400 \
        --json runs/cmmanet_ablation/results.json
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
    "baseline": {"mams": [], "con": False},
    "single_mam": {"mams": ["layer4"], "con": False},
    "single_mam_con": {"mams": ["layer4"], "con": True},
    "multi_mam": {"mams": ["layer3", "layer4"], "con": False},
    "multi_mam_con": {"mams": ["layer3", "layer4"], "con": True},
    "multi_mam_con_restricted": {"mams": ["layer3", "layer4"], "con": True,
                                 "sampler": "restricted_random"},
}
LABELS = {
    "baseline": "Baseline",
    "single_mam": "Baseline + Single MAM",
    "single_mam_con": "Baseline + Single MAM + Loss_con",
    "multi_mam": "Baseline + Multi-MAM",
    "multi_mam_con": "Baseline + Multi-MAM + Loss_con (RIS)",
    "multi_mam_con_restricted": "Baseline + Multi-MAM + Loss_con, restricted sampling",
}
MAM_KEY = {"layer3": "spatial/mam1", "layer4": "spatial/mam2"}


def make_config(variant: str, args: argparse.Namespace, seed: int) -> Any:
    from videoreid.config import config_from_dict

    v = VARIANTS[variant]
    keys = [MAM_KEY[m] for m in v["mams"]]
    loss: list[dict[str, Any]] = [{"name": "ce"}, {"name": "triplet", "margin": 0.3}]
    loss += [{"name": "diversity", "key": k, "variant": "hellinger"} for k in keys]
    if v["con"]:
        loss += [{"name": "concentration", "key": k} for k in keys]
    return config_from_dict({
        "seed": seed,
        "output_dir": str(Path(args.out) / f"{variant}_seed{seed}"),
        "data": {
            "dataset": "mars", "root": str(Path(args.out) / "data"),
            "height": 128, "width": 64,
            "synth": {"layout": "mars", "ids": args.ids, "cameras": args.cameras,
                      "preset": "occlusion", "seed": 0, "height": 128, "width": 64,
                      "args": {"keypoints": False}},
            "train_sampler": {"name": v.get("sampler", "random_interval"),
                              "args": ({"length": 6} if v.get("sampler")
                                       else {"length": 6, "max_interval": 4, "seed": seed})},
            "test_plan": {"name": "all_consecutive", "args": {"length": 6}},
            "P": args.P, "K": args.K, "workers": 0,
            "augment": {"flip": 0.5, "pad": 4, "erasing": 0.0, "color_jitter": 0.0},
        },
        "model": {"name": "cmmanet", "args": {"backbone": args.backbone, "mams": v["mams"],
                                             "K": 4, "hidden": args.hidden, "bnneck": False}},
        "loss": loss,
        "optim": {"name": "adam", "lr": args.lr, "weight_decay": 5e-4},
    })


@torch.no_grad()
def attention_stats(model: torch.nn.Module, split: Any, transform: Any) -> dict[str, Any]:
    """In-stripe mass, overlap and peak of each MAM on the first clip of every test tracklet."""
    from videoreid.data.clips import TestClipDataset, collate_clips
    from videoreid.losses.attention import stripe_assignment

    if not getattr(model, "stages", ()):
        return {}
    tracklets = list(split.query) + list(split.gallery)
    # One clip per tracklet: 6 consecutive frames from the start (padded if shorter).
    plan = _FirstClip(6)
    ds = TestClipDataset(tracklets, plan, transform)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, collate_fn=collate_clips)
    sums: dict[str, dict[str, float]] = {}
    model.eval()
    for batch in loader:
        out = model(batch)
        mask = batch["frame_mask"]
        for key, maps in out.attention.items():
            k = maps.shape[2]
            a = maps[mask]  # (N_real, K, h, w)
            assign = stripe_assignment(tuple(a.shape[-2:]), k).to(a.dtype)
            a_hat = a.flatten(2) @ assign  # (N, K, K), eq. 9
            r = a.flatten(2).sqrt()
            bc = r @ r.transpose(1, 2)
            off = ~torch.eye(k, dtype=torch.bool)
            s = sums.setdefault(key, {"in_stripe": 0.0, "overlap": 0.0, "peak": 0.0, "n": 0})
            s["in_stripe"] += float(a_hat.diagonal(dim1=1, dim2=2).mean(1).sum())
            s["overlap"] += float(bc[:, off].mean(1).sum())
            s["peak"] += float(a.flatten(2).amax(2).mean(1).sum())
            s["n"] += a.shape[0]
    return {key: {m: v / s["n"] for m, v in s.items() if m != "n"} for key, s in sums.items()}


class _FirstClip:
    """Test plan with one clip: the first ``length`` consecutive frames (padded if shorter)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, num_frames: int) -> list:
        from videoreid.data.temporal import AllConsecutive

        return AllConsecutive(self.length)(num_frames)[:1]


def run_variant(variant: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    from videoreid.data.temporal import build_plan
    from videoreid.engine import builders
    from videoreid.engine.extract import extract_features
    from videoreid.engine.hooks import HookBase
    from videoreid.engine.trainer import Trainer
    from videoreid.evaluation.distance import compute_distance
    from videoreid.evaluation.rank import evaluate

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
    train_tf, test_tf = builders.build_transforms(cfg)
    model = builders.build_model_from_config(cfg, split.num_train_pids)
    objective = builders.build_objective_from_config(cfg, model, split.num_train_pids)
    optimizer, _ = builders.build_optimizer(model, objective, name="adam", lr=cfg.optim.lr,
                                            weight_decay=cfg.optim.weight_decay)
    loader = builders.build_train_loader(cfg, split.train, train_tf)
    rec = Losses()
    # One epoch = one pass of the P×K sampler, so RIS redraws g every pass (sec. III-A).
    iters = len(loader)
    epochs = max(1, round(args.steps / iters))
    trainer = Trainer(model, objective, optimizer, loader, epochs=epochs, iters_per_epoch=iters,
                      hooks=[rec], progress=args.progress)
    trainer.train()
    train_cpu = time.process_time() - cpu0

    plan = build_plan(cfg.data.test_plan.name, **cfg.data.test_plan.args)
    qf = extract_features(model, split.query, plan, test_tf, batch_size=32,
                          progress=args.progress)
    gf = extract_features(model, split.gallery, plan, test_tf, batch_size=32,
                          progress=args.progress)
    q = ([t.pid for t in split.query], [t.camid for t in split.query])
    g = ([t.pid for t in split.gallery], [t.camid for t in split.gallery])
    res = evaluate(compute_distance(qf, gf, "euclidean"), q[0], g[0], q[1], g[1],
                   protocol=split.protocol)
    stats = attention_stats(model, split, test_tf)
    return {
        "variant": variant, "seed": seed, "label": LABELS[variant],
        "steps": epochs * iters, "mAP": float(res["mAP"]), "rank1": float(res["cmc"][0]),
        "rank5": float(res["cmc"][4]), "num_query": int(res.get("num_valid", len(q[0]))),
        "protocol": res.get("protocol", split.protocol),
        "attention": stats, "first_epoch_loss": rec.epochs[0], "last_epoch_loss": rec.epochs[-1],
        "train_cpu_s": train_cpu, "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
    }


def chance_map(split: Any) -> float:
    """Expected mAP of a random ranking under the split's protocol (exact, no draws)."""
    from videoreid.evaluation.chance import split_chance

    return split_chance(split)["mAP"]


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | seed | mAP | R1 | R5 | MAM1 in-stripe | MAM2 in-stripe | "
             "MAM1 overlap | MAM2 overlap | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        att = r["attention"]

        def cell(key: str, metric: str, att: dict = att) -> str:
            return f"{att[key][metric]:.3f}" if key in att else "–"

        lines.append(
            f"| {r['label']} | {r['seed']} | {100 * r['mAP']:.1f} | {100 * r['rank1']:.1f} | "
            f"{100 * r['rank5']:.1f} | {cell('spatial/mam1', 'in_stripe')} | "
            f"{cell('spatial/mam2', 'in_stripe')} | {cell('spatial/mam1', 'overlap')} | "
            f"{cell('spatial/mam2', 'overlap')} | {r['cpu_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="work folder (dataset + nothing else written)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--ids", type=int, default=64)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--P", type=int, default=8)
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--backbone", default="resnet_tiny")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write all results here (atomic)")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    from videoreid.engine import builders
    from videoreid.utils.io import atomic_write_json

    split = builders.build_splits(make_config("baseline", args, 0))[0]
    chance = chance_map(split)
    print(f"# data: {split.describe()}, {len(split.train)} train tracklets, "
          f"{split.num_train_pids} train ids, {len(split.query)} queries, "
          f"{len(split.gallery)} gallery, protocol {split.protocol}, chance mAP "
          f"{100 * chance:.1f}", flush=True)
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            r = run_variant(variant, args, seed)
            rows.append(r)
            print(json.dumps({k: r[k] for k in ("variant", "seed", "mAP", "rank1", "cpu_s")}),
                  flush=True)
            if args.json:  # rewrite after every run so a partial table survives
                atomic_write_json(args.json, {"command": " ".join(sys.argv), "chance_mAP": chance,
                                              "args": vars(args), "runs": rows})
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
