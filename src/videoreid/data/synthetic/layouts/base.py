"""What a layout planner returns: which tracklets to render, where, and the metadata files.

A planner decides identities, cameras, subsets, tracklet lengths and every file name BEFORE
anything is rendered; the generator then renders each `TrackletPlan` and the plan's
``write_metadata`` writes the layout's index files (``.mat``, name lists, split files).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class TrackletPlan:
    """One tracklet to render.

    Attributes:
        identity: index of the rendered identity (-1: no person, background only).
        pid: pid as written on disk.
        camid: 0-based camera.
        subset: ``"train"``/``"query"``/``"gallery"`` (``"unused"`` for PRID persons outside
            every split).
        frames: frame paths relative to the output folder, temporal order.
        tracklet_id: layout-specific unique id.
        kind: ``"normal"``, ``"distractor"``, ``"junk"`` or ``"background"``.
        failure_rate: per-frame detector-failure rate overriding the preset (junk: 1.0).
        one_frame: image layouts: every frame is its own manifest tracklet.
        meta: extra manifest data (MARS ``row``, iLIDS/PRID ``person``).
    """

    identity: int
    pid: int
    camid: int
    subset: str
    frames: list[str]
    tracklet_id: str
    kind: str = "normal"
    failure_rate: float | None = None
    one_frame: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class LayoutPlan:
    """A planned dataset.

    Attributes:
        layout: layout name.
        dataset_dir: dataset folder relative to the output folder.
        tracklets: plans in manifest order.
        num_identities: identities to draw (indices ``0..num_identities-1``).
        identity_groups: groups within which look-alike pairs are formed.
        cameras: number of cameras.
        write_metadata: ``f(out)`` writing the index files.
        splits: iLIDS-VID/PRID2011 person splits as written on disk.
    """

    layout: str
    dataset_dir: str
    tracklets: list[TrackletPlan]
    num_identities: int
    identity_groups: list[list[int]]
    cameras: int
    write_metadata: Callable[[Path], None]
    splits: list[dict[str, list[str]]] = field(default_factory=list)


def lengths(rng: np.random.Generator, n: int, length_range: tuple[int, int]) -> list[int]:
    """``n`` tracklet lengths drawn uniformly from the inclusive range."""
    lo, hi = length_range
    return [int(x) for x in rng.integers(lo, hi + 1, size=n)]


def check_length_range(length_range: tuple[int, int]) -> tuple[int, int]:
    lo, hi = int(length_range[0]), int(length_range[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"tracklet length range must satisfy 1 <= min <= max, got {lo}, {hi}")
    return lo, hi


def split_ids(rng: np.random.Generator, n: int) -> tuple[list[int], list[int]]:
    """Split identity indices ``0..n-1`` at random into train (ceil half) and test (floor)."""
    perm = [int(i) for i in rng.permutation(n)]
    n_test = n // 2
    return sorted(perm[n_test:]), sorted(perm[:n_test])


def camera_sets(rng: np.random.Generator, cameras: int, min_cams: int = 2,
                max_cams: int | None = None) -> list[int]:
    """A random sorted set of ``min_cams..max_cams`` distinct cameras."""
    hi = min(cameras, max_cams or cameras)
    k = int(rng.integers(min(min_cams, hi), hi + 1))
    return sorted(int(c) for c in rng.choice(cameras, size=k, replace=False))


def unique_pids(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    """``n`` distinct random pids in ``[low, high]``, sorted (non-contiguous like the originals)."""
    if high - low + 1 < n:
        raise ValueError(f"cannot draw {n} distinct pids from [{low}, {high}]")
    return sorted(int(p) for p in rng.choice(np.arange(low, high + 1), size=n, replace=False))
