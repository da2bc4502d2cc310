"""``videoreid visualize RUN_DIR [--queries N]``: write ``RUN_DIR/report.html``.

One self-contained HTML file (pictures embedded) with the metrics per protocol, the CMC
curve, the per-camera-pair table, the training curves, the best/median/worst queries with
their ranked lists, and attention pictures of those queries and their top matches; the
PNGs stay beside it. The logic lives in :mod:`videoreid.viz.report`.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="run directory of `videoreid train` or `videoreid demo`")
    parser.add_argument("--queries", type=int, default=2,
                        help="queries shown per group: best, median, worst by AP (default 2)")
    parser.add_argument("--topk", type=int, default=5,
                        help="gallery tracklets shown per query (default 5)")
    parser.add_argument("--attention-matches", type=int, default=2,
                        help="top matches drawn with attention beside each query (default 2; "
                             "-1: no attention pictures)")
    parser.add_argument("--device", default="cpu", help="device for the attention pass (cpu)")


def run(args: argparse.Namespace) -> int:
    from videoreid.engine.distributed import setup_logging
    from videoreid.viz.report import ReportError, write_report

    setup_logging()
    if args.queries < 1 or args.topk < 1:
        print("videoreid visualize: --queries and --topk must be at least 1", file=sys.stderr)
        return 2
    try:
        path = write_report(args.run_dir, queries=args.queries, topk=args.topk,
                            attention_matches=args.attention_matches, device=args.device)
    except ReportError as e:
        print(f"videoreid visualize: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
