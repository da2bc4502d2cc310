"""STAN table-1 ablation on the synthetic ``occlusion`` benchmark (CPU-sized).

Trains the rows of Li et al. (CVPR 2018) table 1 with the project's trainer, following the
paper's protocol (sec. 4.2) at toy scale:

1. **Baseline**: tiny ResNet + global average pool + temporal average + FC to 128 dims,
   trained from scratch on the synthetic MARS-layout training set;
2. **SpaAtn**, **SpaAtn+Q'**, **SpaAtn+Q**, **SpaAtn+Q+MaxPool**, **SpaAtn+Q+TemAtn**: the CNN
   initialised from the Baseline run and kept fixed (``optim.param_groups`` ``frozen``) while
   the K spatial attention models (and E, temporal attention, head) train;
3. **SpaAtn+Q+TemAtn+Ind**: the same start, CNN fixed for the first ``--attn-epochs`` epochs
   (``freeze_epochs``) and then the whole network fine-tuned for ``--ind-epochs`` more;
4. optionally **SpaAtn+Q+TemAtn, E=identity** (``--with-identity-e``) to show E's effect.

Every run is ``configs/stan/synthetic_occlusion.yaml`` plus the row's overrides (printed and
saved). The identity loss of every row is softmax CE by default (``--loss oim`` for the
paper's OIM, which collapses when the tiny network is trained from scratch; see that config). After each attention run the receptive fields of the test tracklets (query + gallery,
the first frame of each of 6 segments, padded frames excluded) are measured:

- ``overlap``: mean pairwise Bhattacharyya coefficient ``Σ_l √(s_i,l s_j,l)`` over the
  ``K(K−1)`` pairs of fields of a frame (1 = identical, 0 = disjoint; eq. 8's ``1 − H²``);
- ``Q``: the Hellinger diversity term (eq. 9) per frame;
- ``size``: effective field size ``exp(entropy)`` in cells (of ``L``), to see Q' concentrate
  the fields (sec. 3.3).

Results go to ``<out>/results.json`` and ``<out>/table.md``. Usage::

    python bench/stan_ablation.py --out runs/stan_ablation

Single seed, small test set: differences of a few points are within noise (see the table's
footnote, which reports the number of queries).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from videoreid.config import load_config, save_resolved
from videoreid.data.clips import TestClipDataset, collate_clips
from videoreid.data.temporal import build_plan
from videoreid.engine.builders import build_splits, build_transforms, prepare_data_root, train_split
from videoreid.utils.io import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "stan" / "synthetic_occlusion.yaml"
ID_LOSSES = {"ce": "{name: ce, weight: 1.0}",
             "oim": "{name: oim, weight: 1.0, scalar: 30.0, momentum: 0.5}"}


def diversity(variant: str, weight: float) -> str:
    return f"{{name: diversity, key: spatial, variant: {variant}, weight: {weight}}}"


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Table-1 rows: name, overrides, whether the CNN comes from the Baseline run."""
    q, qp = diversity("hellinger", args.q_weight), diversity("q_prime", args.q_weight)
    ident = ID_LOSSES[args.loss]  # the identity loss of every row
    frozen = 'optim.param_groups=[{match: "backbone.", frozen: true}]'
    attn = ["model.args.spatial=true", "model.args.enhancement=second_order"]
    out = [
        {"name": "Baseline", "epochs": args.base_epochs, "init": False,
         "overrides": ["model.args.spatial=false", "model.args.enhancement=identity",
                       "model.args.temporal=avg", f"loss=[{ident}]"]},
        {"name": "SpaAtn", "overrides": [*attn, "model.args.temporal=avg", f"loss=[{ident}]", frozen]},
        {"name": "SpaAtn+Q'", "overrides": [*attn, "model.args.temporal=avg", f"loss=[{ident}, {qp}]",
                                            frozen]},
        {"name": "SpaAtn+Q", "overrides": [*attn, "model.args.temporal=avg", f"loss=[{ident}, {q}]",
                                           frozen]},
        {"name": "SpaAtn+Q+MaxPool", "overrides": [*attn, "model.args.temporal=max",
                                                   f"loss=[{ident}, {q}]", frozen]},
        {"name": "SpaAtn+Q+TemAtn", "overrides": [*attn, "model.args.temporal=softmax",
                                                  f"loss=[{ident}, {q}]", frozen]},
        {"name": "SpaAtn+Q+TemAtn+Ind", "epochs": args.attn_epochs + args.ind_epochs,
         "overrides": [*attn, "model.args.temporal=softmax", f"loss=[{ident}, {q}]",
                       'optim.param_groups=[{match: "backbone.", lr_mult: 1.0, '
                       f'freeze_epochs: {args.attn_epochs}}}]']},
    ]
    if args.with_identity_e:
        out.append({"name": "SpaAtn+Q+TemAtn, E=identity",
                    "overrides": ["model.args.spatial=true", "model.args.enhancement=identity",
                                  "model.args.temporal=softmax", f"loss=[{ident}, {q}]", frozen]})
    for r in out:
        r.setdefault("epochs", args.attn_epochs)
        r.setdefault("init", True)
    return out


@torch.no_grad()
def field_statistics(model: torch.nn.Module, split: Any, cfg: Any, device: torch.device) -> dict:
    """Receptive-field overlap, Q and effective size over the test frames (see module doc)."""
    if not getattr(model, "spatial", False):
        return {}
    _, tf = build_transforms(cfg)
    plan = build_plan(cfg.data.test_plan.name, **cfg.data.test_plan.args)
    ds = TestClipDataset(list(split.query) + list(split.gallery), plan, tf)
    loader = DataLoader(ds, batch_size=cfg.eval.batch_size, collate_fn=collate_clips)
    model.eval()
    overlap, q, size, n = 0.0, 0.0, 0.0, 0
    for batch in loader:
        images = batch["images"].to(device)
        mask = batch.get("frame_mask")
        out = model({"images": images, "frame_mask": mask.to(device) if mask is not None else None})
        s = out.attention["spatial"].flatten(-2).float()  # (B, T, K, L)
        real = mask.reshape(-1).to(device) if mask is not None else slice(None)
        s = s.reshape(-1, s.shape[-2], s.shape[-1])[real]  # (frames, K, L)
        k = s.shape[1]
        r = s.clamp_min(0).sqrt()
        bc = r @ r.transpose(1, 2)  # (frames, K, K)
        off = ~torch.eye(k, dtype=torch.bool, device=bc.device)
        overlap += float(bc[:, off].mean(1).sum())
        q += float((bc - torch.eye(k, device=bc.device)).pow(2).sum((1, 2)).sum())
        ent = -(s * s.clamp_min(1e-12).log()).sum(-1)  # (frames, K)
        size += float(ent.exp().mean(1).sum())
        n += s.shape[0]
    return {"overlap": overlap / n, "Q": q / n, "size": size / n, "cells": int(s.shape[-1]),
            "K": k, "frames": n}


def run_row(row: dict, args: argparse.Namespace, base_ckpt: Path | None) -> dict:
    out_dir = Path(args.out) / row["name"].replace("+", "_").replace("'", "prime") \
        .replace(", ", "_").replace("=", "")
    overrides = [
        f"data.root={args.data or Path(args.out) / 'data'}", f"output_dir={out_dir}",
        f"data.synth.ids={args.ids}", f"seed={args.seed}",
        f"train.epochs={row['epochs']}", f"schedule.milestones=[{int(row['epochs'] * 0.75)}]",
        f"train.checkpoint_every={row['epochs']}", *row["overrides"],
    ]
    if row["init"]:
        overrides.append(f"model.args.init_from={base_ckpt}")
    overrides += args.override
    cfg = load_config(CONFIG, overrides)
    save_resolved(cfg, out_dir)
    prepare_data_root(cfg)
    (split,) = build_splits(cfg)
    device = torch.device("cpu")
    t0, c0 = time.time(), time.process_time()
    result = train_split(cfg, split, out_dir, device)
    wall, cpu = time.time() - t0, time.process_time() - c0
    metrics = result["metrics"]
    prefix = next(k for k in metrics if k.endswith("/mAP"))[: -len("/mAP")]
    stats = field_statistics(result["trainer"].module, split, cfg, device)
    rec = {"name": row["name"], "epochs": row["epochs"], "overrides": overrides,
           "mAP": metrics[f"{prefix}/mAP"], "rank1": metrics[f"{prefix}/rank1"],
           "rank5": metrics.get(f"{prefix}/rank5"), "queries": len(split.query),
           "gallery": len(split.gallery), "train_tracklets": len(split.train),
           "wall_s": wall, "cpu_s": cpu, "checkpoint": str(out_dir / "checkpoints"
                                                            / f"epoch_{row['epochs']:04d}.pt"),
           **stats}
    print(json.dumps({k: v for k, v in rec.items() if k != "overrides"}), flush=True)
    return rec


def chance_level(run_dir: Path) -> tuple[float, float]:
    """Expected mAP and rank-1 of a random ranking on a finished run's query/gallery sets."""
    from videoreid.evaluation.chance import chance_metrics
    from videoreid.evaluation.features import FeatureSet

    c = chance_metrics(FeatureSet.load(run_dir / "features.npz"), "market")
    return c["mAP"], c["rank1"]


def fmt(x: float | None, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def table(records: list[dict], args: argparse.Namespace) -> str:
    lines = ["| variant | epochs | mAP | R1 | R5 | overlap | Q | field size (cells) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        size = f"{r['size']:.1f} / {r['cells']}" if "size" in r else "–"
        lines.append(f"| {r['name']} | {r['epochs']} | {fmt(r['mAP'])} | {fmt(r['rank1'])} | "
                     f"{fmt(r['rank5'])} | {fmt(r.get('overlap'), False)} | "
                     f"{fmt(r.get('Q'), False)} | {size} |")
    r0 = records[0]
    lines.append("")
    lines.append(f"{r0['queries']} queries, {r0['gallery']} gallery tracklets, "
                 f"{r0['train_tracklets']} training tracklets; seed {args.seed}; "
                 f"total CPU time {sum(r['cpu_s'] for r in records) / 60:.1f} min.")
    c_map, c_r1 = chance_level(Path(r0["checkpoint"]).parents[1])
    lines.append(f"Chance (random features, 20 draws): mAP {100 * c_map:.1f}, R1 {100 * c_r1:.1f}.")
    return "\n".join(lines)


def aggregate(dirs: list[Path]) -> str:
    """Mean ± std over runs (one per seed) of every metric, row by row."""
    runs = [json.loads((d / "results.json").read_text()) for d in dirs]
    names = [r["name"] for r in runs[0]["rows"]]
    lines = ["| variant | mAP | R1 | R5 | overlap | Q | field size (cells) |",
             "|---|---|---|---|---|---|---|"]

    def cell(name: str, key: str, pct: bool) -> str:
        vals = [row[key] for run in runs for row in run["rows"]
                if row["name"] == name and row.get(key) is not None]
        if not vals:
            return "–"
        t = torch.tensor(vals, dtype=torch.float64) * (100 if pct else 1)
        sd = float(t.std()) if len(vals) > 1 else 0.0
        return f"{float(t.mean()):.1f} ± {sd:.1f}" if pct else f"{float(t.mean()):.2f} ± {sd:.2f}"

    for n in names:
        lines.append(f"| {n} | {cell(n, 'mAP', True)} | {cell(n, 'rank1', True)} | "
                     f"{cell(n, 'rank5', True)} | {cell(n, 'overlap', False)} | "
                     f"{cell(n, 'Q', False)} | {cell(n, 'size', False)} |")
    seeds = [run["args"]["seed"] for run in runs]
    cpu = sum(row["cpu_s"] for run in runs for row in run["rows"]) / 60
    c_map, c_r1 = chance_level(Path(runs[0]["rows"][0]["checkpoint"]).parents[1])
    lines += ["", f"mean ± std over seeds {seeds} ({len(runs)} runs); total CPU time {cpu:.1f} min. "
              f"Chance (random features, 20 draws): mAP {100 * c_map:.1f}, R1 {100 * c_r1:.1f}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/stan_ablation")
    p.add_argument("--data", default=None, help="synthetic data root (default: <out>/data)")
    p.add_argument("--aggregate", nargs="+", default=None, metavar="DIR",
                   help="only combine the results.json of these runs (mean ± std over seeds)")
    p.add_argument("--ids", type=int, default=64, help="synthetic identities (half train)")
    p.add_argument("--base-epochs", type=int, default=60)
    p.add_argument("--attn-epochs", type=int, default=40)
    p.add_argument("--ind-epochs", type=int, default=20)
    p.add_argument("--q-weight", type=float, default=0.1)
    p.add_argument("--loss", choices=sorted(ID_LOSSES), default="ce",
                   help="identity loss of every row (ce: see configs/stan/synthetic_occlusion.yaml)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--with-identity-e", action="store_true")
    p.add_argument("--only", nargs="*", default=None, help="row names to run (Baseline always)")
    p.add_argument("--override", nargs="*", default=[], help="extra config overrides")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.aggregate:
        text = aggregate([Path(d) for d in args.aggregate])
        atomic_write_text(Path(args.out) / "table_seeds.md", text + "\n")
        print(text)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    base_ckpt: Path | None = None
    for row in rows(args):
        if args.only is not None and row["name"] != "Baseline" and row["name"] not in args.only:
            continue
        rec = run_row(row, args, base_ckpt)
        if row["name"] == "Baseline":
            base_ckpt = Path(rec["checkpoint"])
        records.append(rec)
        atomic_write_json(out / "results.json", {"args": vars(args), "rows": records})
    text = table(records, args)
    atomic_write_text(out / "table.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
