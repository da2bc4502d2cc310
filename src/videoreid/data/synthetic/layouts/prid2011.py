"""PRID2011 multi-shot layout (``<out>/prid2011/``).

```
prid2011/prid_2011/multi_shot/cam_a/person_XXXX/NNNN.png
prid2011/prid_2011/multi_shot/cam_b/person_XXXX/NNNN.png
prid2011/splits_prid2011.json   # 10 × {"train": [names], "test": [names]}
```

As in the original: the first ``ids`` person numbers are the same people in both cameras;
beyond them, ``person_XXXX`` in cam_a and ``person_XXXX`` in cam_b are DIFFERENT people
(about ``0.25 * ids`` cam_a-only and ``0.75 * ids`` cam_b-only persons here). Frames are
numbered ``0001..`` per sequence. The splits cover the shared persons with at least 27 frames
in both cameras: most shared persons get lengths ``>= 27`` in both cameras (the requested
length range is raised to 27 for them); about 12 % get one camera shorter than 27 and are
excluded, as in the real data. Each split puts ``n // 2`` persons in test, the rest in train;
names in each list are sorted. Manifest subsets follow split 0; persons outside the splits
are ``"unused"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videoreid.data.synthetic.layouts.base import (
    LayoutPlan,
    TrackletPlan,
    check_length_range,
    lengths,
)
from videoreid.utils.io import atomic_write_json

DATASET_DIR = "prid2011"
EXT = ".png"
DEFAULT_CAMERAS = 2
DEFAULT_LENGTH = (27, 60)
MIN_SPLIT_LENGTH = 27
NUM_SPLITS = 10
SPLIT_FILE = "splits_prid2011.json"
CAMS = ("cam_a", "cam_b")


def plan(ids: int, cameras: int, rng: np.random.Generator,
         length_range: tuple[int, int] = DEFAULT_LENGTH) -> LayoutPlan:
    """Plan a PRID2011-layout dataset with ``ids`` persons seen by both cameras."""
    lo, hi = check_length_range(length_range)
    if cameras != 2:
        raise ValueError(f"PRID2011 layout has exactly 2 cameras, got {cameras}")
    if hi > 9999:
        raise ValueError(f"PRID2011 frame numbers have 4 digits: length max {hi} > 9999")
    n_short = int(round(0.12 * ids))
    if ids - n_short < 2:
        raise ValueError(f"PRID2011 layout needs at least 2 persons for its splits, got {ids}")
    n_a_only, n_b_only = max(1, round(0.25 * ids)), max(1, round(0.75 * ids))
    short = {int(i) for i in rng.choice(ids, size=n_short, replace=False)}
    long_range = (max(lo, MIN_SPLIT_LENGTH), max(hi, MIN_SPLIT_LENGTH))
    short_range = (min(max(1, lo), MIN_SPLIT_LENGTH - 1), MIN_SPLIT_LENGTH - 1)

    # (identity, cam, person number, length)
    records: list[tuple[int, int, int, int]] = []
    for i in range(ids):
        la, lb = lengths(rng, 2, long_range)
        if i in short:
            s = lengths(rng, 1, short_range)[0]
            la, lb = (s, lb) if rng.random() < 0.5 else (la, s)
        records += [(i, 0, i + 1, la), (i, 1, i + 1, lb)]
    extra = lengths(rng, n_a_only + n_b_only, (lo, hi))
    for k in range(n_a_only):
        records.append((ids + k, 0, ids + 1 + k, extra[k]))
    for k in range(n_b_only):
        records.append((ids + n_a_only + k, 1, ids + 1 + k, extra[n_a_only + k]))
    records.sort(key=lambda r: (r[1], r[2]))

    eligible = sorted(f"person_{i + 1:04d}" for i in range(ids) if i not in short)
    n_test = len(eligible) // 2
    splits = []
    for _ in range(NUM_SPLITS):
        perm = [eligible[int(k)] for k in rng.permutation(len(eligible))]
        splits.append({"train": sorted(perm[n_test:]), "test": sorted(perm[:n_test])})
    test0, train0 = set(splits[0]["test"]), set(splits[0]["train"])

    tracklets: list[TrackletPlan] = []
    for ident, cam, number, n in records:
        person = f"person_{number:04d}"
        folder = f"{DATASET_DIR}/prid_2011/multi_shot/{CAMS[cam]}/{person}"
        shared = ident < ids
        if shared and person in test0:
            subset = "query" if cam == 0 else "gallery"
        elif shared and person in train0:
            subset = "train"
        else:
            subset = "unused"
        tracklets.append(TrackletPlan(
            identity=ident, pid=number, camid=cam, subset=subset,
            frames=[f"{folder}/{k:04d}{EXT}" for k in range(1, n + 1)],
            tracklet_id=f"{CAMS[cam]}/{person}", meta={"person": person, "shared": shared}))

    def write_metadata(out: Path) -> None:
        atomic_write_json(out / DATASET_DIR / SPLIT_FILE, splits)

    return LayoutPlan(layout="prid2011", dataset_dir=DATASET_DIR, tracklets=tracklets,
                      num_identities=ids + n_a_only + n_b_only,
                      identity_groups=[list(range(ids))], cameras=2,
                      write_metadata=write_metadata, splits=splits)
