"""Benchmark: one training step (forward + objective + backward) of every method, per clip.

Each method is built at full size from its MARS config (``bench/method_zoo.py``: paper input
size, training clip length, the config's loss terms) and trained on a batch of
``--clips`` random clips (P×K with K = 2; the paper batches do not fit a CPU step budget, so
the batch is reduced and figures are per clip; AlignNet, whose OpenPose network runs at full
resolution on every frame, gets one clip). Reported, as ratios to the baseline (ResNet-50 +
temporal pooling) measured in the same rounds (each method's steps alternate with the
baseline's, best of ``--repeats``; one method is held in memory at a time):

- forward+backward wall time per clip;
- activation memory per clip: bytes of the tensors autograd saves for the backward pass
  (``torch.autograd.graph.saved_tensors_hooks``, each storage counted once), the part of a
  step's memory that grows with the batch; on CUDA also ``max_memory_allocated``.

``--profile METHOD`` (default: the most expensive per clip) then runs ``torch.profiler`` on
that method's step and prints the operators by self CPU time, so that time spent outside
the paper's arithmetic (copies, indexing, Python loops) stands out.

Usage::

    .venv/bin/python bench/train_step.py [--methods baseline stan ...] [--clips 2]
        [--repeats 3] [--profile auto|none|METHOD] [--device cpu]
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from method_zoo import METHODS, build_method, clip_length, make_batch  # noqa: E402

from videoreid.engine.builders import build_objective_from_config  # noqa: E402
from videoreid.engine.trainer import outputs_to_float  # noqa: E402


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}/{os.cpu_count()} CPUs"


class Step:
    """One method's model, objective and batch, and its timed training step."""

    def __init__(self, name: str, clips: int, device: torch.device) -> None:
        self.name = name
        self.model, self.cfg = build_method(name)
        self.objective = build_objective_from_config(self.cfg, self.model, 625)
        self.model.to(device).train()
        self.objective.to(device)
        self.batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                      for k, v in make_batch(self.model, self.cfg, clips, train=True).items()}
        self.clips = clips
        self.device = device
        self.params = [p for p in self.model.parameters() if p.requires_grad]

    def describe(self) -> str:
        b, t, _, h, w = self.batch["images"].shape
        return f"{b} clips x T={t} at {h}x{w}"

    def __call__(self) -> float:
        for p in self.params:
            p.grad = None
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = self.model(self.batch)
        total = self.objective(outputs_to_float(out), self.batch)["total"]
        total.backward()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / self.clips

    def saved_bytes(self) -> int:
        """Bytes autograd saves for backward in one forward (each storage once)."""
        seen: dict[int, int] = {}

        def pack(x: torch.Tensor) -> torch.Tensor:
            try:
                st = x.untyped_storage()
                seen[st.data_ptr()] = st.nbytes()
            except (RuntimeError, NotImplementedError):  # e.g. sparse or meta tensors
                pass
            return x

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            out = self.model(self.batch)
            total = self.objective(outputs_to_float(out), self.batch)["total"]
        del total, out
        # parameters are saved too (e.g. conv weights) but exist anyway; leave them out
        params = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
        return sum(v for k, v in seen.items() if k not in params)


def profile(step: Step, rows: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    step()  # warm-up outside the profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if step.device.type == "cuda" else [])
    with tprofile(activities=acts, record_shapes=False) as prof:
        step()
    key = "self_cuda_time_total" if step.device.type == "cuda" else "self_cpu_time_total"
    print(f"\n## torch.profiler: {step.name}, one step of {step.describe()} ({load()})\n")
    print("```")
    print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=48))
    print("```")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--clips", type=int, default=2, help="clips per step (AlignNet: 1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profile", default="auto",
                    help="method to profile: auto (most expensive), none, or a name")
    ap.add_argument("--profile-rows", type=int, default=25)
    ap.add_argument("--memory-only", action="store_true",
                    help="only the activation memory per clip (one forward each; load-independent)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = list(dict.fromkeys(["baseline", *args.methods]))
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}; {load()}",
          flush=True)
    # one method at a time next to the baseline (memory: two full-size models, not seven);
    # each method's rounds alternate baseline step / method step, so the ratio is taken
    # under the same load
    base = Step("baseline", args.clips, device)
    base_m = base.saved_bytes() / base.clips
    if args.memory_only:
        print("\n| method | batch | activations MiB/clip | x baseline |\n|---|---|---:|---:|")
        for n in names:
            s = base if n == "baseline" else Step(n, 1 if n == "alignnet" else args.clips, device)
            m = s.saved_bytes() / s.clips
            print(f"| {n} | {s.describe()} | {m / 2**20:.0f} | {m / base_m:.2f} |", flush=True)
            if s is not base:
                del s
                gc.collect()
        return 0
    base()
    rows = []
    best: dict[str, float] = {}
    for n in names:
        s = base if n == "baseline" else Step(n, 1 if n == "alignnet" else args.clips, device)
        m = s.saved_bytes() / s.clips
        s()
        tb = tm = float("inf")
        for _ in range(args.repeats):
            tb = min(tb, base())
            tm = min(tm, s())
        peak = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            s()
            peak = torch.cuda.max_memory_allocated(device) / s.clips
        best[n] = tm / tb
        rows.append((n, s.describe(), clip_length(s.cfg, True), tm, tm / tb, m, m / base_m, peak,
                     os.getloadavg()[0]))
        print(f"  {n}: {tm:.3f} s/clip, {tm / tb:.2f}x baseline ({load()})", file=sys.stderr,
              flush=True)
        if s is not base:
            del s
            gc.collect()
    print(f"\n## forward+backward per clip (best of {args.repeats}, each method interleaved "
          f"with the baseline)\n")
    print("| method | batch | T | s per clip | x baseline | activations MiB/clip | x baseline |"
          + (" CUDA peak MiB/clip |" if device.type == "cuda" else "") + " load |")
    print("|---|---|---:|---:|---:|---:|---:|" + ("---:|" if device.type == "cuda" else "")
          + "---:|")
    for n, desc, t, tm, rt, m, rm, peak, ld in rows:
        # the baseline row times the same step twice: its ratio shows the measurement noise
        shown = f"{rt:.2f} (noise check)" if n == "baseline" else f"{rt:.2f}"
        print(f"| {n} | {desc} | {t} | {tm:.3f} | {shown} | {m / 2**20:.0f} | {rm:.2f} |"
              + (f" {peak / 2**20:.0f} |" if peak is not None else "") + f" {ld:.1f} |")
    target = args.profile
    if target == "auto":
        target = max(best, key=best.get)
    if target != "none":
        del base
        gc.collect()
        profile(Step(target, 1 if target == "alignnet" else args.clips, device),
                args.profile_rows)
    cmd = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv])
    print(f"\ncommand: {cmd}; {load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
