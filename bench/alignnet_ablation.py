"""AlignNet table 1b on the synthetic ``occlusion`` benchmark via ``videoreid ablate``, and TAP
weights versus per-frame occlusion.

The rows are the paper's configs, ``configs/alignnet/ablation/table1b_mars/`` (Baseline,
AlignNet + AvgPool, AlignNet + TAP, and the two variants: separate TAP per part, printed
equations); this script only adds CPU-sized overrides (tiny ResNet, keypoint source — the
generator's ground-truth keypoints rendered as OpenPose maps —, 128x64 frames, 15/5 training
chunks of which ``--train-length`` frames per clip, 15-frame test chunks averaged, euclidean)
and runs ``videoreid ablate`` with them (resumable; mean ± 95% interval over ``--seeds``,
paired differences from the Baseline). Equivalent command: printed by the script.

After the table, the TAP weights of every real test frame (query + gallery, 15-frame chunks)
of each TAP run are compared with the occluded fraction the synthetic manifest records:

- mean weight of clean frames (``occluded = 0``, no detector failure), partly occluded
  (``0 < occluded < 0.3``) and heavily occluded (``occluded >= 0.3``) frames;
- ``AUC``: over pairs (heavily occluded frame, clean frame) *of the same test chunk* (so
  clip-level offsets cancel), the fraction where the occluded frame gets the lower weight
  (0.5 = no relation, 1 = always lower), for the appearance and the part TAP;
- the same AUC for the untrained model (same seed), to show what training changed.

Usage::

    python bench/alignnet_ablation.py --out runs/alignnet_ablation --seeds 3
"""

from __future__ import annotations

import argparse
import math
import sys
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
    load_model_from_checkpoint,
    seed_everything,
)
from videoreid.utils.io import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]

TABLE = ROOT / "configs" / "alignnet" / "ablation" / "table1b_mars"
TAP_ROWS = ("02_alignnet_tap", "03_alignnet_tap_separate_parts", "04_alignnet_tap_printed_equations")


def cpu_overrides(args: argparse.Namespace) -> list[str]:
    """CPU-sized settings applied to every row (see module docstring)."""
    e = args.epochs
    return [
        f"data.root={Path(args.out) / 'data'}",
        f"data.synth={{layout: mars, ids: {args.ids}, cameras: {args.cameras}, preset: occlusion, "
        "seed: 0, height: 128, width: 64}",
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
        "eval.batch_size=16",
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


# ------------------------------------------------------------------------- main


def tap_analysis(run_dir: Path) -> dict[str, Any]:
    """TAP-vs-occlusion summary of a finished ``videoreid ablate`` run (and untrained)."""
    from videoreid.engine.checkpoint import CheckpointManager

    cfg = load_config(run_dir / "config.yaml")
    (split,) = build_splits(cfg)
    modalities = build_modalities(cfg)
    truth = _frame_truth(Path(cfg.data.root))
    model = load_model_from_checkpoint(cfg, CheckpointManager(run_dir / "checkpoints").latest(),
                                       split.num_train_pids, torch.device("cpu"))
    out = {"trained": tap_summary(tap_records(model, split, cfg, modalities, truth))}
    seed_everything(cfg.seed)
    untrained = build_model_from_config(cfg, split.num_train_pids)
    out["untrained"] = tap_summary(tap_records(untrained, split, cfg, modalities, truth))
    return out


def tap_table(name: str, res: dict[str, Any]) -> str:
    lines = [f"TAP weights of the test frames ({name}) by occluded fraction:", "",
             "| weights | clean | partly (0–0.3) | heavily (≥0.3) | detector failure | "
             "AUC within chunk (pairs) | Spearman vs occluded | AUC untrained |",
             "|---|---|---|---|---|---|---|---|"]
    keys = [k for k in res["trained"] if k.startswith("w_")]
    for key in keys:
        s, u = res["trained"][key], res["untrained"][key]
        cells = [f"{s[g]['mean']:.3f} ({s[g]['frames']})" for g in
                 ("clean", "partly (0-0.3)", "heavily (>=0.3)", "detector failure")]
        lines.append(f"| {key} | " + " | ".join(cells) +
                     f" | {s['auc_within_chunk']:.3f} ({s['pairs']}) | "
                     f"{s['spearman_vs_occluded']:.3f} | {u['auc_within_chunk']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/alignnet_ablation")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rows", nargs="+", help="only these rows (file stems)")
    p.add_argument("--ids", type=int, default=48, help="synthetic identities (half train)")
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--iters", type=int, default=25, help="iterations per epoch")
    p.add_argument("--P", type=int, default=8)
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--train-length", type=int, default=8, help="frames per training clip")
    p.add_argument("--tap-hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--no-tap-analysis", action="store_true")
    p.add_argument("overrides", nargs="*", help="further key=value overrides for every row")
    args = p.parse_args(argv)
    from videoreid.cli.main import main as videoreid

    out = Path(args.out)
    overrides = cpu_overrides(args) + list(args.overrides)
    print("# videoreid ablate " + str(TABLE) + f" --seeds {args.seeds} --out {out / 'table1b_mars'} "
          + " ".join(f"'{o}'" for o in overrides), flush=True)
    cmd = ["ablate", str(TABLE), "--seeds", str(args.seeds), "--out", str(out / "table1b_mars"),
           *overrides]
    if args.rows:
        cmd += ["--rows", *args.rows]
    rc = videoreid(cmd)
    if args.no_tap_analysis:
        return rc
    texts, results = [], {}
    for row in TAP_ROWS:
        for seed in range(args.seeds):
            run_dir = out / "table1b_mars" / row / f"seed{seed}"
            if not (run_dir / "ablate_result.json").is_file():
                continue
            results[f"{row}/seed{seed}"] = res = tap_analysis(run_dir)
            texts.append(tap_table(f"{row}, seed {seed}", res))
    if results:
        atomic_write_json(out / "tap_occlusion.json", results)
        atomic_write_text(out / "tap_occlusion.md", "\n\n".join(texts) + "\n")
        print("\n\n".join(texts))
    return rc


if __name__ == "__main__":
    sys.exit(main())
