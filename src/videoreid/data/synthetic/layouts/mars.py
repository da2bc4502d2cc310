"""MARS layout (``<out>/mars/``), written exactly like the official release.

```
mars/bbox_train/<pid4>/<pid4>C<cam>T<tracklet4>F<frame3>.jpg
mars/bbox_test/<pid4>/...          # also "0000" (distractors) and "00-1" (junk)
mars/info/train_name.txt           # one name per line, CRLF line ends (also after the last)
mars/info/test_name.txt
mars/info/tracks_train_info.mat    # 'track_train_info' (N, 4) int32 [start, end, pid, cam]
mars/info/tracks_test_info.mat     # 'track_test_info'  (M, 4) int32, start/end 1-based incl.
mars/info/query_IDX.mat            # 'query_IDX' (1, Q) uint16, 1-based rows of the test info
```

Choices (matching the files of the official MARS release and its metadata):
the tracklet number ``T`` counts the tracklets of a pid across cameras (``0013C5T0001``,
``0013C6T0002``); frame numbers restart at ``F001`` per tracklet; name lists and matrix rows
are sorted by name, so ``"00-1"`` (junk) comes before ``"0000"`` (distractors) before real
pids; ``query_IDX`` is ascending. Each test identity is seen by 2–4 cameras; its queries (one
or two, each in a different camera) always leave gallery tracklets in another camera. pid 0
tracklets are false detections (background, or an unrelated person badly cropped); pid -1
tracklets are detector failures on real test identities (every frame badly cropped).
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
from videoreid.data.synthetic.writers import write_lines, write_mat

DATASET_DIR = "mars"
EXT = ".jpg"
DEFAULT_CAMERAS = 6
DEFAULT_LENGTH = (12, 40)
CRLF = "\r\n"


def pid_folder(pid: int) -> str:
    """MARS folder / name prefix of a pid: ``"0001"``, ``"0000"``, ``"00-1"``."""
    if pid == -1:
        return "00-1"
    if not 0 <= pid <= 9999:
        raise ValueError(f"MARS pid must be -1 or in [0, 9999], got {pid}")
    return f"{pid:04d}"


def plan(ids: int, cameras: int, rng: np.random.Generator,
         length_range: tuple[int, int] = DEFAULT_LENGTH) -> LayoutPlan:
    """Plan a MARS-layout dataset with ``ids`` identities (half train, half test)."""
    lo, hi = check_length_range(length_range)
    if hi > 999:
        raise ValueError(f"MARS frame numbers have 3 digits: tracklet length max {hi} > 999")
    if not 2 <= cameras <= 9:
        raise ValueError(f"MARS layout needs 2..9 cameras (one digit in the name), got {cameras}")
    if ids < 2:
        raise ValueError(f"MARS layout needs at least 2 identities (train and test), got {ids}")
    train_ids, test_ids = split_ids(rng, ids)
    pid_pool = unique_pids(rng, ids, 1, max(1501, 3 * ids))
    pid_of = {i: pid_pool[j] for i, j in enumerate(rng.permutation(ids))}

    # records: (pid, cam, identity, subset, kind, failure_rate)
    records: list[tuple[int, int, int, str, str, float | None]] = []
    for i in train_ids:
        for cam in camera_sets(rng, cameras, 2, 4):
            for _ in range(1 + int(rng.random() < 0.35)):
                records.append((pid_of[i], cam, i, "train", "normal", None))
    for i in test_ids:
        cams = camera_sets(rng, cameras, 2, 4)
        per_cam = {cam: 1 + int(rng.random() < 0.35) for cam in cams}
        n_query = 2 if len(cams) >= 3 and rng.random() < 0.5 else 1
        query_cams = {int(c) for c in rng.choice(cams, size=n_query, replace=False)}
        for cam in cams:
            for k in range(per_cam[cam]):
                subset = "query" if (cam in query_cams and k == 0) else "gallery"
                records.append((pid_of[i], cam, i, subset, "normal", None))
    n_test = sum(1 for r in records if r[3] != "train")
    n_fresh = 0
    for k in range(max(1, round(0.2 * n_test))):  # pid 0: false detections
        cam = int(rng.integers(cameras))
        if k % 2 == 0:
            records.append((0, cam, -1, "gallery", "background", None))
        else:
            records.append((0, cam, ids + n_fresh, "gallery", "distractor", 0.6))
            n_fresh += 1
    for _ in range(max(1, round(0.1 * n_test))):  # pid -1: junk crops of test identities
        i = int(test_ids[rng.integers(len(test_ids))])
        records.append((-1, int(rng.integers(cameras)), i, "gallery", "junk", 1.0))

    # Tracklet numbers count a pid's tracklets across cameras, in camera order.
    records.sort(key=lambda r: (pid_folder(r[0]), r[1]))
    counter: dict[int, int] = {}
    named = []
    for r in records:
        counter[r[0]] = counter.get(r[0], 0) + 1
        named.append((f"{pid_folder(r[0])}C{r[1] + 1}T{counter[r[0]]:04d}", r))
    named.sort(key=lambda x: x[0])
    lens = lengths(rng, len(named), (lo, hi))

    tracklets: list[TrackletPlan] = []
    names: dict[str, list[str]] = {"train": [], "test": []}
    rows: dict[str, list[list[int]]] = {"train": [], "test": []}
    query_rows: list[int] = []
    for part in ("train", "test"):
        for (prefix, (pid, cam, ident, subset, kind, rate)), n in zip(named, lens, strict=True):
            if (subset == "train") != (part == "train"):
                continue
            frame_names = [f"{prefix}F{f:03d}{EXT}" for f in range(1, n + 1)]
            start = len(names[part]) + 1
            names[part].extend(frame_names)
            row = len(rows[part])
            rows[part].append([start, start + n - 1, pid, cam + 1])
            if subset == "query":
                query_rows.append(row + 1)
            folder = f"{DATASET_DIR}/bbox_{part}/{pid_folder(pid)}"
            tracklets.append(TrackletPlan(
                identity=ident, pid=pid, camid=cam, subset=subset,
                frames=[f"{folder}/{name}" for name in frame_names], tracklet_id=prefix,
                kind=kind, failure_rate=rate, meta={"row": row, "info": f"tracks_{part}_info"}))

    def write_metadata(out: Path) -> None:
        info = out / DATASET_DIR / "info"
        write_lines(info / "train_name.txt", names["train"], CRLF)
        write_lines(info / "test_name.txt", names["test"], CRLF)
        write_mat(info / "tracks_train_info.mat",
                  {"track_train_info": np.asarray(rows["train"], dtype=np.int32).reshape(-1, 4)})
        write_mat(info / "tracks_test_info.mat",
                  {"track_test_info": np.asarray(rows["test"], dtype=np.int32).reshape(-1, 4)})
        write_mat(info / "query_IDX.mat",
                  {"query_IDX": np.asarray(sorted(query_rows), dtype=np.uint16).reshape(1, -1)})

    if len(rows["test"]) > 65535:
        raise ValueError(f"MARS query_IDX is uint16: {len(rows['test'])} test rows cannot be "
                         f"indexed (max 65535); use fewer identities")
    return LayoutPlan(layout="mars", dataset_dir=DATASET_DIR, tracklets=tracklets,
                      num_identities=ids + n_fresh, identity_groups=[train_ids, test_ids],
                      cameras=cameras, write_metadata=write_metadata)
