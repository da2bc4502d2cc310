"""Benchmark: inference throughput against the machine's own matmul limit, and end to end.

Measured in one process, reference and candidates interleaved (every round runs each case
once, so all share the machine's load; figures are the best round):

1. **Model only**, for the ResNet-50 backbone alone (a batch of frames) and for every method
   at full size with its paper input size and test clip length (``bench/method_zoo.py``), a
   batch of ``--clips`` clips of random frames:

   - ``plain``: float32, default memory layout, ``torch.no_grad`` (what a user writes);
   - ``engine``: ``videoreid.engine.inference`` defaults (inference mode, channels-last, bf16
     autocast where the CPU computes bf16 natively; the choice is printed);
   - ``engine + torch.compile`` with ``--compile`` (its warm-up is reported);
   - ONNX Runtime (CPU provider) on the same network exported with ``torch.onnx`` (backbone
     and baseline), with ``--onnx`` (default on when ``onnxruntime`` imports).

   Throughput is frames/s and achieved GFLOP/s (FLOPs of one forward counted by
   ``torch.utils.flop_counter``: convolutions and matmuls), as a fraction of a large float32
   GEMM's GFLOP/s measured in the same rounds (``--gemm`` square matrices). A bf16 model can
   exceed 100 % of the fp32 GEMM; the bf16 GEMM is printed too.
2. **End to end**: ``extract_features`` (decode JPEGs, transform, batch, forward, aggregate)
   on real MARS frames (``../shared/data/mars-mini``, query+gallery+train tracklets up to
   ``--e2e-frames`` frames) or, without that folder, synthetic 256×128 JPEGs, with the
   baseline ResNet-50 at 256×128, as frames/s and as a fraction of the same model's
   model-only frames/s (same settings, same batch of clips).

The machine's load average is printed with every table (the project's machine is shared).

Usage::

    .venv/bin/python bench/inference.py [--methods backbone stan ...] [--clips 4]
        [--repeats 3] [--threads N] [--compile] [--no-onnx] [--e2e-frames 480]
"""

from __future__ import annotations

import argparse
import copy
import io
import logging
import os
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from method_zoo import METHODS, build_method, make_batch  # noqa: E402

from videoreid.engine.inference import infer, prepare_model_for_inference  # noqa: E402
from videoreid.models.backbones.resnet import resnet50  # noqa: E402


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}/{os.cpu_count()} CPUs"


def gemm_gflops(n: int, dtype: torch.dtype = torch.float32) -> Callable[[], float]:
    """GFLOP/s of one ``n``-square ``torch.mm`` per call."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b

    def run() -> float:
        t = time.perf_counter()
        a @ b
        return 2 * n ** 3 / (time.perf_counter() - t) / 1e9
    return run


def gemm_references(n: int, threads: int) -> dict[str, Callable[[], float]]:
    """The fp32 GEMMs available here, each ``n``-square: ``torch.mm`` (MKL, which may take a
    slow path on non-Intel CPUs), the same GEMM as a 1×1 oneDNN convolution (the kernels the
    networks' convolutions use) and ONNX Runtime's MLAS ``MatMul`` when installed. The
    fraction-of-GEMM figures divide by the best of them: the machine's measured fp32 limit."""
    refs = {"torch.mm": gemm_gflops(n)}
    x = torch.randn(1, n, n // 32, 32).contiguous(memory_format=torch.channels_last)
    w = torch.randn(n, n, 1, 1).contiguous(memory_format=torch.channels_last)

    def conv() -> float:
        with torch.no_grad():
            t = time.perf_counter()
            torch.nn.functional.conv2d(x, w)
            return 2 * n ** 3 / (time.perf_counter() - t) / 1e9
    conv()
    refs["oneDNN 1x1 conv"] = conv
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return refs
    vi = [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ABC"]
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "gemm",
                              vi[:2], vi[2:])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(proto.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    feed = {"A": np.random.rand(n, n).astype(np.float32),
            "B": np.random.rand(n, n).astype(np.float32)}
    sess.run(None, feed)

    def mlas() -> float:
        t = time.perf_counter()
        sess.run(None, feed)
        return 2 * n ** 3 / (time.perf_counter() - t) / 1e9
    refs["ONNX Runtime MatMul"] = mlas
    return refs


def count_flops(fn: Callable[[], object]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = FlopCounterMode(display=False)
        with torch.inference_mode(), fc:
            fn()
    return float(fc.get_total_flops())


class Backbone(nn.Module):
    """ResNet-50 ``stem..layer4`` on a batch of frames, as a ``forward(batch)`` model."""

    def __init__(self) -> None:
        super().__init__()
        self.net = resnet50(pretrained=None)

    def forward(self, batch):
        x = batch["images"]
        return self.net.forward_stages(x.flatten(0, 1))


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def onnx_session(model: nn.Module, batch: dict, threads: int):
    """ONNX Runtime session of ``model`` on ``batch['images']`` (legacy torch.onnx exporter),
    or ``(None, reason)``."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime not installed (pip install 'videoreid[onnx]')"

    class Wrap(nn.Module):
        def __init__(self, m: nn.Module, t: int) -> None:
            super().__init__()
            self.m, self.t = m, t

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            mask = torch.ones(images.shape[0], self.t, dtype=torch.bool)
            out = self.m({"images": images, "frame_mask": mask})
            return out if isinstance(out, torch.Tensor) else out.embedding

    images = batch["images"]
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Wrap(model.eval(), images.shape[1]), (images,), buf,
                              input_names=["images"], output_names=["out"], dynamo=False,
                              opset_version=17)
    except Exception as e:  # exporter coverage varies between torch versions
        return None, f"torch.onnx export failed: {type(e).__name__}: {str(e)[:200]}"
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    feed = {"images": images.numpy()}
    sess.run(None, feed)
    return (lambda: sess.run(None, feed)), "ok"


def model_only(name: str, clips: int, repeats: int, gemm_n: int, threads: int,
               use_compile: bool, use_onnx: bool) -> list[dict]:
    """Rows for one model: plain / engine / (compile) / (onnx), each with GEMM fraction."""
    if name == "backbone":
        torch.manual_seed(0)
        model = Backbone()
        batch = {"images": torch.randn(clips, 8, 3, 256, 128)}
        desc = f"ResNet-50 stem..layer4, {clips * 8} frames 256x128"
    else:
        model, cfg = build_method(name)
        batch = make_batch(model, cfg, clips, train=False)
        b, t, _, h, w = batch["images"].shape
        desc = f"{name}, {b} clips x T={t}, {h}x{w}"
    frames = batch["images"].shape[0] * batch["images"].shape[1]
    plain = model.eval()
    fast_model = copy.deepcopy(plain)
    fast_fn, settings = prepare_model_for_inference(fast_model, "cpu")
    flops = count_flops(lambda: plain(batch))

    def run_plain() -> float:
        with torch.no_grad():
            return timed(lambda: plain(batch))

    def run_fast(fn=fast_fn) -> float:
        with infer(settings):
            return timed(lambda: fn(batch))

    cases: dict[str, Callable[[], float]] = {"plain fp32, default layout, no_grad": run_plain,
                                             f"engine ({settings.precision}, channels-last, "
                                             "inference mode)": run_fast}
    notes = {}
    if use_compile:
        c_model = copy.deepcopy(plain)
        c_fn, c_settings = prepare_model_for_inference(c_model, "cpu", compile=True)
        with infer(c_settings):
            warm = timed(lambda: c_fn(batch))
        key = f"engine + torch.compile ({c_settings.precision})"
        cases[key] = lambda: run_fast(c_fn)
        notes[key] = f"warm-up (first call, compiles) {warm:.1f} s"
    if use_onnx and name in ("backbone", "baseline"):
        fn, why = onnx_session(copy.deepcopy(plain), batch, threads)
        key = "ONNX Runtime fp32 (CPU provider)"
        if fn is None:
            notes[key] = f"skipped: {why}"
        else:
            cases[key] = lambda fn=fn: timed(fn)
    gemms = gemm_references(gemm_n, threads)
    best = dict.fromkeys(cases, float("inf"))
    gemm_best = dict.fromkeys(gemms, 0.0)
    for case in cases.values():  # warm-up (oneDNN primitive creation)
        case()
    for _ in range(repeats):
        for k, g in gemms.items():
            gemm_best[k] = max(gemm_best[k], g())
        for k, case in cases.items():
            best[k] = min(best[k], case())
    limit_name = max(gemm_best, key=gemm_best.get)
    limit = gemm_best[limit_name]
    rows = []
    for k, s in best.items():
        fps = frames / s
        gf = flops / s / 1e9
        rows.append(dict(model=desc, case=k, fps=fps, gflops=gf, gemm=limit,
                         gemms=dict(gemm_best), gemm_name=limit_name, frac=gf / limit, vs_plain=best[next(iter(best))] / s,
                         note=notes.get(k, ""), load=os.getloadavg()[0],
                         gflop_per_frame=flops / frames / 1e9))
    for k, note in notes.items():
        if k not in best:
            rows.append(dict(model=desc, case=k, note=note, load=os.getloadavg()[0]))
    for r in rows:  # as soon as measured (the full table follows at the end)
        if "fps" in r:
            print(f"  {desc} | {r['case']}: {r['fps']:.1f} frames/s, {100 * r['frac']:.0f}% of "
                  f"the best fp32 GEMM ({r['gemm']:.0f} GFLOP/s), {r['vs_plain']:.2f}x plain "
                  f"({load()})", file=sys.stderr, flush=True)
    return rows


def mars_or_synthetic(max_frames: int, tmp: Path) -> tuple[list, str]:
    from videoreid.utils.shared import shared_dir

    shared = shared_dir()
    root = shared / "data/mars-mini/mars" if shared else None
    tracklets = []
    if root is not None and (root / "bbox_test").is_dir():
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from data_loading import mars_tracklets

        for sub in ("bbox_test", "bbox_train"):
            tracklets += mars_tracklets(root / sub)
        source = "real MARS frames (mars-mini, 256x128 JPEG)"
    else:
        from data_loading import synthetic_tracklets

        tracklets = synthetic_tracklets(tmp, ids=12, per_id=2, frames=40)
        source = "synthetic 256x128 JPEGs"
    out, n = [], 0
    for t in tracklets:
        if n >= max_frames:
            break
        out.append(t)
        n += len(t.frames)
    return out, source


def end_to_end(clips: int, repeats: int, max_frames: int, workers: list[int]) -> list[dict]:
    from videoreid.data.temporal import build_plan
    from videoreid.data.transforms import ClipTransform
    from videoreid.engine.extract import extract_features
    from videoreid.models.factory import build_model

    tmp = tempfile.TemporaryDirectory(prefix="videoreid-bench-")
    tracklets, source = mars_or_synthetic(max_frames, Path(tmp.name))
    T = 8
    plan = build_plan("all_consecutive", length=T)
    tf = ClipTransform(256, 128, train=False)
    n_frames = sum(len(plan(len(t))) for t in tracklets) * T
    torch.manual_seed(0)
    model = build_model("baseline", 625, backbone="resnet50", image_size=(256, 128)).eval()
    fast_model = copy.deepcopy(model)
    fn, settings = prepare_model_for_inference(fast_model, "cpu")
    batch = {"images": torch.randn(clips, T, 3, 256, 128),
             "frame_mask": torch.ones(clips, T, dtype=torch.bool)}

    def model_run() -> float:
        with infer(settings):
            return timed(lambda: fn(batch)) / (clips * T)  # s per frame

    cases: dict[str, Callable[[], float]] = {"model only (same model and settings)": model_run}
    for w in workers:
        cases[f"extract_features, workers={w}"] = (
            lambda w=w: timed(lambda: extract_features(model, tracklets, plan, tf, batch_size=clips,
                                                       workers=w, progress=False)) / n_frames)
    model_run()
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeats):
        for k, case in cases.items():
            best[k] = min(best[k], case())
    ref = best["model only (same model and settings)"]
    tmp.cleanup()
    return [dict(case=k, fps=1 / s, frac=ref / s, source=source, frames=n_frames,
                 tracklets=len(tracklets), settings=settings.describe(),
                 load=os.getloadavg()[0]) for k, s in best.items()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["backbone", *METHODS],
                    help="backbone and/or method names")
    ap.add_argument("--clips", type=int, default=4, help="clips per batch (backbone: x8 frames)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--gemm", type=int, default=2048, help="size of the reference GEMM")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime rows")
    ap.add_argument("--e2e-frames", type=int, default=480,
                    help="frames for the end-to-end case (0: skip it)")
    ap.add_argument("--e2e-workers", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("videoreid.engine.inference").setLevel(logging.INFO)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs; "
          f"{load()} at start")
    rows = []
    for name in args.methods:
        clips = args.clips if name != "alignnet" else 1  # OpenPose at full size: ~1 TFLOP/clip
        rows += model_only(name, clips, args.repeats, args.gemm, args.threads, args.compile,
                           not args.no_onnx)
    bf16 = gemm_gflops(args.gemm, torch.bfloat16)
    g_bf16 = max(bf16() for _ in range(3))
    print(f"\n## model only (best of {args.repeats}, interleaved with the fp32 GEMMs)")
    print("| model | case | frames/s | GFLOP/frame | GFLOP/s | best fp32 GEMM GFLOP/s | "
          "fraction of GEMM | vs plain | load | note |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if "fps" not in r:
            print(f"| {r['model']} | {r['case']} | – | – | – | – | – | – | {r['load']:.1f} | "
                  f"{r['note']} |")
            continue
        print(f"| {r['model']} | {r['case']} | {r['fps']:.1f} | {r['gflop_per_frame']:.2f} | "
              f"{r['gflops']:.0f} | {r['gemm']:.0f} | {100 * r['frac']:.0f}% | "
              f"{r['vs_plain']:.2f}x | {r['load']:.1f} | {r['note']} |")
    for r in rows:
        if "gemms" in r and r["case"].startswith("plain"):
            print(f"fp32 GEMMs {args.gemm}^3 during {r['model']}: " + ", ".join(
                f"{k} {v:.0f}" for k, v in r["gemms"].items()) + " GFLOP/s")
    print(f"bf16 torch.mm ({args.gemm}^3) here: {g_bf16:.0f} GFLOP/s ({load()})")
    if args.e2e_frames > 0:
        e2e = end_to_end(args.clips, max(2, args.repeats - 1), args.e2e_frames, args.e2e_workers)
        r0 = e2e[0]
        print(f"\n## end to end: {r0['source']}, {r0['tracklets']} tracklets, {r0['frames']} "
              f"frames in clips of 8, batch {args.clips} clips; baseline ResNet-50 at 256x128; "
              f"{r0['settings']}")
        print("| case | frames/s | fraction of model only | load |\n|---|---:|---:|---:|")
        for r in e2e:
            print(f"| {r['case']} | {r['fps']:.1f} | {100 * r['frac']:.0f}% | {r['load']:.1f} |")
    cmd = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv])
    print(f"\ncommand: {cmd}; {load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
