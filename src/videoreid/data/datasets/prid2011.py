"""PRID2011 (multi-shot) loader with 10 train/test splits.

Reference:
    M. Hirzer, C. Beleznai, P. M. Roth, H. Bischof. "Person Re-Identification by Descriptive
    and Discriminative Classification". SCIA 2011. Video protocol as in T. Wang, S. Gong,
    X. Zhu, S. Wang, "Person Re-Identification by Video Ranking", ECCV 2014.

Statistics (official release):
    cam_a 385 persons, cam_b 749 persons; only ``person_0001..person_0200`` are the same
    people in both cameras (beyond 200, equal folder names in cam_a and cam_b are DIFFERENT
    people); 5..675 frames per tracklet.
    The video protocol uses the 178 shared persons with >= 27 frames in both cameras,
    split 89 train / 89 test, 10 splits; query = cam_a tracklets of test ids, gallery =
    cam_b tracklets.

Layout (``root`` may be the parent folder or ``prid2011/`` itself)::

    prid2011/prid_2011/multi_shot/cam_a/person_XXXX/NNNN.png
    prid2011/prid_2011/multi_shot/cam_b/person_XXXX/NNNN.png
    prid2011/splits_prid2011.json      # [{"train": [names], "test": [names]}, ...] (optional)

Decisions:
    - If ``splits_prid2011.json`` exists it is used as is (its number of splits is
      ``num_splits``); every name it lists must exist in both cameras.
    - If it is absent, ``num_splits`` splits are derived from the shared persons (person
      number ``<= num_shared``, default 200, present in both cameras) with ``>= min_frames``
      frames in each (178 on the real data; however many qualify elsewhere): for split ``s``
      a permutation from
      ``numpy.random.default_rng(seed)`` (drawn ``s``-th) is cut into test = first
      ``n // 2`` persons and train = the rest (train gets the odd one). The file is written
      atomically beside the data and the derivation is logged; if the folder is read-only
      the splits are kept in memory and a warning says so.
    - Person folders that no split names are reported (counted per camera in a log line),
      not an error: the official release holds 385 cam_a and 749 cam_b folders of which the
      video protocol uses 178 pairs, and its split file names persons, not positions, so
      extra folders cannot shift a split (unlike iLIDS-VID's index-based file).
    - pid = the person number (``person_0042`` → 42); train pids relabelled per split.
      camid: cam_a → 0, cam_b → 1. Frame number = the file stem.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from videoreid.data.datasets.common import (
    FrameListing,
    FramePaths,
    ReIDDataset,
    list_subdirs,
    regex_frame_parser,
    relabel_train,
    require_dir,
    resolve_dataset_dir,
    with_subset,
)
from videoreid.data.tracklet import ReIDSplit, Tracklet
from videoreid.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

LAYOUT = """\
<root>/prid2011/   (or <root> itself)
  prid_2011/multi_shot/cam_a/person_XXXX/NNNN.png
  prid_2011/multi_shot/cam_b/person_XXXX/NNNN.png
  splits_prid2011.json   [{"train": ["person_0001", ...], "test": [...]}, ...]  (derived if absent)"""

SPLIT_FILE = "splits_prid2011.json"
_PERSON_RX = re.compile(r"person_(\d+)")
_CAMS = ("cam_a", "cam_b")


def derive_splits(persons: list[str], num_splits: int, seed: int) -> list[dict[str, list[str]]]:
    """Seeded train/test halves of ``persons`` (sorted names): test = first ``n // 2`` of each
    permutation, train = the rest; both lists sorted."""
    persons = sorted(persons)
    n = len(persons)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_splits):
        perm = rng.permutation(n)
        out.append({
            "train": sorted(persons[i] for i in perm[n // 2 :]),
            "test": sorted(persons[i] for i in perm[: n // 2]),
        })
    return out


def _read_splits(path: Path) -> list[dict[str, list[str]]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"PRID2011: cannot read {path} as JSON ({e}). Expected layout:\n{LAYOUT}") from None
    ok = isinstance(data, list) and data and all(
        isinstance(d, dict) and isinstance(d.get("train"), list) and isinstance(d.get("test"), list)
        and all(isinstance(x, str) for x in d["train"] + d["test"])
        for d in data
    )
    if not ok:
        raise ValueError(
            f"PRID2011: {path} must be a non-empty JSON list of {{\"train\": [names], \"test\": [names]}} objects "
            f"with names like \"person_0001\""
        )
    for s, d in enumerate(data):
        both = set(d["train"]) & set(d["test"])
        if both:
            raise ValueError(f"PRID2011: split {s} of {path} has persons in both train and test: {sorted(both)[:5]}")
    return data


class PRID2011(ReIDDataset):
    """PRID2011 multi-shot with 10 splits (read from ``splits_prid2011.json`` or derived).

    Args:
        root: parent folder or ``prid2011/``.
        seed: seed of the derived splits (used only when the split file is absent).
        min_frames: minimum frames in each camera for a person to enter derived splits.
        num_splits: number of derived splits.
        num_shared: person numbers ``1..num_shared`` are the same people in both cameras
            (200 in PRID2011); ``None`` treats every name present in both cameras as shared.
            Used only when deriving splits.

    Raises:
        FileNotFoundError: missing camera folder or a person named by the split file.
        ValueError: malformed split file, empty person folder, no qualifying persons.
    """

    name = "prid2011"
    protocol = "cross_camera"

    def __init__(
        self,
        root: str | os.PathLike[str],
        seed: int = 0,
        *,
        min_frames: int = 27,
        num_splits: int = 10,
        num_shared: int | None = 200,
    ) -> None:
        super().__init__()
        self.root = resolve_dataset_dir(root, ("prid2011",), ("prid_2011", SPLIT_FILE), LAYOUT, "PRID2011")
        ms = self.root / "prid_2011" / "multi_shot"
        cam_dirs = [require_dir(ms / c, "PRID2011", LAYOUT) for c in _CAMS]
        listing = FrameListing(regex_frame_parser(r"(?P<frame>\d+)\.\w+", "'0001.png'"), "PRID2011")
        cache: dict[tuple[str, int], Tracklet] = {}

        def tracklet(person: str, c: int) -> Tracklet:
            if (person, c) not in cache:
                folder = cam_dirs[c] / person
                m = _PERSON_RX.fullmatch(person)
                if m is None or not folder.is_dir():
                    raise FileNotFoundError(
                        f"PRID2011: person folder {folder} does not exist (names look like person_0001). "
                        f"Expected layout:\n{LAYOUT}"
                    )
                names, _ = listing(folder)
                pid = int(m.group(1))
                meta = {"tracklet_id": f"{_CAMS[c]}/{person}", "orig_pid": pid, "distractor": False}
                cache[(person, c)] = Tracklet(FramePaths(folder, names), pid, c, meta)
            return cache[(person, c)]

        split_path = self.root / SPLIT_FILE
        self.split_file = split_path
        if split_path.is_file():
            splits = _read_splits(split_path)
        else:
            # equal names beyond num_shared are different people in the two cameras
            shared = sorted(
                p
                for p in set(list_subdirs(cam_dirs[0])) & set(list_subdirs(cam_dirs[1]))
                if (m := _PERSON_RX.fullmatch(p)) and (num_shared is None or int(m.group(1)) <= num_shared)
            )
            shared_rule = "in both cameras" if num_shared is None else f"numbered <= {num_shared} in both cameras"
            qualified = [p for p in shared if len(tracklet(p, 0)) >= min_frames and len(tracklet(p, 1)) >= min_frames]
            if len(qualified) < 2:
                raise ValueError(
                    f"PRID2011: {split_path} is absent and only {len(qualified)} of the {len(shared)} persons "
                    f"{shared_rule} have >= {min_frames} frames in each; cannot derive splits (lower min_frames, "
                    f"set num_shared, or provide the split file)"
                )
            splits = derive_splits(qualified, num_splits, seed)
            try:
                atomic_write_json(split_path, splits)
                logger.warning(
                    "PRID2011: %s was absent; derived %d splits (seed %d) from the %d persons %s with >= %d "
                    "frames in each and wrote it",
                    split_path, num_splits, seed, len(qualified), shared_rule, min_frames,
                )
            except OSError as e:
                logger.warning(
                    "PRID2011: %s is absent and could not be written (%s); using %d splits derived in memory "
                    "(seed %d, %d persons %s with >= %d frames in each)",
                    split_path, e, num_splits, seed, len(qualified), shared_rule, min_frames,
                )
        named = {p for d in splits for p in d["train"] + d["test"]}
        outside = [sum(p not in named for p in list_subdirs(cd)) for cd in cam_dirs]
        if any(outside):
            logger.info("PRID2011: %d cam_a and %d cam_b person folders are in no split of %s "
                        "(not loaded)", outside[0], outside[1], split_path)
        for s, d in enumerate(splits):
            train = [tracklet(p, c) for p in sorted(d["train"]) for c in (0, 1)]
            test = sorted(d["test"])
            query = with_subset((tracklet(p, 0) for p in test), "query")
            gallery = with_subset((tracklet(p, 1) for p in test), "gallery")
            self._splits.append(ReIDSplit(relabel_train(train, "PRID2011"), query, gallery, self.name, self.protocol, s))
        listing.report()
