"""Peak memory of one training step with and without activation checkpointing and bf16.

The paper targets (a 40 GB GPU each):

* ``rgsa``: RGSA + RGTR (``configs/rgsa_rgtr/mars.yaml``): ResNet-50 (last_stride 1),
  256×128 frames, T = 8, P×K = 18×4 = 72 clips per batch.
* ``man``: MAN (``configs/man/mars.yaml``) with table 3's longest clips: two ResNet-50
  streams (RGB + flow), 224×112 frames, T = 16, 8×4 = 32 clips per batch.

Each is measured on CPU at the paper's frame size with few frames per step (RGSA/RGTR: B = 1
and 2 clips of its fixed T = 8; MAN: one clip of T = 4 and of T = 8; random weights, random
input), one fresh subprocess per setting, for the modes
``fp32``, ``ckpt`` (``train.activation_checkpointing=true``: every backbone stage), ``bf16``
(``train.amp=bf16``) and ``bf16+ckpt``. One step = forward (under autocast for bf16),
cross-entropy terms (RGSA/RGTR: clip + frame CE; MAN: CE; the metric losses' B×B terms are
left out, a few MB at B = 72), backward, Adam step.

Reported per run: ``peak_MB``, the peak resident-set growth during one steady-state step
(VmHWM after the step minus VmRSS before it; the method of ``bench/rgsa_rgtr_memory.py``,
whose ``steady_state_steps`` this script uses), with gradients of the previous step freed first. The
ratio column is each mode's peak over the fp32 peak measured in the same run.

Extrapolation to the paper batch (labelled EXTRAPOLATED in the table): the backbones fold
frames into the batch, so activation memory is linear in the frames per step F = B·T (the
temporal modules' T×T terms are negligible): ``peak(F) = peak(F1) + (F - F1) * slope`` from the
two measured points, plus the static memory (weights, gradients, Adam state: 16 bytes per parameter) that the step-peak
measurement does not include. This is a CPU measurement: a CUDA run adds the context
(~0.5-1 GB), cuDNN workspaces and allocator fragmentation, and CPU autocast keeps some ops in
float32 that CUDA runs in bf16, so treat the extrapolated GPU figure as an estimate, not a
guarantee.

Example (the figures in docs/training.md, "Activation checkpointing")::

    python bench/activation_memory.py --threads 2 --json runs/activation_memory.json
    python bench/activation_memory.py --target rgsa --modes fp32 ckpt   # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgsa_rgtr_memory import steady_state_steps  # noqa: E402  (the same measurement)

MB = 1024**2
MODES = ("fp32", "ckpt", "bf16", "bf16+ckpt")
# target -> (model name, model args, measured (B, T) points, (H, W), paper (B, T), modalities)
TARGETS: dict[str, tuple] = {
    "rgsa": ("rgsa_rgtr", {"backbone": "resnet50", "pretrained": "none", "last_stride": 1,
                           "seq_len": 8, "image_size": [256, 128]},
             ((1, 8), (2, 8)), (256, 128), (72, 8), ()),
    "man": ("man", {"backbone": "resnet50", "pretrained": "none", "stage": "layer3",
                    "aggregation": "weighted", "image_size": [224, 112]},
            ((1, 4), (1, 8)), (224, 112), (32, 16), ("flow",)),
}
LOSSES = {"rgsa_rgtr": [{"name": "ce"}, {"name": "frame_ce"}], "man": [{"name": "ce"}]}


def _worker(target: str, mode: str, batch: int, t: int, reps: int, threads: int) -> dict:
    import torch

    from videoreid.engine.amp import autocast, resolve_amp
    from videoreid.engine.memory import apply_activation_checkpointing
    from videoreid.engine.trainer import outputs_to_float
    from videoreid.losses import build_objective
    from videoreid.models.factory import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    name, args, _, (h, w), _, modalities = TARGETS[target]
    num_classes = 625
    if "seq_len" in args:
        args = dict(args, seq_len=t)
    model = build_model(name, num_classes, **args).train()
    if "ckpt" in mode:
        apply_activation_checkpointing(model, True)
    amp = resolve_amp("bf16" if "bf16" in mode else "none", "cpu")
    objective = build_objective(LOSSES[name], num_classes, 2048)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=5e-4)
    data = {"images": torch.randn(batch, t, 3, h, w), "pids": torch.arange(batch)}
    if "flow" in modalities:
        data["flow"] = torch.randn(batch, t, 2, h, w)

    def step() -> None:
        with autocast(amp):
            out = model(data)
        objective(outputs_to_float(out), data)["total"].backward()
        opt.step()

    times, cpu, peaks = steady_state_steps(step, lambda: opt.zero_grad(set_to_none=True), reps)
    if not peaks:
        raise RuntimeError("VmHWM cannot be reset here (/proc/self/clear_refs); no peak measured")
    n_params = sum(p.numel() for p in model.parameters())
    return {"target": target, "mode": mode, "batch": batch, "T": t, "H": h, "W": w,
            "peak_MB": max(peaks) / 1024, "static_MB": 16 * n_params / MB,
            "params": n_params, "step_s": statistics.median(times[1:]),
            "cpu_s": statistics.median(cpu[1:]), "threads": threads}


def _run(args: argparse.Namespace, target: str, mode: str, batch: int, t: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", target, mode, str(batch), str(t),
           "--reps", str(args.reps), "--threads", str(args.threads)]
    # Large buffers mmapped and unmapped on free, so RSS follows live memory (as in
    # bench/rgsa_rgtr_memory.py).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {target:4s} {mode:9s} B={batch} T={t}: peak +{res['peak_MB']:8.1f} MB  "
          f"step {res['step_s']:6.1f} s wall, {res['cpu_s']:6.1f} s CPU", file=sys.stderr)
    return res


def _table(results: list[dict], modes: list[str]) -> str:
    by = {(r["target"], r["mode"], r["batch"], r["T"]): r for r in results}
    lines = ["| target (frame size) | mode | measured: frames/step -> peak MB | ratio to fp32 "
             "(larger point) | step CPU-s | paper batch: EXTRAPOLATED GB (activations + static) |",
             "|---|---|---|---|---|---|"]
    for target, (name, _, points, (h, w), (pb, pt), _) in TARGETS.items():
        for mode in modes:
            rs = [by.get((target, mode, b, t)) for b, t in points]
            ref = by.get((target, "fp32", *points[-1]))
            if None in rs:
                continue
            (f1, f2) = (b * t for b, t in points)
            slope = (rs[1]["peak_MB"] - rs[0]["peak_MB"]) / (f2 - f1)
            ext = (rs[0]["peak_MB"] + (pb * pt - f1) * slope + rs[0]["static_MB"]) / 1024
            ratio = f"{rs[1]['peak_MB'] / ref['peak_MB']:.2f}" if ref else "-"
            measured = ", ".join(f"{b * t} -> {r['peak_MB']:.0f}" for (b, t), r in
                                 zip(points, rs, strict=True))
            lines.append(f"| {name} ({h}x{w}) | {mode} | {measured} | {ratio} | "
                         f"{rs[1]['cpu_s']:.1f} | {ext:.1f} at {pb}x{pt} frames |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=4, metavar=("TARGET", "MODE", "B", "T"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--target", choices=[*TARGETS, "both"], default="both")
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES))
    parser.add_argument("--reps", type=int, default=1, help="measured steps after the warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    if args.worker:
        target, mode, b, t = args.worker
        print(json.dumps(_worker(target, mode, int(b), int(t), args.reps, args.threads)))
        return 0
    targets = list(TARGETS) if args.target == "both" else [args.target]
    modes = list(dict.fromkeys(["fp32", *args.modes]))  # fp32 is the reference of the ratios
    results = [_run(args, tg, m, b, t) for tg in targets for m in modes
               for b, t in TARGETS[tg][2]]
    import torch

    meta = {"torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": args.threads,
            "reps": args.reps}
    if args.json:
        from videoreid.utils.io import atomic_write_json

        atomic_write_json(args.json, {"meta": meta, "results": results})
    print(f"torch {meta['torch']}, CPU, {args.threads} threads; peak = RSS growth during one "
          f"step after a warm-up step")
    print(_table(results, modes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
