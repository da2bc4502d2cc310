"""DukeMTMC-VideoReID layout (``<out>/dukemtmc-vidreid/DukeMTMC-VideoReID/``).

```
DukeMTMC-VideoReID/{train,query,gallery}/<pid4>/<tracklet4>/<pid4>_C<cam>_F<idx4>_X<frame5>.jpg
```

``F`` is the frame's index within the tracklet, ``X`` the frame number in the camera's video
(sampled every 5th frame of 60 fps video, i.e. 12 fps), ``D`` instead of ``X`` marks a
distractor identity (gallery only; datasets.md). As in the real data, about one tracklet in
ten starts at ``F0002`` instead of ``F0001`` (readers must sort by the parsed index; torchreid's
reader looks up ``F0001..F{n}`` and so drops the last frame of such tracklets). Tracklet
folders number a pid's tracklets 0001.. across train/query/gallery. Each test identity has
exactly one query tracklet and gallery tracklets in at least one other camera.
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

DATASET_DIR = "dukemtmc-vidreid"
SUBDIR = "DukeMTMC-VideoReID"
EXT = ".jpg"
DEFAULT_CAMERAS = 8
DEFAULT_LENGTH = (12, 40)
VIDEO_STEP = 5


def plan(ids: int, cameras: int, rng: np.random.Generator,
         length_range: tuple[int, int] = DEFAULT_LENGTH) -> LayoutPlan:
    """Plan a DukeMTMC-VideoReID-layout dataset (half train, half test, plus distractors)."""
    lo, hi = check_length_range(length_range)
    if hi > 9998:
        raise ValueError(f"Duke frame indices have 4 digits: tracklet length max {hi} > 9998")
    if not 2 <= cameras <= 9:
        raise ValueError(f"Duke layout needs 2..9 cameras (one digit in the name), got {cameras}")
    if ids < 2:
        raise ValueError(f"Duke layout needs at least 2 identities (train and test), got {ids}")
    train_ids, test_ids = split_ids(rng, ids)
    n_dis = max(1, round(0.5 * len(test_ids)))
    pid_pool = unique_pids(rng, ids + n_dis, 1, max(2000, 3 * (ids + n_dis)))
    perm = rng.permutation(ids + n_dis)
    pid_of = {i: pid_pool[int(j)] for i, j in enumerate(perm)}

    records: list[tuple[int, int, int, str, str]] = []  # pid, cam, identity, subset, kind
    for i in train_ids:
        for cam in camera_sets(rng, cameras, 1, 4):
            for _ in range(1 + int(rng.random() < 0.25)):
                records.append((pid_of[i], cam, i, "train", "normal"))
    for i in test_ids:
        cams = camera_sets(rng, cameras, 2, 4)
        query_cam = int(cams[rng.integers(len(cams))])
        records.append((pid_of[i], query_cam, i, "query", "normal"))
        for cam in cams:
            for _ in range(int(cam != query_cam) + int(rng.random() < 0.3)):
                records.append((pid_of[i], cam, i, "gallery", "normal"))
    for k in range(n_dis):  # distractor identities: gallery only
        i = ids + k
        records.append((pid_of[i], int(rng.integers(cameras)), i, "gallery", "distractor"))

    order = {"train": 0, "query": 1, "gallery": 2}
    records.sort(key=lambda r: (order[r[3]], r[0], r[1]))
    counter: dict[int, int] = {}
    lens = lengths(rng, len(records), (lo, hi))
    tracklets: list[TrackletPlan] = []
    for (pid, cam, ident, subset, kind), n in zip(records, lens, strict=True):
        counter[pid] = counter.get(pid, 0) + 1
        tnum = counter[pid]
        first = 2 if rng.random() < 0.1 else 1
        video0 = int(rng.integers(1, max(2, 99999 - VIDEO_STEP * (n + 1))))
        marker = "D" if kind == "distractor" else "X"
        folder = f"{DATASET_DIR}/{SUBDIR}/{subset}/{pid:04d}/{tnum:04d}"
        frames = [f"{folder}/{pid:04d}_C{cam + 1}_F{first + k:04d}_{marker}"
                  f"{video0 + VIDEO_STEP * k:05d}{EXT}" for k in range(n)]
        tracklets.append(TrackletPlan(
            identity=ident, pid=pid, camid=cam, subset=subset, frames=frames,
            tracklet_id=f"{subset}/{pid:04d}/{tnum:04d}", kind=kind,
            meta={"first_index": first}))

    def write_metadata(out: Path) -> None:
        # The release has no index files: the folder tree is the index. Empty subsets still
        # exist as folders so readers find the expected layout.
        for subset in order:
            (out / DATASET_DIR / SUBDIR / subset).mkdir(parents=True, exist_ok=True)

    return LayoutPlan(layout="dukev", dataset_dir=DATASET_DIR, tracklets=tracklets,
                      num_identities=ids + n_dis, identity_groups=[train_ids, test_ids],
                      cameras=cameras, write_metadata=write_metadata)
