"""Benchmark: one training step (forward + objective + backward) of every method, per clip.

Each method is built at full size from its MARS config (``bench/method_zoo.py``: paper input
size, training clip length, the config's loss terms) and trained on a batch of
``--clips`` random clips (P×K with K = 2; the paper batches do not fit a CPU step budget, so
the batch is reduced and figures are per clip). Reported, as ratios to the baseline
(ResNet-50 + temporal pooling) measured in the same rounds (interleaved, best of
``--repeats``):

- forward+backward wall time per clip;
- activation memory per clip: bytes of the tensors autograd saves for the backward pass
  (``torch.autograd.graph.saved_tensors_hooks``, each storage counted once), the part of a
  step's memory that grows with the batch; on CUDA also ``max_memory_allocated``.

``--profile METHOD`` (default: the most expensive per clip) then runs ``torch.profiler`` on
that method's step and prints the operators by self CPU time, so that time spent outside
the paper's arithmetic (copies, indexing, Python loops) stands out.

Usage::

    .venv/bin/python bench/train_step.py [--methods baseline stan ...] [--clips 4]
        [--repeats 3] [--profile auto|none|METHOD] [--device cpu]
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--clips", type=int, default=4, help="clips per step (AlignNet: 2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profile", default="auto",
                    help="method to profile: auto (most expensive), none, or a name")
    ap.add_argument("--profile-rows", type=int, default=25)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = list(dict.fromkeys(["baseline", *args.methods]))
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}; {load()}")
    steps = {}
    for n in names:
        steps[n] = Step(n, 2 if n == "alignnet" else args.clips, device)
        print(f"  built {n}: {steps[n].describe()}", file=sys.stderr)
    mem = {n: s.saved_bytes() / s.clips for n, s in steps.items()}
    cuda_peak = {}
    best = dict.fromkeys(steps, float("inf"))
    for s in steps.values():  # warm-up (oneDNN primitives, allocator)
        s()
    for _ in range(args.repeats):
        for n, s in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            best[n] = min(best[n], s())
            if device.type == "cuda":
                cuda_peak[n] = torch.cuda.max_memory_allocated(device) / s.clips
    base_t, base_m = best["baseline"], mem["baseline"]
    print(f"\n## forward+backward per clip (best of {args.repeats}, interleaved; {load()})\n")
    head = "| method | batch | T | s per clip | × baseline | activations MiB/clip | × baseline |"
    if cuda_peak:
        head += " CUDA peak MiB/clip |"
    print(head)
    print("|---|---|---:|---:|---:|---:|---:|" + ("---:|" if cuda_peak else ""))
    for n, s in steps.items():
        row = (f"| {n} | {s.describe()} | {clip_length(s.cfg, True)} | {best[n]:.3f} | "
               f"{best[n] / base_t:.2f} | {mem[n] / 2**20:.0f} | {mem[n] / base_m:.2f} |")
        if cuda_peak:
            row += f" {cuda_peak[n] / 2**20:.0f} |"
        print(row)
    target = args.profile
    if target == "auto":
        target = max(best, key=best.get)
    if target != "none":
        if target not in steps:
            steps[target] = Step(target, 2 if target == "alignnet" else args.clips, device)
        profile(steps[target], args.profile_rows)
    cmd = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv])
    print(f"\ncommand: {cmd}; {load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
