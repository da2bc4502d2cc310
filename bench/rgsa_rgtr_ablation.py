"""Table 1 of RGSA/RGTR (Li et al., AAAI 2020) on the synthetic ``occlusion`` benchmark, via ``videoreid ablate``.

A thin wrapper: it writes the synthetic dataset once under ``--out``, then runs
``videoreid ablate configs/rgsa_rgtr/ablation/table1_mars`` with the CPU-sized overrides
below applied to every row (the rows themselves are the paper's configs; nothing is rebuilt
here). Rows: Baseline + L_ce; Baseline + L_total; RGSA + L_total; RGTR + L_total; RGSA+RGTR +
L_ce; RGSA+RGTR (IP) + L_total; RGSA+RGTR + L_total ("L_ce" = clip CE + frame CE, "L_total"
adds the adaptive weighted triplet; "Baseline" = spatial and temporal average pooling).
Equivalent commands::

    videoreid synth --layout mars --out runs/rgsa_rgtr_ablation/data --ids 64 --cameras 4 \\
        --preset occlusion --no-keypoints
    videoreid ablate configs/rgsa_rgtr/ablation/table1_mars --seeds 3 \\
        --out runs/rgsa_rgtr_ablation/table1_mars <the overrides printed by this script>

CPU-sized setting (not the paper's): ``resnet_tiny`` (C = 64, so r1 = 4 and r2 = 16 keep
C/r1 = 16 and C/r2 = 4 relation channels) from scratch, 128×64 frames, T = ``--seq-len`` = 4
frames per training clip and dense test clips of T with stride T/2, P×K = 4×4, Adam lr 1e-3,
``--epochs`` passes of the P×K sampler (8 steps each on the default data) with one ×0.1
decay at 80 % (the paper's decays at 1/3 and 2/3 of 375 epochs would leave a run of a few
hundred steps mostly at a learning rate too small to learn anything), eval at the end:
cosine distance on the "both"-normalised features (§4.2), the layout's default protocol.
Only table 1 on MARS (the data are MARS-layout): tables 2 and 3 sweep r1/r2 and T, which these overrides fix. Torch threads
follow ``train.threads`` (automatic by default; add ``train.threads=1`` on a shared machine).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = "table1_mars"


def cpu_overrides(args: argparse.Namespace, data_root: Path) -> list[str]:
    """The CPU-sized overrides for every row."""
    t, e = args.seq_len, args.epochs
    return [
        f"data.root={data_root}", "data.synth=null", "data.height=128", "data.width=64",
        f"data.train_sampler.args.length={t}",
        f"data.test_plan.args={{length: {t}, stride: {max(t // 2, 1)}}}",
        f"data.P={args.P}", f"data.K={args.K}", "data.workers=0",
        "model.args.backbone=resnet_tiny", "model.args.pretrained=none",
        "model.args.image_size=[128, 64]", f"model.args.seq_len={t}",
        "model.args.r1=4", "model.args.r2=16",
        f"optim.lr={args.lr}", f"schedule.milestones=[{int(0.8 * e)}]",
        f"train.epochs={e}", "train.iters_per_epoch=null", "train.eval_every=0",
        f"train.checkpoint_every={e}", "train.keep_last=1", "train.device=cpu",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/rgsa_rgtr_ablation", help="work folder (data, runs)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rows", nargs="+", help="only these rows (file stems)")
    p.add_argument("--ids", type=int, default=64)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--epochs", type=int, default=50,
                   help="passes of the P x K sampler (8 steps each on the default data)")
    p.add_argument("--seq-len", type=int, default=4)
    p.add_argument("--P", type=int, default=4)
    p.add_argument("--K", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3,
                   help="Adam lr (paper: 3e-4 for a pretrained ResNet-50)")
    p.add_argument("overrides", nargs="*", help="further key=value overrides for every row")
    args = p.parse_args(argv)
    if args.rows:  # overrides written after --rows land there: give them back
        args.overrides += [r for r in args.rows if "=" in r]
        args.rows = [r for r in args.rows if "=" not in r]
    from videoreid.cli.main import main as videoreid
    from videoreid.engine.builders import generate_in_subprocess

    out = Path(args.out)
    data = out / "data"
    if not (data.is_dir() and any(data.iterdir())):  # written once, reused by every run
        generate_in_subprocess("mars", data, ids=args.ids, cameras=args.cameras,
                               preset="occlusion", seed=0, height=128, width=64,
                               keypoints=False)
    overrides = cpu_overrides(args, data) + list(args.overrides)
    print("# overrides: " + " ".join(f"'{o}'" for o in overrides), flush=True)
    cmd = ["ablate", str(ROOT / "configs" / "rgsa_rgtr" / "ablation" / TABLE),
           "--seeds", str(args.seeds), "--out", str(out / TABLE), *overrides]
    if args.rows:
        cmd += ["--rows", *args.rows]
    return videoreid(cmd)


if __name__ == "__main__":
    sys.exit(main())
