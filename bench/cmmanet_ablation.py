"""CMMANet tables III–IV (Hu et al.) on the synthetic ``occlusion`` benchmark, via ``videoreid ablate``.

A thin wrapper: it writes the synthetic dataset once under ``--out``, then runs
``videoreid ablate configs/cmmanet/ablation/<table>`` with the CPU-sized overrides below
applied to every row (the rows themselves are the paper's configs; nothing is rebuilt here).
Table IV (``table4_mars``, default): Baseline, + Single MAM, + Loss_con, + Multi-MAM,
+ Loss_con (the full model); table III (``--table table3_mars``): restricted random sampling
versus Random Interval Sampling, both on the full model. Equivalent commands::

    videoreid synth --layout mars --out runs/cmmanet_ablation/data --ids 64 --cameras 4 \\
        --preset occlusion --no-keypoints
    videoreid ablate configs/cmmanet/ablation/table4_mars --seeds 3 --out runs/cmmanet_ablation/table4_mars \\
        <the overrides printed by this script>

CPU-sized setting (not the paper's): ``resnet_tiny`` backbone (layer3 8×4, layer4 4×2 at
128×64, 64 channels), MAM hidden width 16 (the paper's ``D/8``), K = 4, N = 6 frames,
P×K = 8×2 clips, Adam lr 1e-3 (from scratch; the paper's 2e-4 is for a pre-trained
ResNet-50), weight decay 5e-4, constant lr, all loss weights 1, ``--epochs`` passes of the
P×K sampler (RIS draws a new interval each epoch; 100 passes = 400 steps on the default
data); flip + 4 px pad-and-crop; test clips of 6 consecutive frames averaged, euclidean, the
layout's default protocol (``market`` for the MARS layout). Torch threads follow
``train.threads`` (automatic by default; add ``train.threads=1`` on a shared machine).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_overrides(args: argparse.Namespace, data_root: Path) -> list[str]:
    """The CPU-sized overrides for every row."""
    e = args.epochs
    return [
        f"data.root={data_root}", "data.synth=null", "data.height=128", "data.width=64",
        "data.workers=0", f"data.P={args.P}", f"data.K={args.K}",
        "data.augment={flip: 0.5, pad: 4, erasing: 0.0, color_jitter: 0.0}",
        "model.args.backbone=resnet_tiny", "model.args.pretrained=null",
        f"model.args.hidden={args.hidden}",
        "optim.name=adam", f"optim.lr={args.lr}", "optim.weight_decay=5e-4",
        "schedule.name=constant", f"train.epochs={e}", "train.iters_per_epoch=null",
        "train.eval_every=0", f"train.checkpoint_every={e}", "train.keep_last=1",
        "train.device=cpu", "eval.batch_size=32",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/cmmanet_ablation", help="work folder (data, runs)")
    p.add_argument("--table", default="table4_mars", help="folder under configs/cmmanet/ablation")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rows", nargs="+", help="only these rows (file stems)")
    p.add_argument("--ids", type=int, default=64)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--epochs", type=int, default=100,
                   help="passes of the P x K sampler (4 steps each on the default data)")
    p.add_argument("--P", type=int, default=8)
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=16, help="MAM hidden width")
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
    cmd = ["ablate", str(ROOT / "configs" / "cmmanet" / "ablation" / args.table),
           "--seeds", str(args.seeds), "--out", str(out / args.table), *overrides]
    if args.rows:
        cmd += ["--rows", *args.rows]
    return videoreid(cmd)


if __name__ == "__main__":
    sys.exit(main())
