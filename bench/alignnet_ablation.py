"""AlignNet table-1b ablation on the synthetic ``occlusion`` benchmark (CPU-sized), and TAP
weights versus per-frame occlusion.

Trains the three rows of Rambhatla & Jones (BMVC 2019) table 1b with the project's trainer,
from ``configs/alignnet/mars.yaml`` plus CPU-sized overrides (tiny ResNet, keypoint source
— the generator's ground-truth keypoints rendered as OpenPose maps —, 128x64 frames, 15/5
training chunks, 15-frame test chunks averaged, euclidean distance):

1. **Baseline**: ResNet + spatial and temporal average pooling (``parts=false temporal=avg``);
2. **AlignNet + AvgPool**: composite part features, temporal average (``temporal=avg``);
3. **AlignNet + TAP**: composite part features, temporal attention pooling (``temporal=tap``).

Same data, seed, schedule, losses (CE + margin ranking) and head for all rows. After the TAP
row, the TAP weights of every real frame of the test tracklets (query + gallery, 15-frame
test chunks) are compared with the occluded fraction the synthetic manifest records per
frame (the fraction of the body's pixels hidden by an occluder):

- mean weight of clean frames (``occluded = 0``, no detector failure), partly occluded
  (``0 < occluded < 0.3``) and heavily occluded (``occluded >= 0.3``) frames;
- ``AUC``: over pairs (heavily occluded frame, clean frame) *of the same test chunk* (so
  clip-level offsets cancel), the fraction where the occluded frame gets the lower weight
  (0.5 = no relation, 1 = always lower), for the appearance and the part TAP;
- the same AUC for the untrained model (same seed), to show what training changed.

Results go to ``<out>/results.json`` and ``<out>/table.md``. Usage::

    python bench/alignnet_ablation.py --out runs/alignnet_ablation

Single seed, small test set: differences of a few points are within noise.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from videoreid.config import load_config
from videoreid.data.clips import TestClipDataset, collate_clips
from videoreid.data.temporal import build_plan
from videoreid.engine.builders import (
    build_modalities,
    build_model_from_config,
    build_splits,
    build_transforms,
    prepare_data_root,
    seed_everything,
    train_split,
)
from videoreid.utils.io import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "alignnet" / "mars.yaml"

ROWS: tuple[tuple[str, list[str]], ...] = (
    ("Baseline", ["model.args.parts=false", "model.args.temporal=avg", "data.modalities=[]"]),
    ("AlignNet + AvgPool", ["model.args.parts=true", "model.args.temporal=avg"]),
    ("AlignNet + TAP", ["model.args.parts=true", "model.args.temporal=tap"]),
)
# Not table-1b rows (--extra): eq. 3 with a learned or a fixed larger softmax scale on the
# composite maps (with the printed scale 1, r̄ is nearly uniform over the 4 x 2 grid).
EXTRA: tuple[tuple[str, list[str]], ...] = (
    ("AlignNet + TAP, learned part scale", ["model.args.parts=true", "model.args.temporal=tap",
                                            "model.args.learn_part_scale=true"]),
    ("AlignNet + TAP, part scale 50", ["model.args.parts=true", "model.args.temporal=tap",
                                       "model.args.part_scale=50"]),
)


def base_overrides(args: argparse.Namespace) -> list[str]:
    """CPU-sized settings on top of configs/alignnet/mars.yaml (see module docstring)."""
    e = args.epochs
    return [
        f"seed={args.seed}",
        f"data.root={Path(args.out) / 'data'}",
        f"data.synth={{layout: mars, ids: {args.ids}, cameras: {args.cameras}, preset: occlusion, "
        f"seed: {args.seed}, height: 128, width: 64}}",
        "data.height=128", "data.width=64", "data.workers=0",
        f"data.P={args.P}", f"data.K={args.K}",
        f"data.train_sampler.args.length={args.train_length}",
        "data.modalities=[pose]",
        "model.args.backbone=resnet_tiny", "model.args.pretrained=null",
        "model.args.pose_source=keypoints", "model.args.pose_weights=null",
        f"model.args.tap_hidden={args.tap_hidden}",
        "optim.name=adam", f"optim.lr={args.lr}", "optim.weight_decay=5e-4",
        "optim.param_groups=[]",
        "schedule.name=multistep", f"schedule.milestones=[{int(e * 0.75)}]",
        f"train.epochs={e}", f"train.iters_per_epoch={args.iters}", "train.eval_every=0",
        f"train.checkpoint_every={e}", "train.keep_last=1", "train.device=cpu",
        "train.progress=false", "eval.batch_size=16",
    ]


# ------------------------------------------------------------------ TAP vs occlusion


def _frame_truth(root: Path) -> dict[str, tuple[float, bool]]:
    from videoreid.data.synthetic import SynthManifest

    m = SynthManifest.load(root)
    return {str((root / f).resolve()): (float(o), bool(fail))
            for t in m.tracklets
            for f, o, fail in zip(t.frames, t.occluded, t.failure, strict=True)}


@torch.no_grad()
def tap_records(model: torch.nn.Module, split: Any, cfg: Any, modalities: dict,
                truth: dict[str, tuple[float, bool]]) -> dict[str, np.ndarray]:
    """Per real test frame: TAP weights, occluded fraction, failure flag, chunk id."""
    _, tf = build_transforms(cfg)
    plan = build_plan(cfg.data.test_plan.name, **cfg.data.test_plan.args)
    tracklets = list(split.query) + list(split.gallery)
    ds = TestClipDataset(tracklets, plan, tf, modalities=modalities)
    loader = DataLoader(ds, batch_size=cfg.eval.batch_size, collate_fn=collate_clips)
    model.eval()
    cols: dict[str, list] = {k: [] for k in ("w_app", "w_part", "occ", "fail", "clip")}
    for batch in loader:
        out = model(batch)
        wa, wp = out.attention["tap/appearance"], out.attention["tap/parts"]
        for r in range(wa.shape[0]):
            k = int(batch["index"][r])
            t = tracklets[int(batch["tracklet_index"][r])]
            indices, mask = plan(len(t))[int(batch["clip_index"][r])]
            for j, (fi, real) in enumerate(zip(indices, mask, strict=True)):
                if not real:
                    continue
                occ, fail = truth[str(Path(t.frames[int(fi)]).resolve())]
                cols["w_app"].append(float(wa[r, j]))
                cols["w_part"].append(float(wp[r, j]))
                cols["occ"].append(occ)
                cols["fail"].append(fail)
                cols["clip"].append(k)
    return {k: np.asarray(v) for k, v in cols.items()}


def within_clip_auc(w: np.ndarray, occ: np.ndarray, fail: np.ndarray, clip: np.ndarray,
                    heavy: float = 0.3) -> tuple[float, int]:
    """P(w_occluded < w_clean) over (heavily occluded, clean) frame pairs of one chunk."""
    wins, pairs = 0.0, 0
    clean = (occ == 0) & ~fail
    bad = occ >= heavy
    for c in np.unique(clip[bad]):
        sel = clip == c
        wb, wc = w[sel & bad], w[sel & clean]
        if len(wb) and len(wc):
            diff = wb[:, None] - wc[None, :]
            wins += float((diff < 0).sum() + 0.5 * (diff == 0).sum())
            pairs += diff.size
    return (wins / pairs if pairs else math.nan), pairs


def tap_summary(rec: dict[str, np.ndarray]) -> dict[str, Any]:
    occ, fail = rec["occ"], rec["fail"]
    groups = {"clean": (occ == 0) & ~fail, "partly (0-0.3)": (occ > 0) & (occ < 0.3),
              "heavily (>=0.3)": occ >= 0.3, "detector failure": fail}
    out: dict[str, Any] = {"frames": int(len(occ))}
    for key in ("w_app", "w_part"):
        w = rec[key]
        out[key] = {name: {"mean": float(w[m].mean()) if m.any() else math.nan,
                           "frames": int(m.sum())} for name, m in groups.items()}
        auc, pairs = within_clip_auc(w, occ, fail, rec["clip"])
        out[key]["auc_within_chunk"] = auc
        out[key]["pairs"] = pairs
        out[key]["spearman_vs_occluded"] = _spearman(w, occ)
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = _average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for v in np.unique(x):  # ties (many frames have occluded = 0) share their mean rank
        m = x == v
        ranks[m] = ranks[m].mean()
    return ranks


# ------------------------------------------------------------------------- rows


def run_row(name: str, overrides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    out_dir = Path(args.out) / re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    ov = [*base_overrides(args), *overrides, f"output_dir={out_dir}", *args.override]
    cfg = load_config(CONFIG, ov)
    prepare_data_root(cfg)
    (split,) = build_splits(cfg)
    t0, c0 = time.time(), time.process_time()
    result = train_split(cfg, split, out_dir, torch.device("cpu"))
    wall, cpu = time.time() - t0, time.process_time() - c0
    metrics = result["metrics"]
    prefix = next(k for k in metrics if k.endswith("/mAP"))[: -len("/mAP")]
    log_rows = (out_dir / "log.csv").read_text().splitlines()
    rec = {"name": name, "overrides": ov, "mAP": metrics[f"{prefix}/mAP"],
           "rank1": metrics[f"{prefix}/rank1"], "rank5": metrics.get(f"{prefix}/rank5"),
           "queries": len(split.query), "gallery": len(split.gallery),
           "train_chunks": len(split.train), "wall_s": wall, "cpu_s": cpu,
           "first_loss": _loss(log_rows, 1), "last_loss": _loss(log_rows, -1)}
    module = result["trainer"].module
    rec["part_scale"] = float(module.part_log_scale.detach().exp()) if module.parts else None
    if "TAP" in name:
        truth = _frame_truth(Path(cfg.data.root))
        modalities = build_modalities(cfg)
        rec["tap"] = tap_summary(tap_records(module, split, cfg, modalities, truth))
        seed_everything(cfg.seed)
        untrained = build_model_from_config(cfg, split.num_train_pids)
        rec["tap_untrained"] = tap_summary(tap_records(untrained, split, cfg, modalities, truth))
    print(json.dumps({k: v for k, v in rec.items() if k != "overrides"}), flush=True)
    return rec


def _loss(rows: list[str], i: int) -> float | None:
    header = rows[0].split(",")
    if "loss/total" not in header or len(rows) < 2:
        return None
    return float(rows[i].split(",")[header.index("loss/total")])


def fmt(x: float | None, pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def table(records: list[dict], args: argparse.Namespace) -> str:
    lines = ["| variant | mAP | R1 | R5 | loss first → last epoch |", "|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['name']} | {fmt(r['mAP'])} | {fmt(r['rank1'])} | {fmt(r['rank5'])} "
                     f"| {fmt(r['first_loss'], False)} → {fmt(r['last_loss'], False)} |")
    r0 = records[0]
    lines += ["", f"{r0['queries']} queries, {r0['gallery']} gallery tracklets, "
              f"{r0['train_chunks']} training chunks; {args.epochs} epochs x {args.iters} "
              f"iterations of {args.P}x{args.K} clips of {args.train_length} frames; seed "
              f"{args.seed}; total CPU time {sum(r['cpu_s'] for r in records) / 60:.1f} min."]
    for tap in (r for r in records if "tap" in r):
        lines += ["", f"TAP weights of the test frames ({tap['name']}) by occluded fraction:", "",
                  "| weights | clean | partly (0–0.3) | heavily (≥0.3) | detector failure | "
                  "AUC within chunk (pairs) | Spearman vs occluded | AUC untrained |",
                  "|---|---|---|---|---|---|---|---|"]
        for key, label in (("w_app", "appearance TAP"), ("w_part", "part TAP")):
            s, u = tap["tap"][key], tap["tap_untrained"][key]
            cells = [f"{s[g]['mean']:.3f} ({s[g]['frames']})" for g in
                     ("clean", "partly (0-0.3)", "heavily (>=0.3)", "detector failure")]
            lines.append(f"| {label} | " + " | ".join(cells) +
                         f" | {fmt(s['auc_within_chunk'], False)} ({s['pairs']}) | "
                         f"{fmt(s['spearman_vs_occluded'], False)} | "
                         f"{fmt(u['auc_within_chunk'], False)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/alignnet_ablation")
    p.add_argument("--ids", type=int, default=48, help="synthetic identities (half train)")
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--iters", type=int, default=25, help="iterations per epoch")
    p.add_argument("--P", type=int, default=8)
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--train-length", type=int, default=8, help="frames per training clip")
    p.add_argument("--tap-hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--only", nargs="*", default=None, help="row names to run")
    p.add_argument("--extra", action="store_true",
                   help="also run AlignNet + TAP with a learned part softmax scale")
    p.add_argument("--override", nargs="*", default=[], help="extra config overrides")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    for name, overrides in ROWS + (EXTRA if args.extra else ()):
        if args.only is not None and name not in args.only:
            continue
        records.append(run_row(name, overrides, args))
        atomic_write_json(out / "results.json", {"args": vars(args), "rows": records})
    text = table(records, args)
    atomic_write_text(out / "table.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
