"""Computing flow for tracklets and filling a cache, in parallel and resumably.

:func:`compute_flow_cache` runs one job per tracklet in a pool of worker processes. Each
worker builds its own estimator from the cache's recorded ``spec`` (OpenCV's estimator objects
cannot be pickled) and uses one OpenCV thread, since the workers are the parallelism.
Workers are *spawned*, not forked: a child forked from a process whose OpenCV / torch thread
pools have run can deadlock (observed here: ``cv2.setNumThreads`` hangs in a child forked
after torch ran). As with any spawn pool, a script that calls this must guard its entry
point with ``if __name__ == "__main__":``; a worker that cannot start is reported as an
error saying so, not retried forever. A job first checks whether every flow file of the
tracklet exists and skips it if so (resume); otherwise it streams over the frames — decode
frame ``t + 1``, estimate ``F^t``, write it atomically — so even a 900-frame MARS tracklet never
sits in memory whole. A tracklet that fails (unreadable frame, frames of different sizes) is
reported with its reason and counted; the others go on. :func:`compute_dataset_flows` does
this for every distinct tracklet of every split of a dataset (``videoreid flow``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from videoreid.data.decode import decode_image
from videoreid.modalities.flow.cache import CACHE_DIRNAME, FlowCache
from videoreid.modalities.flow.codec import DEFAULT_STEP
from videoreid.modalities.flow.estimators import (
    FlowEstimator,
    build_estimator,
    estimator_from_spec,
)

log = logging.getLogger(__name__)

__all__ = [
    "FlowCacheReport",
    "load_frame",
    "tracklet_flows",
    "unique_frame_lists",
    "compute_flow_cache",
    "compute_dataset_flows",
]


def load_frame(path: str | os.PathLike[str], scale: float = 1.0) -> np.ndarray:
    """Decode a frame (``(H, W, 3)`` uint8 RGB), downscaled to ``round(scale · size)``."""
    img = decode_image(path)
    if scale != 1.0:
        h, w = img.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


def tracklet_flows(
    frames: Sequence[str | os.PathLike[str]], estimator: FlowEstimator, scale: float = 1.0
) -> np.ndarray:
    """Forward flows of consecutive frames, in memory.

    Returns:
        ``(T - 1, 2, h, w)`` float32: entry ``t`` is the flow from frame ``t`` to ``t + 1``.
    """
    return estimator.sequence([load_frame(f, scale) for f in frames])


def _write_tracklet(frames: Sequence[str], cache: FlowCache, estimator: FlowEstimator,
                    chunk: int = 16) -> int:
    """Estimate and write every flow of a tracklet, ``chunk`` pairs at a time."""
    n = len(frames)
    written = 0
    prev = load_frame(frames[0], cache.scale) if n > 1 else None
    for s in range(0, n - 1, chunk):
        e = min(s + chunk, n - 1)
        imgs = [prev] + [load_frame(frames[j], cache.scale) for j in range(s + 1, e + 1)]
        flows = estimator.sequence(imgs)
        for k, flow in enumerate(flows):
            cache.write(frames[s + k], flow)
            written += 1
        prev = imgs[-1]
    return written


@dataclass
class FlowCacheReport:
    """What :func:`compute_flow_cache` did.

    Attributes:
        tracklets: tracklets asked for.
        computed: tracklets whose flow was (re)computed.
        skipped: tracklets already complete in the cache (resume).
        files_written: flow files written.
        failed: ``(first frame, reason)`` per tracklet that could not be processed.
    """

    tracklets: int = 0
    computed: int = 0
    skipped: int = 0
    files_written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.tracklets} tracklets: {self.computed} computed, {self.skipped} already "
                f"cached, {len(self.failed)} failed; {self.files_written} flow files written")


# Worker state: set once per process by _init_worker.
_STATE: dict[str, Any] = {}


def _init_worker(cache_args: dict[str, Any], overwrite: bool, threads: int | None) -> None:
    if threads is not None:
        cv2.setNumThreads(threads)
    cache = FlowCache(**cache_args)
    _STATE.update(cache=cache, estimator=estimator_from_spec(cache.estimator),
                  overwrite=overwrite)


def _job(frames: list[str]) -> tuple[str, int, str | None]:
    """``(status, files written, error)`` with status ``computed|skipped|failed``."""
    cache: FlowCache = _STATE["cache"]
    try:
        if not _STATE["overwrite"] and cache.is_complete(frames):
            return "skipped", 0, None
        return "computed", _write_tracklet(frames, cache, _STATE["estimator"]), None
    except Exception as e:  # report and go on with the other tracklets
        return "failed", 0, f"{type(e).__name__}: {e}"


def unique_frame_lists(tracklets: Iterable[Any]) -> list[list[str]]:
    """Distinct frame lists (as strings) of tracklets or frame sequences, first-seen order.

    Multi-split datasets repeat the same tracklets in every split; each is computed once.
    """
    seen: set[tuple[str, ...]] = set()
    out = []
    for t in tracklets:
        frames = getattr(t, "frames", t)
        key = tuple(frames.strings()) if hasattr(frames, "strings") else tuple(map(os.fspath, frames))
        if key and key not in seen:
            seen.add(key)
            out.append(list(key))
    return out


def compute_flow_cache(
    tracklets: Iterable[Any],
    cache: FlowCache,
    *,
    workers: int = 0,
    overwrite: bool = False,
    progress: bool | None = None,
    desc: str = "flow",
    start_method: str | None = None,
) -> FlowCacheReport:
    """Fill ``cache`` with the flow of every tracklet (resumable, parallel).

    Args:
        tracklets: ``Tracklet`` s or frame-path sequences (duplicates are computed once).
        cache: the target cache; its ``flow_meta.json`` is written first (an existing one
            with other settings is an error unless ``overwrite``).
        workers: worker processes (0: in this process).
        overwrite: recompute tracklets that are already complete.
        progress: progress bar (``None``: only on a terminal).
        desc: progress-bar label.
        start_method: multiprocessing start method (default ``spawn``, see module docstring).

    Returns:
        a :class:`FlowCacheReport`; failures are also logged.
    """
    jobs = unique_frame_lists(tracklets)
    cache.save_meta(overwrite=overwrite)
    report = FlowCacheReport(tracklets=len(jobs))
    cache_args = {"cache_dir": cache.cache_dir, "anchor": cache.anchor,
                  "estimator": cache.estimator, "step": cache.step, "scale": cache.scale}
    bar = tqdm(total=len(jobs), unit="tracklet", desc=desc,
               disable=None if progress is None else not progress)

    def record(frames_first: str, result: tuple[str, int, str | None]) -> None:
        status, n, err = result
        if status == "skipped":
            report.skipped += 1
        elif status == "computed":
            report.computed += 1
            report.files_written += n
        else:
            report.failed.append((frames_first, err or ""))
            log.warning("flow failed for the tracklet starting at %s: %s", frames_first, err)
        bar.update(1)

    try:
        if workers <= 0:
            _init_worker(cache_args, overwrite, None)
            for frames in jobs:
                record(frames[0], _job(frames))
        else:
            ctx = mp.get_context(start_method or "spawn")
            chunksize = max(1, min(16, len(jobs) // (8 * workers) or 1))
            try:
                with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                         initargs=(cache_args, overwrite, 1)) as pool:
                    # map keeps job order, so each result pairs with its tracklet.
                    for frames, result in zip(jobs, pool.map(_job, jobs, chunksize=chunksize),
                                              strict=True):
                        record(frames[0], result)
            except BrokenProcessPool as e:
                raise RuntimeError(
                    "flow worker processes died; when computing flow from a script with "
                    "workers > 0, guard the script's entry point with "
                    "`if __name__ == \"__main__\":` (workers are spawned), or use workers=0"
                ) from e
    finally:
        bar.close()
    if report.failed:
        log.warning("flow: %d of %d tracklets failed (first: %s: %s)", len(report.failed),
                    report.tracklets, *report.failed[0])
    return report


def compute_dataset_flows(
    dataset: str,
    root: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    estimator: str = "dis",
    estimator_args: dict[str, Any] | None = None,
    step: float = DEFAULT_STEP,
    scale: float = 1.0,
    subsets: Sequence[str] = ("train", "query", "gallery"),
    workers: int = 0,
    overwrite: bool = False,
    progress: bool | None = None,
    dataset_args: dict[str, Any] | None = None,
) -> tuple[FlowCache, FlowCacheReport]:
    """Flow of every distinct tracklet of a dataset (all splits, chosen subsets) into a cache.

    Args:
        dataset: name in ``videoreid.data.datasets.factory.DATASETS``.
        root: dataset parent folder or the dataset folder itself.
        cache_dir: default ``<resolved dataset folder>/flow_cache``; anchor = dataset folder.
        estimator, estimator_args: see :func:`build_estimator`.
        step: PNG quantisation step in px.
        scale: flow map size relative to the frames.
        subsets: which of each split's lists to cover.
        workers, overwrite, progress: see :func:`compute_flow_cache`.
        dataset_args: extra loader options (e.g. PRID2011 ``seed``).

    Returns:
        ``(cache, report)``.
    """
    from videoreid.data.datasets.factory import build_dataset

    bad = sorted(set(subsets) - {"train", "query", "gallery"})
    if bad:
        raise ValueError(f"unknown subsets {bad}; valid: train, query, gallery")
    ds = build_dataset(dataset, root, **(dataset_args or {}))
    est = build_estimator(estimator, **(estimator_args or {}))
    anchor = Path(ds.root)
    cache = FlowCache(cache_dir if cache_dir is not None else anchor / CACHE_DIRNAME, anchor,
                      estimator=est.spec(), step=step, scale=scale)
    tracklets = [t for split in ds.splits() for s in subsets for t in getattr(split, s)]
    report = compute_flow_cache(tracklets, cache, workers=workers, overwrite=overwrite,
                                progress=progress, desc=f"flow {dataset}")
    return cache, report
