"""STAN tables 1–2 (Li et al., CVPR 2018) on the synthetic ``occlusion`` benchmark, via ``videoreid ablate``.

A thin wrapper: it writes the synthetic dataset once under ``--out``, then runs
``videoreid ablate configs/stan/ablation/<table>`` with the CPU-sized overrides below applied
to every row (the rows themselves are the paper's configs; nothing is rebuilt here).
Equivalent commands::

    videoreid synth --layout mars --out runs/stan_ablation/data --ids 64 --cameras 4 \\
        --preset occlusion --no-keypoints
    videoreid ablate configs/stan/ablation/table1_mars --seeds 3 --out runs/stan_ablation/table1_mars \\
        --rows 00_baseline 01_spaatn 02_spaatn_qprime 03_spaatn_q 04_spaatn_q_maxpool 05_spaatn_q_tematn \\
        <the overrides printed by this script>

CPU-sized setting (not the paper's): ``resnet_tiny`` with ``last_stride=1`` (128×64 frames
give the paper's 8×4 grid), K = 4 attention models of width d = 32, 128-d output, P×K = 8×2
tracklets of 6 restricted-random frames, flip + 5 px pad-and-crop, Adam lr 1e-3 (weight decay
5e-4), ``--epochs`` passes of the P×K sampler with the lr ×0.1 at 75 %, eval at the end
(first frame of each of 6 segments, cosine). Softmax CE replaces OIM as the identity loss
(``loss.0``; OIM does not learn a tiny network from scratch, see
``configs/stan/synthetic_occlusion.yaml``; ``--loss oim`` keeps the rows' OIM).

Every row trains its CNN from scratch (``optim.param_groups=[]``): the paper's rows 01–05 keep
the CNN of a fine-tuned Baseline fixed, which one ``ablate`` call cannot chain. With that
override row 06 (+Ind) is the same run as row 05, so it is left out by default. Table 2
(``--table table2_mars``) keeps each row's K. Torch threads follow ``train.threads``
(automatic by default; add ``train.threads=1`` on a shared machine).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = {"table1_mars": ["00_baseline", "01_spaatn", "02_spaatn_qprime", "03_spaatn_q",
                                "04_spaatn_q_maxpool", "05_spaatn_q_tematn"]}


def cpu_overrides(args: argparse.Namespace, data_root: Path) -> list[str]:
    """The CPU-sized overrides for every row."""
    e = args.epochs
    out = [
        f"data.root={data_root}", "data.synth=null", "data.height=128", "data.width=64",
        "data.workers=0", f"data.P={args.P}", f"data.K={args.K}",
        "data.augment={flip: 0.5, pad: 5, erasing: 0.0, color_jitter: 0.0}",
        "model.args.backbone=resnet_tiny", "model.args.pretrained=null",
        "model.args.last_stride=1", "model.args.d=32", "model.args.embed_dim=128",
        "optim.name=adam", f"optim.lr={args.lr}", "optim.weight_decay=5e-4",
        "optim.param_groups=[]", f"schedule.milestones=[{max(1, int(0.75 * e))}]",
        f"train.epochs={e}", "train.iters_per_epoch=null", "train.eval_every=0",
        f"train.checkpoint_every={e}", "train.keep_last=1", "train.device=cpu",
        "eval.batch_size=32",
    ]
    if not args.table.startswith("table2"):  # table 2 is the sweep over K
        out.append("model.args.K=4")
    if args.loss == "ce":
        out.append("loss.0={name: ce, weight: 1.0}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/stan_ablation", help="work folder (data, runs)")
    p.add_argument("--table", default="table1_mars", help="folder under configs/stan/ablation")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rows", nargs="+",
                   help="only these rows (file stems); default for table1: all but 06 (= 05 here)")
    p.add_argument("--ids", type=int, default=64, help="synthetic identities (half train)")
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--epochs", type=int, default=60, help="passes of the P x K sampler")
    p.add_argument("--P", type=int, default=8)
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", choices=("ce", "oim"), default="ce",
                   help="identity loss (row 0 of every row's loss list)")
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
    cmd = ["ablate", str(ROOT / "configs" / "stan" / "ablation" / args.table),
           "--seeds", str(args.seeds), "--out", str(out / args.table), *overrides]
    rows = args.rows or DEFAULT_ROWS.get(args.table)
    if rows:
        cmd += ["--rows", *rows]
    return videoreid(cmd)


if __name__ == "__main__":
    sys.exit(main())
