"""Benchmark: optical-flow estimators (speed and accuracy) and the flow cache (size, speed).

Measures, in one process:

1. per estimator (DIS ultrafast / fast / medium, Farnebäck, TV-L1 when OpenCV has contrib):
   process CPU ms per frame pair at 128×64 (synthetic walkers) and at 256×128 (real MARS
   frames from ``../shared/data/mars-mini`` when present, else the synthetic frames
   upscaled), and the accuracy on the synthetic walkers: median end-point error of the
   median flow at the body's visible head/neck/shoulder/hip keypoints against the
   generator's recorded body motion (px), and the share of pairs whose direction agrees
   (cosine > 0.9, pairs moving > 0.8 px);
2. the cache: bytes per flow file, encode and decode CPU ms per flow, and the cost of one
   T = 4 clip's flow from the cache relative to estimating it on the fly (a ratio).

Every timing is the best of ``--repeats`` rounds in process CPU time (the machine may be
shared); OpenCV and torch use one thread.

Usage::

    .venv/bin/python bench/flow_speed.py [--repeats 3] [--out runs/flow_speed]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from videoreid.data.synthetic import SynthManifest, generate
from videoreid.modalities.flow import (
    DEFAULT_STEP,
    TVL1Flow,
    build_estimator,
    decode_png,
    encode_png,
    load_frame,
)
from videoreid.utils.shared import shared_dir

RIGID_POINTS = (0, 1, 2, 5, 8, 11, 14, 15, 16, 17)


def body_motion(flow: np.ndarray, kp: np.ndarray) -> np.ndarray | None:
    samples = []
    for i in RIGID_POINTS:
        if kp[i, 2] > 0:
            x, y = int(round(kp[i, 0])), int(round(kp[i, 1]))
            samples.append(flow[:, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].reshape(2, -1))
    if len(samples) < 3:
        return None
    return np.median(np.concatenate(samples, axis=1), axis=1)


def cpu_ms(fn, pairs, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        for a, b in pairs:
            fn(a, b)
        best = min(best, (time.process_time() - t) / len(pairs))
    return 1e3 * best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="folder for the synthetic data (default: temp)")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    out = Path(args.out or tempfile.mkdtemp(prefix="flow_speed_"))
    if not (out / "synth_manifest.json").is_file():
        generate("mars", out, ids=6, cameras=2, seed=0, height=128, width=64, preset="easy",
                 tracklet_len=(8, 12), keypoints=False, motion=3.0, workers=0, progress=False)
    m = SynthManifest.load(out)
    people = [t for t in m.tracklets if t.kind == "normal"]
    synth = []  # (frame a, frame b, keypoints of a, motion)
    for tr in people:
        frames = [load_frame(f) for f in m.frame_paths(tr)]
        synth += [(frames[t], frames[t + 1], tr.keypoints[t], tr.motion[t])
                  for t in range(len(frames) - 1)]
    sd = shared_dir()
    big_src = "synthetic, upscaled"
    big = [(cv2.resize(a, (128, 256)), cv2.resize(b, (128, 256))) for a, b, _, _ in synth[:40]]
    if sd is not None and (sd / "data" / "mars-mini").is_dir():
        from videoreid.data.datasets.mars import MARS

        tracklets = MARS(sd / "data" / "mars-mini").split(0).train[:8]
        big = []
        for t in tracklets:
            fr = [load_frame(f) for f in list(t.frames)[:6]]
            big += list(zip(fr[:-1], fr[1:], strict=True))
        big_src = "real MARS (mars-mini)"
    print(f"# command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
    print(f"# {len(synth)} synthetic 128x64 pairs, {len(big)} 256x128 pairs ({big_src}); "
          f"best of {args.repeats}, process CPU time, 1 thread")

    names = [("dis", {"preset": "ultrafast"}), ("dis", {"preset": "fast"}),
             ("dis", {"preset": "medium"}), ("farneback", {})]
    if TVL1Flow.available():
        names.append(("tvl1", {}))
    print("\n| estimator | ms/pair 128×64 | ms/pair 256×128 | median EPE (px) | direction ok |")
    print("|---|---|---|---|---|")
    for name, kw in names:
        est = build_estimator(name, **kw)
        small = cpu_ms(est, [(a, b) for a, b, _, _ in synth], args.repeats)
        large = cpu_ms(est, big, args.repeats)
        errs, ok, n = [], 0, 0
        for a, b, kp, gt in synth:
            e = body_motion(est(a, b), kp)
            if e is None:
                continue
            errs.append(float(np.linalg.norm(e - gt)))
            if np.linalg.norm(gt) > 0.8:
                n += 1
                ok += float(e @ gt / (np.linalg.norm(e) * np.linalg.norm(gt) + 1e-9)) > 0.9
        label = name + (f" ({kw['preset']})" if kw else "")
        print(f"| {label} | {small:.2f} | {large:.2f} | {np.median(errs):.2f} | {ok}/{n} |")

    est = build_estimator("dis")
    flows = [est(a, b) for a, b in big]
    blobs = [encode_png(f) for f in flows]
    enc = min_time(lambda: [encode_png(f) for f in flows], args.repeats) / len(flows)
    dec = min_time(lambda: [decode_png(b) for b in blobs], args.repeats) / len(flows)
    dis = cpu_ms(est, big, args.repeats) / 1e3
    sat = float(np.mean([(np.abs(f) > 127 * DEFAULT_STEP).mean() for f in flows]))
    print(f"\ncache (256×128 DIS flows, step {DEFAULT_STEP} px): {np.mean([len(b) for b in blobs]) / 1024:.1f} "
          f"KiB/file, encode {1e3 * enc:.2f} ms, decode {1e3 * dec:.2f} ms per flow; "
          f"{100 * sat:.2f} % of values beyond ±{127 * DEFAULT_STEP:g} px (saturated)")
    print(f"one T=4 clip: cache read {4e3 * dec:.1f} ms vs on-the-fly DIS {4e3 * dis:.1f} ms "
          f"(+ decoding the extra frames): {dis / dec:.1f}x faster from the cache")
    return 0


def min_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


if __name__ == "__main__":
    sys.exit(main())
