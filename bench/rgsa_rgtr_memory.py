"""Memory and time of one RGSA+RGTR training step: naive vs projected relation module.

Two measurements, each variant in a fresh subprocess (peak RSS is per process):

* ``head``: RGSA + RGTR alone at the exact full training size (B = 8 clips, T = 8,
  C = 2048, N = 16×8 = 128 positions), fed a random ReLU "layer4" feature tensor;
  forward + backward.
* ``model``: the whole model (ResNet-50, last_stride = 1, random init, 256×128 frames, T = 8)
  at B = 1 and B = 2 clips: forward, objective (CE + frame CE + adaptive triplet), backward,
  Adam step. B = 8 is then extrapolated linearly in B from those two points and labelled so.

Reported per run:

* ``saved_MB``: bytes of the tensors autograd saves for backward during the forward pass
  (``torch.autograd.graph.saved_tensors_hooks``; unique storages, parameters excluded). Exact
  and deterministic; activation memory that grows with the batch.
* ``peak_MB``: peak resident-set growth during one steady-state step, gradients included
  (VmHWM after the step minus VmRSS before it, last step's gradients freed first, VmHWM reset
  through ``/proc/self/clear_refs``; falls back to ``ru_maxrss`` growth over the first step
  where that reset is unavailable).
* ``cpu_s`` (in the table) / ``step_s`` (JSON): median process CPU time / wall time of
  ``--reps`` steps after one warm-up step. CPU time is the robust figure on a shared machine
  (wall time depends on other processes); with ``--threads 1`` it is the single-core work.

No GPU is needed or used. Example (the figures in docs/methods/rgsa_rgtr.md)::

    python bench/rgsa_rgtr_memory.py --threads 1 --reps 2 --json runs/rgsa_rgtr_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MB = 1024**2


def _rss_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim() -> None:
    # Hand freed heap pages back to the OS so VmRSS before a step counts live memory only.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def steady_state_steps(step, zero, reps: int) -> tuple[list[float], list[float], list[int]]:
    """Run ``step`` once (warm-up) and ``reps`` more times, each after ``zero`` (which frees
    the previous gradients, so they count in the peak).

    Returns:
        wall times and CPU times of every step (warm-up first), and the peak resident-set
        growth in KiB of each measured step (empty when VmHWM cannot be reset).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    step()  # warm-up (allocates grads / Adam state)
    times, cpu = [time.perf_counter() - t0], [time.process_time() - c0]
    peaks = []
    for _ in range(reps):
        zero()
        _trim()
        before = _rss_kb("VmRSS")
        ok = _reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        hwm = _rss_kb("VmHWM")
        if ok and before is not None and hwm is not None:
            peaks.append(hwm - before)
    return times, cpu, peaks


def _worker(kind: str, impl: str, batch: int, seq_len: int, reps: int, threads: int) -> dict:
    import torch

    from videoreid.losses import build_objective
    from videoreid.models.rgsa_rgtr import RGSA, RGSARGTR, RGTR

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    C, N = 2048, 128
    if kind == "head":
        rgsa = RGSA(C, N, relation_impl=impl).train()
        rgtr = RGTR(C, seq_len, relation_impl=impl).train()
        modules = [rgsa, rgtr]
        feats = torch.randn(batch * seq_len, N, C).relu_().requires_grad_()

        def forward():
            f, _ = rgsa(feats)
            refined, _ = rgtr(f.view(batch, seq_len, C))
            return refined.mean(1).pow(2).mean() + f.pow(2).mean()

        def zero():
            for m in modules:
                m.zero_grad(set_to_none=True)
            feats.grad = None

        def step():
            forward().backward()

    else:
        num_classes = 625
        model = RGSARGTR(num_classes, seq_len=seq_len, relation_impl=impl).train()
        modules = [model]
        objective = build_objective(
            [{"name": "ce"}, {"name": "frame_ce"}, {"name": "adaptive_triplet"}], num_classes, C
        )
        opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=5e-4)
        data = {
            "images": torch.randn(batch, seq_len, 3, 256, 128),
            "pids": torch.arange(batch) // 2,
        }

        def forward():
            return objective(model(data), data)["total"]

        def zero():
            opt.zero_grad(set_to_none=True)

        def step():
            forward().backward()
            opt.step()

    params = {p.untyped_storage().data_ptr() for m in modules for p in m.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            saved[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward()
    del loss
    saved_bytes = sum(saved.values())

    first_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu, peaks = steady_state_steps(step, zero, reps)
    # without a VmHWM reset: the growth of the lifetime peak, which the warm-up step sets
    first_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - first_before
    peak_kb = max(peaks) if peaks else first_peak_kb
    return {
        "kind": kind,
        "impl": impl,
        "batch": batch,
        "seq_len": seq_len,
        "saved_MB": saved_bytes / MB,
        "peak_MB": peak_kb / 1024,
        "peak_method": "VmHWM reset" if peaks else "ru_maxrss first step",
        "step_s": statistics.median(times[1:]) if reps else times[0],
        "cpu_s": statistics.median(cpu[1:]) if reps else cpu[0],
        "warmup_s": times[0],
        "threads": threads,
    }


def _run(args: argparse.Namespace, kind: str, impl: str, batch: int) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", kind, impl, str(batch),
        "--seq-len", str(args.seq_len), "--reps", str(args.reps), "--threads", str(args.threads),
    ]
    # A fixed mmap threshold: large buffers are mmapped and unmapped on free, so RSS follows
    # live memory instead of glibc's cached heap (its dynamic threshold would hide reuse).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"  {kind:5s} {impl:9s} B={batch}: saved {res['saved_MB']:8.1f} MB  "
        f"peak +{res['peak_MB']:8.1f} MB  step {res['step_s']:6.2f} s wall, {res['cpu_s']:6.2f} s CPU",
        file=sys.stderr,
    )
    return res


def _table(results: list[dict], seq_len: int) -> str:
    def row(label: str, n: dict, p: dict, note: str) -> str:
        return (
            f"| {label} | {n['saved_MB']:.0f} | {p['saved_MB']:.0f} | {n['peak_MB']:.0f} | "
            f"{p['peak_MB']:.0f} | {n['cpu_s']:.1f} | {p['cpu_s']:.1f} | {note} |"
        )

    by = {(r["kind"], r["impl"], r["batch"]): r for r in results}
    lines = [
        "| setting | saved naive (MB) | saved projected (MB) | peak naive (MB) | "
        "peak projected (MB) | step CPU-s naive | step CPU-s projected | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (kind, impl, b), n in sorted(by.items()):
        if impl != "naive":
            continue
        p = by[(kind, "projected", b)]
        label = f"{'RGSA+RGTR only' if kind == 'head' else 'full model'}, B={b}, T={seq_len}"
        lines.append(row(label, n, p, "measured"))
    # Linear extrapolation of the full model to B = 8 from B = 1 and B = 2.
    keys = [("model", i, b) for i in ("naive", "projected") for b in (1, 2)]
    if all(k in by for k in keys):
        ext = {}
        for impl in ("naive", "projected"):
            r1, r2 = by[("model", impl, 1)], by[("model", impl, 2)]
            ext[impl] = {
                k: r1[k] + 7 * (r2[k] - r1[k]) for k in ("saved_MB", "peak_MB", "step_s", "cpu_s")
            }
        lines.append(row(f"full model, B=8, T={seq_len}", ext["naive"], ext["projected"],
                         "EXTRAPOLATED linearly in B from B=1,2"))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "IMPL", "B"), help=argparse.SUPPRESS)
    parser.add_argument("--seq-len", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--head-batch", type=int, default=8, help="clips for the head-only run")
    parser.add_argument("--model-batches", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    if args.worker:
        kind, impl, b = args.worker
        print(json.dumps(_worker(kind, impl, int(b), args.seq_len, args.reps, args.threads)))
        return 0
    results = []
    for impl in ("naive", "projected"):
        results.append(_run(args, "head", impl, args.head_batch))
    if not args.skip_model:
        for b in args.model_batches:
            for impl in ("naive", "projected"):
                results.append(_run(args, "model", impl, b))
    import torch

    meta = {
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "reps": args.reps,
    }
    if args.json:
        from videoreid.utils.io import atomic_write_json

        atomic_write_json(args.json, {"meta": meta, "results": results})
    print(f"torch {meta['torch']}, {args.threads} threads, median of {args.reps} steps after 1 warm-up")
    print(_table(results, args.seq_len))
    return 0


if __name__ == "__main__":
    sys.exit(main())
