"""Kiran et al.'s MAN tables on the synthetic ``occlusion`` benchmark, via ``videoreid ablate``.

A thin wrapper: it writes the synthetic dataset once, computes its DIS flow cache once, then
runs ``videoreid ablate configs/man/ablation/<table>`` with the CPU-sized overrides below
applied to every row (the rows themselves are the paper's configs; nothing is rebuilt here).
Equivalent commands::

    videoreid synth --layout mars --out runs/man_ablation/data --ids 32 --cameras 4 \\
        --preset occlusion --no-keypoints
    videoreid flow --dataset mars --root runs/man_ablation/data
    videoreid ablate configs/man/ablation/table2_mars --seeds 3 --out runs/man_ablation/table2_mars \\
        <the overrides printed by this script>

CPU-sized setting (not the paper's): ``resnet_tiny`` streams at 128×64, ε and RNN/TA widths
64, shallow flow CNN 16-32-32-32-32, P×K = 8×2, Adam lr 1e-3, ``--epochs`` × ``--iters``
steps, eval at the end on every clip (each row's own clip length), euclidean, the layout's
default protocol. Torch threads follow ``train.threads`` (automatic by default; add
``train.threads=1`` on a shared machine).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_overrides(args: argparse.Namespace, data_root: Path) -> list[str]:
    """The CPU-sized overrides for every row (``?key`` = only rows that have the key)."""
    e = args.epochs
    return [
        f"data.root={data_root}", "data.synth=null", "data.height=128", "data.width=64",
        "data.workers=0", f"data.P={args.P}", f"data.K={args.K}", "data.augment.pad=4",
        "model.args.backbone=resnet_tiny", "model.args.pretrained=null",
        "?model.args.embed_hidden=64", "?model.args.rnn_hidden=64",
        "?model.args.attention_hidden=64", "?model.args.flow_channels=[16, 32, 32, 32, 32]",
        "optim.name=adam", f"optim.lr={args.lr}", "optim.weight_decay=5e-4",
        "schedule.name=constant", f"train.epochs={e}", f"train.iters_per_epoch={args.iters}",
        "train.eval_every=0", f"train.checkpoint_every={e}", "train.keep_last=1",
        "train.device=cpu", "eval.batch_size=32",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/man_ablation", help="work folder (data, flow, runs)")
    p.add_argument("--table", default="table2_mars", help="folder under configs/man/ablation")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rows", nargs="+", help="only these rows (file stems)")
    p.add_argument("--ids", type=int, default=32)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--iters", type=int, default=20, help="steps per epoch")
    p.add_argument("--P", type=int, default=8)
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("overrides", nargs="*", help="further key=value overrides for every row")
    args = p.parse_args(argv)
    from videoreid.cli.main import main as videoreid
    from videoreid.engine.builders import generate_in_subprocess
    from videoreid.modalities.flow import compute_dataset_flows

    out = Path(args.out)
    data = out / "data"
    if not (data.is_dir() and any(data.iterdir())):  # written once, reused by every run
        generate_in_subprocess("mars", data, ids=args.ids, cameras=args.cameras,
                               preset="occlusion", seed=0, height=128, width=64,
                               keypoints=False)
    _, report = compute_dataset_flows("mars", data, workers=0, progress=False)
    print(f"# flow cache: {report.summary()}", flush=True)
    overrides = cpu_overrides(args, data) + list(args.overrides)
    print("# overrides: " + " ".join(f"'{o}'" for o in overrides), flush=True)
    cmd = ["ablate", str(ROOT / "configs" / "man" / "ablation" / args.table),
           "--seeds", str(args.seeds), "--out", str(out / args.table), *overrides]
    if args.rows:
        cmd += ["--rows", *args.rows]
    return videoreid(cmd)


if __name__ == "__main__":
    sys.exit(main())
