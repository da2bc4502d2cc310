"""Market-1501 image layout (``<out>/market1501/Market-1501-v15.09.15/``).

```
market1501/Market-1501-v15.09.15/bounding_box_train/0002_c1s1_000451_01.jpg
market1501/Market-1501-v15.09.15/query/...
market1501/Market-1501-v15.09.15/bounding_box_test/...   # also -1_c... (junk), 0000_c... (distractors)
```

Folder choice: the official archive unpacks to ``Market-1501-v15.09.15/``; torchreid looks for
``market1501/Market-1501-v15.09.15/`` first and only falls back (with a deprecation warning)
to the subsets directly in ``market1501/``; this project's loader tries the same two. Writing
the versioned form serves both.

Names ``<pid4>_c<cam>s<seq>_<frame6>_<box2>.jpg`` (junk pid ``-1`` is written ``-1_c...``).
Every image is a frame of a short walking sequence of one identity in one camera, so poses
vary smoothly between images of a sequence; the manifest lists every image as a one-frame
tracklet. Each test identity is seen by 2–4 cameras and has one query image per camera, all
other images in the gallery. ``--tracklet-len`` bounds the images per identity and camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videoreid.data.synthetic.layouts.base import (
    LayoutPlan,
    TrackletPlan,
    camera_sets,
    check_length_range,
    lengths,
    split_ids,
    unique_pids,
)

DATASET_DIR = "market1501"
SUBDIR = "Market-1501-v15.09.15"
EXT = ".jpg"
DEFAULT_CAMERAS = 6
DEFAULT_LENGTH = (2, 5)
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def _pid_str(pid: int) -> str:
    return "-1" if pid == -1 else f"{pid:04d}"


def plan(ids: int, cameras: int, rng: np.random.Generator,
         length_range: tuple[int, int] = DEFAULT_LENGTH) -> LayoutPlan:
    """Plan a Market-1501-layout image dataset with ``ids`` identities (half train/test)."""
    lo, hi = check_length_range(length_range)
    if not 2 <= cameras <= 9:
        raise ValueError(f"Market-1501 layout needs 2..9 cameras (one digit in the name), "
                         f"got {cameras}")
    if ids < 2:
        raise ValueError(f"Market-1501 layout needs at least 2 identities, got {ids}")
    train_ids, test_ids = split_ids(rng, ids)
    pid_pool = unique_pids(rng, ids, 1, max(1501, 3 * ids))
    pid_of = {i: pid_pool[int(j)] for i, j in enumerate(rng.permutation(ids))}

    # jobs: (pid, cam, identity, subset, kind, n_images, failure_rate)
    jobs: list[tuple[int, int, int, str, str, int, float | None]] = []
    for i in train_ids:
        for cam in camera_sets(rng, cameras, 2, 4):
            jobs.append((pid_of[i], cam, i, "train", "normal", lengths(rng, 1, (lo, hi))[0], None))
    for i in test_ids:
        for cam in camera_sets(rng, cameras, 2, 4):
            jobs.append((pid_of[i], cam, i, "query", "normal", 1, None))
            jobs.append((pid_of[i], cam, i, "gallery", "normal", lengths(rng, 1, (lo, hi))[0],
                         None))
    n_gallery = sum(j[5] for j in jobs if j[3] == "gallery")
    n_fresh = 0
    for k in range(max(2, round(0.1 * n_gallery))):  # 0000: false detections
        cam = int(rng.integers(cameras))
        if k % 2 == 0:
            jobs.append((0, cam, -1, "gallery", "background", 1, None))
        else:
            jobs.append((0, cam, ids + n_fresh, "gallery", "distractor", 1, 0.6))
            n_fresh += 1
    for _ in range(max(1, round(0.05 * n_gallery))):  # -1: junk crops of test identities
        i = int(test_ids[rng.integers(len(test_ids))])
        jobs.append((-1, int(rng.integers(cameras)), i, "gallery", "junk", 1, 1.0))

    # Frame numbers grow per (camera, sequence) so every name is unique.
    next_frame: dict[tuple[int, int], int] = {}
    tracklets: list[TrackletPlan] = []
    for pid, cam, ident, subset, kind, n, rate in jobs:
        seq = int(rng.integers(1, 7))
        frame = next_frame.get((cam, seq), int(rng.integers(1, 500)))
        numbers = [frame + 25 * k + int(rng.integers(0, 20)) for k in range(n)]
        next_frame[(cam, seq)] = numbers[-1] + 25
        folder = f"{DATASET_DIR}/{SUBDIR}/{FOLDERS[subset]}"
        stems = [f"{_pid_str(pid)}_c{cam + 1}s{seq}_{f:06d}_01" for f in numbers]
        tracklets.append(TrackletPlan(
            identity=ident, pid=pid, camid=cam, subset=subset,
            frames=[f"{folder}/{s}{EXT}" for s in stems], tracklet_id=f"{subset}/{stems[0]}",
            kind=kind, failure_rate=rate, one_frame=True))
    if max(next_frame.values()) > 999999:
        raise ValueError("Market-1501 frame numbers have 6 digits; use fewer identities")

    def write_metadata(out: Path) -> None:
        for folder in FOLDERS.values():  # the three subsets exist even when empty
            (out / DATASET_DIR / SUBDIR / folder).mkdir(parents=True, exist_ok=True)

    return LayoutPlan(layout="market1501", dataset_dir=DATASET_DIR, tracklets=tracklets,
                      num_identities=ids + n_fresh, identity_groups=[train_ids, test_ids],
                      cameras=cameras, write_metadata=write_metadata)
