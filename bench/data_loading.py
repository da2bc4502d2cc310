"""Benchmark: the project's clip loader against a plain per-frame PIL loop, and JPEG decoders.

Measures, in one process on the same files:

1. clips/s of ``ClipDataset`` + ``DataLoader`` (``collate_clips``; training transform with
   flip, pad + crop and random erasing) with 0 and 2 workers, and of a plain loop that opens
   each frame with PIL, converts to RGB, resizes, converts to a tensor and normalises (no
   augmentation: the baseline does strictly less work). Reported as a ratio.
2. frames/s of each JPEG decoder available here (PIL, PIL draft, OpenCV, OpenCV
   ``IMREAD_REDUCED_COLOR_2``, simplejpeg if installed, and the project's ``decode_image``),
   at full size and at half size.

Data: real MARS frames from ``../shared/data/mars-mini`` when that folder exists, else
synthetic 256x128 JPEGs written to a temporary folder. Each figure is the best of
``--repeats`` rounds, every round running all cases once (so they share the machine's load);
loaders are timed in wall-clock time, decoders in process CPU time. torch and OpenCV use one
thread in the main process.

Usage::

    .venv/bin/python bench/data_loading.py [--seq-len 8] [--clips 96] [--size 256 128]
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from videoreid.data import decode as dec
from videoreid.data.clips import ClipDataset, collate_clips
from videoreid.data.temporal import RestrictedRandom
from videoreid.data.tracklet import Tracklet
from videoreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform
from videoreid.utils.shared import shared_dir


def mars_tracklets(root: Path) -> list[Tracklet]:
    """Group ``bbox_train/<pid>/<pid>C<c>T<tracklet>F<frame>.jpg`` files into tracklets."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for f in sorted(root.glob("*/*.jpg")):
        groups[f.name[:11]].append(f)
    pids = {k[:4] for k in groups}
    relabel = {p: i for i, p in enumerate(sorted(pids))}
    return [Tracklet(tuple(sorted(v, key=lambda p: int(p.stem[12:]))), relabel[k[:4]],
                     int(k[5]) - 1, {"tracklet_id": k}) for k, v in sorted(groups.items())]


def synthetic_tracklets(out: Path, ids: int = 12, per_id: int = 2, frames: int = 24) -> list[Tracklet]:
    """Smooth random 256x128 JPEGs (noise alone would be unrealistically hard to compress)."""
    rng = np.random.default_rng(0)
    tracklets = []
    for pid in range(ids):
        for c in range(per_id):
            d = out / f"{pid:04d}_{c}"
            d.mkdir(parents=True)
            base = cv2.GaussianBlur(rng.integers(0, 256, (256, 128, 3), dtype=np.uint8), (0, 0), 6)
            paths = []
            for j in range(frames):
                img = np.roll(base, 2 * j, axis=1)
                cv2.rectangle(img, (30, 40 + j), (90, 200), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
                p = d / f"{j:04d}.jpg"
                cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
                paths.append(p)
            tracklets.append(Tracklet(tuple(paths), pid, c, {"tracklet_id": f"{pid}_{c}"}))
    return tracklets


def interleaved_best(cases: dict[str, Callable[[], int]], repeats: int,
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Best items/s of each case over ``repeats`` rounds; each round runs every case once,
    so all cases see the same machine load (the figures are ratios taken in one process)."""
    best = dict.fromkeys(cases, 0.0)
    for _ in range(repeats):
        for name, fn in cases.items():
            t = clock()
            n = fn()
            best[name] = max(best[name], n / max(clock() - t, 1e-9))
    return best


def plain_pil_loop(clips: list[list[Path]], height: int, width: int) -> int:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for frames in clips:
        out = []
        for p in frames:
            with Image.open(p) as im:
                im = im.convert("RGB").resize((width, height), Image.BILINEAR)
                x = torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div(255)
                out.append((x - mean) / std)
        torch.stack(out)
    return len(clips)


def loader_pass(loader: DataLoader, ds: ClipDataset, epoch: int, finish=None) -> int:
    """Clips of one pass; ``finish`` (``ClipTransform.finish_batch``) turns uint8 batches
    into normalised float batches, as the trainer does on its device."""
    ds.set_epoch(epoch)
    n = 0
    for batch in loader:
        if finish is not None:
            batch = finish(batch)
        n += batch["images"].shape[0]
    return n


def decoder_table(files: list[Path], repeats: int) -> dict[str, float]:
    """frames/s of each decoder on ``files`` at full and half the stored size, in process CPU
    time (single-threaded work, so CPU time is the cost; wall time on a shared machine
    mostly measures the neighbours)."""
    blobs = [p.read_bytes() for p in files]
    stored = dec.decode_image_with_size(files[0])[1]
    half = (stored[0] // 2, stored[1] // 2)
    raw: dict[str, Callable[[bytes], np.ndarray]] = {
        "PIL": lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB")),
        "PIL draft (half size)": lambda b: dec._pil(b, half),
        "OpenCV imdecode": lambda b: dec._cv2(b, None),
        "OpenCV IMREAD_REDUCED_COLOR_2 (half size)": lambda b: dec._cv2(b, half),
    }
    if "simplejpeg" in dec.DECODERS:
        raw["simplejpeg"] = lambda b: dec._simplejpeg(b, None)
        raw["simplejpeg (half size)"] = lambda b: dec._simplejpeg(b, half)
    cases: dict[str, Callable[[], int]] = {}
    for name, fn in raw.items():
        def run(fn=fn) -> int:
            for b in blobs:
                fn(b)
            return len(blobs)
        cases[name + ", bytes in memory"] = run
    for backend in dec.available_backends():
        for size, label in ((None, ""), (half, ", half size")):
            def project(backend=backend, size=size) -> int:
                for p in files:
                    dec.decode_image(p, size, backend=backend)
                return len(files)
            chosen = " (default here)" if backend == dec.default_backend() else ""
            cases[f"videoreid decode_image(path), backend={backend}{chosen}{label}"] = project
    return interleaved_best(cases, repeats, clock=time.process_time)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, default=8, help="frames per clip (T)")
    ap.add_argument("--clips", type=int, default=96, help="clips per timed pass")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--decode-frames", type=int, default=400)
    ap.add_argument("--synthetic", action="store_true", help="ignore ../shared, use synthetic JPEGs")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    H, W = args.size

    tmp = None
    shared = None if args.synthetic else shared_dir()
    mars = shared / "data/mars-mini/mars/bbox_train" if shared else None
    if mars is not None and mars.is_dir():
        tracklets, source = mars_tracklets(mars), f"MARS frames ({mars})"
    else:
        tmp = tempfile.TemporaryDirectory(prefix="videoreid-bench-")
        tracklets, source = synthetic_tracklets(Path(tmp.name)), "synthetic 256x128 JPEGs"

    sampler = RestrictedRandom(args.seq_len)
    transform = ClipTransform(H, W, train=True, flip_p=0.5, pad=10, erasing_p=0.5)
    ds = ClipDataset(tracklets, sampler, transform, seed=0)
    order = [i % len(ds) for i in range(args.clips)]
    # the baseline loads exactly the frames of the loader's first pass
    rng_clips = []
    for i in order:
        idx, _ = sampler(len(tracklets[i]), np.random.default_rng([0, 0, i]))
        rng_clips.append([tracklets[i].frames[j] for j in idx])

    print(f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; data: {source}; {len(tracklets)} tracklets; clip T={args.seq_len}, output {H}x{W}; "
          f"{args.clips} clips per pass; best of {args.repeats}; torch/OpenCV threads 1")
    baseline = "plain PIL loop (open, RGB, resize, to tensor, normalise)"
    cases: dict[str, Callable[[], int]] = {baseline: lambda: plain_pil_loop(rng_clips, H, W)}
    for w in args.workers:
        loader = DataLoader(torch.utils.data.Subset(ds, order), batch_size=args.batch_size,
                            num_workers=w, collate_fn=collate_clips,
                            persistent_workers=w > 0)
        loader_pass(loader, ds, 0)  # warm-up: starts the persistent workers
        cases[f"videoreid ClipDataset + DataLoader, workers={w}"] = (
            lambda loader=loader: loader_pass(loader, ds, 0))
    if "simplejpeg" in dec.available_backends():  # the end-to-end effect of the decoder
        for backend in ("cv2", "simplejpeg"):
            loader = DataLoader(torch.utils.data.Subset(ds, order), batch_size=args.batch_size,
                                collate_fn=collate_clips)

            def forced(loader=loader, backend=backend) -> int:
                old = os.environ.get("VIDEOREID_DECODER")
                os.environ["VIDEOREID_DECODER"] = backend
                try:
                    return loader_pass(loader, ds, 0)
                finally:
                    if old is None:
                        del os.environ["VIDEOREID_DECODER"]
                    else:
                        os.environ["VIDEOREID_DECODER"] = old
            cases[f"videoreid ClipDataset + DataLoader, workers=0, decoder={backend}"] = forced
    # the training path: workers return uint8 clips, normalisation and photometric
    # augmentation run batched on the training device (here the CPU, torch threads)
    t8 = ClipTransform(H, W, train=True, flip_p=0.5, pad=10, erasing_p=0.5, output="uint8")
    ds8 = ClipDataset(tracklets, sampler, t8, seed=0)
    for w in args.workers:
        loader = DataLoader(torch.utils.data.Subset(ds8, order), batch_size=args.batch_size,
                            num_workers=w, collate_fn=collate_clips, persistent_workers=w > 0)
        loader_pass(loader, ds8, 0, t8.finish_batch)
        cases[f"videoreid uint8 clips + batched finish_batch, workers={w}"] = (
            lambda loader=loader: loader_pass(loader, ds8, 0, t8.finish_batch))
    rates = interleaved_best(cases, args.repeats)
    rows = [(name, rate, rate / rates[baseline]) for name, rate in rates.items()]

    print()
    print("| loader | clips/s | frames/s | vs plain PIL |\n|---|---:|---:|---:|")
    for name, rate, ratio in rows:
        print(f"| {name} | {rate:.1f} | {rate * args.seq_len:.0f} | {ratio:.2f}x |")

    files = [f for t in tracklets for f in t.frames][: args.decode_frames]
    print()
    stored = dec.decode_image_with_size(files[0])[1]
    print(f"JPEG decoding, {len(files)} frames of {source} (stored size "
          f"{stored[0]}x{stored[1]}; half = {stored[0] // 2}x{stored[1] // 2}); backends here: "
          f"{', '.join(dec.available_backends())}")
    drows = decoder_table(files, args.repeats)
    ref = drows["PIL, bytes in memory"]
    print("\n| decoder | frames/s (CPU time) | vs PIL |\n|---|---:|---:|")
    for name, rate in drows.items():
        print(f"| {name} | {rate:.0f} | {rate / ref:.2f}x |")
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in ("PYTHONPATH", "VIDEOREID_DECODER")
           if os.environ.get(k)]
    cmd = " ".join([*env, *(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv])])
    print(f"\ncommand: {cmd}; load {os.getloadavg()[0]:.1f} at the end")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
