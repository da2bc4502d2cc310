"""``videoreid demo [--out DIR] [--quick]``: synthetic data → train → evaluate → report, on CPU.

1. generates (or reuses) a synthetic MARS-layout dataset in ``OUT/data``;
2. trains the small baseline of ``configs/demo.yaml`` (tiny ResNet, 128×64 frames, T = 4,
   CE + batch-hard triplet) on the CPU into ``OUT/run``;
3. evaluates the final features under the MARS ``market`` and ``official`` protocols and
   prints the table next to the chance level of each (the expected score of a random
   ranking, computed exactly from the label structure, see :func:`videoreid.evaluation.chance.chance_metrics`);
4. writes the report into ``OUT/run``: ``report.html`` (:mod:`videoreid.viz.report`: metrics,
   CMC, cameras, training curves, best/median/worst queries, attention; its PNGs beside it,
   among them ``training_curves.png`` and ``ranked_results.png``), ``report.json``
   (metrics, chance, timings) and ``report.md``.

``--quick`` shrinks data and training to seconds (for tests: the numbers mean little).
Threads: the demo gives PyTorch ``cores − workers`` threads (at least 1) so that decoding
workers and the model do not fight over the cores; ``--threads`` overrides.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

from videoreid.evaluation.chance import chance_metrics

log = logging.getLogger(__name__)

PROTOCOLS = ("market", "official")
QUICK = [
    "data.synth.ids=16", "data.synth.cameras=3", "data.synth.args.tracklet_len=[8, 16]",
    "data.P=4", "data.K=2", "train.epochs=2", "train.iters_per_epoch=3", "train.eval_every=0",
    "train.checkpoint_every=1",
]


def default_config() -> Path:
    """The shipped ``configs/demo.yaml`` (package data, so an installed wheel has it too)."""
    from videoreid.config import packaged_configs

    return packaged_configs() / "demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo",
                        help="output folder (data in OUT/data, run in OUT/run); default runs/demo")
    parser.add_argument("--quick", action="store_true",
                        help="tiny data and two short epochs (seconds; for smoke tests)")
    parser.add_argument("--config", default=None, help="demo config (default configs/demo.yaml)")
    parser.add_argument("--threads", type=int, default=None,
                        help="PyTorch threads (default: cores minus data workers, at least 1)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.epochs=20")


# --------------------------------------------------------------------------- report


def _fmt_pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def run(args: argparse.Namespace) -> int:
    import torch

    from videoreid.config import ConfigError, load_config
    from videoreid.engine.builders import build_splits, train_from_config
    from videoreid.engine.distributed import setup_logging
    from videoreid.evaluation.features import FeatureSet
    from videoreid.evaluation.protocol import evaluate_features, format_table
    from videoreid.utils.io import atomic_write_json, atomic_write_text
    from videoreid.viz.report import write_report

    setup_logging()
    t_start = time.perf_counter()
    out = Path(args.out)
    config = Path(args.config) if args.config else default_config()
    if not config.is_file():
        print(f"videoreid demo: config {config} not found (run from a checkout, or pass "
              "--config)", file=sys.stderr)
        return 2
    overrides = [f"data.root={out / ('data_quick' if args.quick else 'data')}",
                 f"output_dir={out / ('run_quick' if args.quick else 'run')}"]
    overrides += (QUICK if args.quick else []) + list(args.overrides)
    try:
        cfg = load_config(config, overrides)
    except ConfigError as e:
        print(f"videoreid demo: {e}", file=sys.stderr)
        return 2
    threads = args.threads or max(1, (os.cpu_count() or 1) - cfg.data.workers)
    torch.set_num_threads(threads)
    run_dir = Path(cfg.output_dir)
    if run_dir.exists():  # the demo owns its run folder: start clean, keep the data
        shutil.rmtree(run_dir)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    (split,) = build_splits(cfg)  # generates the synthetic data on first use
    timings["data_s"] = time.perf_counter() - t
    print(f"data: {split.describe()} — {len(split.train)} train tracklets of "
          f"{split.num_train_pids} ids, {len(split.query)} queries, {len(split.gallery)} gallery "
          f"({cfg.data.root})")

    t = time.perf_counter()
    train_from_config(cfg)
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    fs = FeatureSet.load(run_dir / "features.npz")
    results, chance = [], {}
    for protocol in PROTOCOLS:
        results.append(evaluate_features(fs, protocol, cfg.eval.metric))
        chance[protocol] = chance_metrics(fs, protocol)
    timings["evaluate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    main = results[0]
    report_html = write_report(run_dir)  # also training_curves.png, ranked_results.png
    curves, ranking = run_dir / "training_curves.png", run_dir / "ranked_results.png"
    timings["report_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start

    table = format_table(results)
    chance_lines = [f"chance ({p}): mAP {_fmt_pct(c['mAP'])}, rank-1 {_fmt_pct(c['rank1'])}"
                    for p, c in chance.items()]
    report = {
        "command": "videoreid demo " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["demo"]
        else " ".join(sys.argv),
        "config": str(config),
        "overrides": overrides,
        "torch_threads": threads,
        "cpu_count": os.cpu_count(),
        "dataset": {"root": cfg.data.root, "train_tracklets": len(split.train),
                    "train_ids": split.num_train_pids, "query": len(split.query),
                    "gallery": len(split.gallery)},
        "results": {r["protocol"]: {"mAP": r["mAP"], "mINP": r["mINP"],
                                    "cmc": {f"rank{k}": float(r["cmc"][k - 1])
                                            for k in (1, 5, 10, 20) if k <= len(r["cmc"])},
                                    "num_valid": r["num_valid"], "num_query": r["num_query"],
                                    "num_gallery": r["num_gallery"]} for r in results},
        "chance": chance,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "files": {"report": report_html.name, "curves": curves.name, "ranking": ranking.name,
                  "cmc": "cmc.png", "log": "log.csv",
                  "features": "features.npz", "config": "config.yaml"},
    }
    atomic_write_json(run_dir / "report.json", report)
    md = "\n".join([
        "# videoreid demo report", "",
        f"The full report, with the CMC curve, the per-camera table, the best, median and "
        f"worst queries and attention pictures: [{report_html.name}]({report_html.name}).", "",
        f"Synthetic MARS-layout data ({len(split.train)} training tracklets of "
        f"{split.num_train_pids} identities; {len(split.query)} queries, {len(split.gallery)} "
        f"gallery tracklets), model `{cfg.model.name}` {cfg.model.args}, "
        f"{cfg.train.epochs} epochs, CPU, {threads} thread(s).", "",
        "```", table, "```", "",
        *[f"- {line}" for line in chance_lines], "",
        f"Time: {timings['total_s']:.0f} s (data {timings['data_s']:.0f} s, training "
        f"{timings['train_s']:.0f} s, evaluation {timings['evaluate_s']:.1f} s, report "
        f"{timings['report_s']:.1f} s).", "",
        "![training curves](training_curves.png)", "",
        "![ranked results](ranked_results.png)", "",
    ])
    atomic_write_text(run_dir / "report.md", md)

    print()
    print(table)
    for line in chance_lines:
        print(line)
    ratio = main["mAP"] / max(chance[main["protocol"]]["mAP"], 1e-12)
    print(f"{main['protocol']} mAP {_fmt_pct(main['mAP'])} = {ratio:.1f}× chance; "
          f"total time {timings['total_s']:.0f} s ({threads} torch thread(s), "
          f"{cfg.data.workers} data worker(s))")
    print(f"report: {report_html} (+ report.md, report.json, {curves.name}, {ranking.name})")
    if not math.isfinite(main["mAP"]):
        return 1
    return 0
