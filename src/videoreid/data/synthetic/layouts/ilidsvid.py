"""iLIDS-VID layout (``<out>/ilids-vid/``).

```
ilids-vid/i-LIDS-VID/sequences/cam{1,2}/personNNN/cam{1,2}_personNNN_FFFFF.png
ilids-vid/train-test people splits/train_test_splits_ilidsvid.mat   # 'ls_set' (10, n_ids)
```

Every person has one tracklet in each of the two cameras. Person numbers are not contiguous
(as in the original, which goes up to person319 for 300 people); frame numbers are
consecutive from a random start, 5 digits. ``ls_set`` holds, per split, a permutation of
``1..n_ids`` (1-based indices into the SORTED list of cam1 person folders); the first
``n_ids // 2`` columns are the test persons, the rest train. It is stored as float64 (MATLAB's
default ``double``, which is what ``randperm`` returns). Manifest subsets follow split 0: test
persons' cam1 tracklet is the query, cam2 the gallery.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videoreid.data.synthetic.layouts.base import (
    LayoutPlan,
    TrackletPlan,
    check_length_range,
    lengths,
    unique_pids,
)
from videoreid.data.synthetic.writers import write_mat

DATASET_DIR = "ilids-vid"
EXT = ".png"
DEFAULT_CAMERAS = 2
DEFAULT_LENGTH = (23, 60)
NUM_SPLITS = 10
SPLIT_FILE = "train-test people splits/train_test_splits_ilidsvid.mat"


def plan(ids: int, cameras: int, rng: np.random.Generator,
         length_range: tuple[int, int] = DEFAULT_LENGTH) -> LayoutPlan:
    """Plan an iLIDS-VID-layout dataset: ``ids`` persons, each in both cameras."""
    lo, hi = check_length_range(length_range)
    if cameras != 2:
        raise ValueError(f"iLIDS-VID layout has exactly 2 cameras, got {cameras}")
    if ids < 2:
        raise ValueError(f"iLIDS-VID layout needs at least 2 persons, got {ids}")
    numbers = unique_pids(rng, ids, 1, ids + max(2, int(np.ceil(0.07 * ids))))
    width = max(3, len(str(numbers[-1])))
    persons = [f"person{n:0{width}d}" for n in numbers]  # sorted, as the split file assumes
    ls_set = np.stack([rng.permutation(ids) + 1 for _ in range(NUM_SPLITS)]).astype(np.float64)
    n_test = ids // 2
    splits = [{"train": sorted(persons[int(k) - 1] for k in row[n_test:]),
               "test": sorted(persons[int(k) - 1] for k in row[:n_test])} for row in ls_set]
    test0 = set(splits[0]["test"])
    lens = lengths(rng, 2 * ids, (lo, hi))
    tracklets: list[TrackletPlan] = []
    for p, (person, number) in enumerate(zip(persons, numbers, strict=True)):
        for cam in (1, 2):
            n = lens[2 * p + cam - 1]
            start = int(rng.integers(1, max(2, 99999 - n)))
            folder = f"{DATASET_DIR}/i-LIDS-VID/sequences/cam{cam}/{person}"
            frames = [f"{folder}/cam{cam}_{person}_{start + k:05d}{EXT}" for k in range(n)]
            subset = ("query" if cam == 1 else "gallery") if person in test0 else "train"
            tracklets.append(TrackletPlan(
                identity=p, pid=number, camid=cam - 1, subset=subset, frames=frames,
                tracklet_id=f"cam{cam}/{person}", meta={"person": person}))

    def write_metadata(out: Path) -> None:
        write_mat(out / DATASET_DIR / SPLIT_FILE, {"ls_set": ls_set})

    return LayoutPlan(layout="ilidsvid", dataset_dir=DATASET_DIR, tracklets=tracklets,
                      num_identities=ids, identity_groups=[sorted(range(ids))], cameras=2,
                      write_metadata=write_metadata, splits=splits)
