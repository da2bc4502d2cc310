"""``videoreid ablate DIR [--seeds N] [key=value ...]``: the rows of one paper table × seeds.

Runs every row config of ``DIR`` (``NN_name.yaml``, sorted; the first row is the reference)
for each seed, skipping row × seed runs that already finished, then writes into ``--out``:
``table.md`` (mean ± 95% t-interval of mAP and rank-1 per row, paired difference from the
first row) , ``ablation.png`` and ``summary.json``. ``key=value`` overrides apply to every
row, e.g. a CPU-sized budget::

    videoreid ablate configs/man/ablation/table2 --seeds 3 --out runs/ablate/man_table2 \\
        model.args.backbone=resnet_tiny train.epochs=10 train.device=cpu
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="table folder of row configs (e.g. configs/man/ablation/table2)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides applied to every row, e.g. train.epochs=5")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first..first+N-1")
    parser.add_argument("--out", help="output folder (default runs/ablate/<method>_<table>)")
    parser.add_argument("--rows", nargs="+", metavar="ROW",
                        help="run only these rows (file stems); the table shows every row")
    parser.add_argument("--summary-only", action="store_true",
                        help="run nothing; summarise the runs that finished")
    parser.add_argument("--progress", action="store_true", help="progress bars while training")


def default_out(folder: str | Path) -> Path:
    """``runs/ablate/<parent>_<folder>`` (``configs/man/ablation/table2`` → ``man_table2``)."""
    p = Path(folder).resolve()
    parent = p.parent.parent.name if p.parent.name == "ablation" else p.parent.name
    return Path("runs") / "ablate" / f"{parent}_{p.name}"


def run(args: argparse.Namespace) -> int:
    from videoreid.config import ConfigError
    from videoreid.engine.ablate import (
        AblationError,
        format_markdown,
        run_ablation,
        summarise,
    )
    from videoreid.engine.builders import to_jsonable
    from videoreid.utils.io import atomic_write_json, atomic_write_text
    from videoreid.viz.ablation import plot_ablation

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.seeds < 1:
        print("videoreid ablate: --seeds must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_out(args.folder)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    overrides = list(args.overrides)
    if not args.progress:
        overrides.insert(0, "train.progress=false")
    try:
        runs = run_ablation(args.folder, out, seeds, overrides, only_rows=args.rows,
                            execute=not args.summary_only)
        summary = summarise(runs)
    except (ConfigError, AblationError) as e:
        print(f"videoreid ablate: {e}", file=sys.stderr)
        return 2
    command = " ".join(shlex.quote(a) for a in [
        "videoreid", "ablate", str(args.folder), "--seeds", str(args.seeds),
        *(["--first-seed", str(args.first_seed)] if args.first_seed else []),
        "--out", str(out), *args.overrides])
    table = format_markdown(summary, command)
    atomic_write_text(out / "table.md", table)
    atomic_write_json(out / "summary.json", to_jsonable(summary))
    plot_ablation(summary, out / "ablation.png", title=Path(args.folder).name)
    print(table)
    missing = sum(len(e["missing_seeds"]) for e in summary["rows"])
    print(f"wrote {out / 'table.md'}, {out / 'ablation.png'}, {out / 'summary.json'}"
          + (f"; {missing} row x seed runs missing (failed or not run: see ablate_error.txt "
             "in their folders)" if missing else ""))
    return 1 if missing and not args.summary_only and not args.rows else 0

