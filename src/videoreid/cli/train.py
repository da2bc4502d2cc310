"""``videoreid train CONFIG [key=value ...]``: train and evaluate as the config says.

Launch with ``torchrun --nproc_per_node N -m videoreid.cli.main train CONFIG`` for DDP.
The run directory (``output_dir``) receives the resolved config, run info, per-epoch log,
checkpoints, final features and ``metrics.json`` (see ``videoreid.engine.builders``), and at
the end ``report.html`` (:mod:`videoreid.viz.report`; ``--no-report`` skips it).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file (may use _base_)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides in YAML syntax, e.g. optim.lr=1e-3 train.epochs=5")
    parser.add_argument("--no-report", action="store_true",
                        help="do not write report.html at the end (`videoreid visualize` can)")


def run(args: argparse.Namespace) -> int:
    from videoreid.config import ConfigError, load_config
    from videoreid.engine.builders import train_from_config
    from videoreid.engine.distributed import cleanup, get_dist_info, setup_logging

    setup_logging()
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"videoreid train: {e}", file=sys.stderr)
        return 2
    from videoreid.models.backbones.weights import WeightsError

    try:
        summary = train_from_config(cfg)
    except (ConfigError, WeightsError) as e:  # refused config, weights unavailable: no traceback
        print(f"videoreid train: {e}", file=sys.stderr)
        return 2
    finally:
        cleanup()
    if get_dist_info().is_main:
        print(summary.get("table") or format_summary(summary))
        print(f"run directory: {cfg.output_dir} (metrics.json, log.csv, checkpoints/)")
        if not args.no_report:
            write_run_report(cfg.output_dir)
    return 0


def write_run_report(run_dir: str) -> None:
    """``report.html`` of a finished run; a failure is reported, the run's files stay valid."""
    from videoreid.viz.report import write_report

    try:
        print(f"report: {write_report(run_dir)}")
    except Exception as e:  # the run itself succeeded: say what went wrong, exit 0
        print(f"videoreid train: report.html not written ({type(e).__name__}: {e}); retry with "
              f"`videoreid visualize {run_dir}`", file=sys.stderr)


def format_summary(summary: dict) -> str:
    """Final metrics as aligned ``name  value`` lines (percentages for mAP/CMC)."""
    lines = []
    metrics = summary.get("metrics", {})
    for block in metrics if isinstance(metrics, list) else [metrics]:
        for k, v in block.items():
            lines.append(f"{k:<45s} {100 * v:6.2f}" if isinstance(v, float) else f"{k}: {v}")
    for key in ("mean", "std"):
        if summary.get(key) is not None:
            lines.append(f"{key} over splits ({summary.get('protocol')}): "
                         f"{json.dumps(summary[key], default=str)}")
    return "\n".join(lines)
