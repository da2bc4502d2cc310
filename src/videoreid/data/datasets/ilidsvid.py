"""iLIDS-VID loader with the 10 official train/test splits.

Reference:
    T. Wang, S. Gong, X. Zhu, S. Wang. "Person Re-Identification by Video Ranking". ECCV 2014.

Statistics (official release):
    300 identities, 2 cameras, 600 tracklets (one per identity and camera), 23..192 frames
    per tracklet (mean 73), 43,800 frames. Person folders are numbered up to ``person319``
    (not contiguous). Each split: 150 train ids (300 tracklets), 150 test ids (150 query
    tracklets from cam1, 150 gallery tracklets from cam2).

Layout (``root`` may be the parent folder or ``ilids-vid/`` itself)::

    ilids-vid/i-LIDS-VID/sequences/cam1/personNNN/cam1_personNNN_FFFFF.png
    ilids-vid/i-LIDS-VID/sequences/cam2/personNNN/cam2_personNNN_FFFFF.png
    ilids-vid/train-test people splits/train_test_splits_ilidsvid.mat

Split file: key ``ls_set``, shape ``(S, N)`` read from the file (``(10, 300)`` officially);
values are 1-based indices into the sorted list of cam1 person folders. For split ``s`` the
first ``N // 2`` columns are TEST ids and the remaining columns TRAIN ids (Wang et al.,
Sec. 5, "first half for testing").

Decisions:
    - Person folders are sorted by name (as the MATLAB code that wrote the split file and
      the common loaders do; with the official zero-padded names this equals numeric order).
    - pid is the person number (``person042`` → 42) for query/gallery; train pids are
      relabelled per split. camid: cam1 → 0, cam2 → 1.
    - Frame number = the digits before the extension; pid/camera in the name must match the
      folders.
    - Every id named by a split must have a tracklet in both cameras (else an error naming
      the missing folder).
    - Every person folder (cam1 and cam2) must be covered by the split file: the indices are
      positions in the sorted cam1 folder list, so an extra or missing folder would silently
      shift every split's identities. A folder no split names, or a split file indexing
      fewer persons than there are folders, is an error naming the folders.
    - Default protocol ``cross_camera``: query cam1 tracklets of test ids vs cam2 gallery.
"""

from __future__ import annotations

import logging
import os
import re

import numpy as np

from videoreid.data.datasets.common import (
    FrameListing,
    FramePaths,
    ReIDDataset,
    list_subdirs,
    regex_frame_parser,
    relabel_train,
    require_dir,
    require_file,
    resolve_dataset_dir,
    with_subset,
)
from videoreid.data.tracklet import ReIDSplit, Tracklet

logger = logging.getLogger(__name__)

LAYOUT = """\
<root>/ilids-vid/   (or <root> itself)
  i-LIDS-VID/sequences/cam1/personNNN/cam1_personNNN_FFFFF.png
  i-LIDS-VID/sequences/cam2/personNNN/cam2_personNNN_FFFFF.png
  train-test people splits/train_test_splits_ilidsvid.mat   key 'ls_set', (num_splits, num_ids),
      1-based indices into the sorted cam1 person folders; first half of the columns = test ids"""

SPLIT_FILE = "train-test people splits/train_test_splits_ilidsvid.mat"
_PERSON_RX = re.compile(r"person(\d+)")
_FRAME_RX = r"cam(?P<cam>\d+)_person(?P<person>\d+)_(?P<frame>\d+)\.\w+"
_CAMS = ("cam1", "cam2")


def load_split_matrix(path: os.PathLike[str] | str, num_persons: int) -> np.ndarray:
    """``ls_set`` as an ``(S, N)`` int64 array of 0-based person indices, validated."""
    import scipy.io
    import scipy.io.matlab

    try:
        mat = scipy.io.loadmat(os.fspath(path))
    except (scipy.io.matlab.MatReadError, ValueError, TypeError, OSError, NotImplementedError) as e:
        raise ValueError(f"iLIDS-VID: cannot read {path} as a MATLAB .mat file ({e}). Expected layout:\n{LAYOUT}") from None
    if "ls_set" not in mat:
        found = [k for k in mat if not k.startswith("__")]
        raise ValueError(f"iLIDS-VID: {path} has no key 'ls_set' (found {found}). Expected layout:\n{LAYOUT}")
    ls = np.asarray(mat["ls_set"])
    if ls.ndim != 2 or ls.shape[1] < 2:
        raise ValueError(f"iLIDS-VID: {path} 'ls_set' must be (num_splits, num_ids); got shape {ls.shape}")
    if not np.issubdtype(ls.dtype, np.number) or not np.all(ls == np.round(ls)):
        raise ValueError(f"iLIDS-VID: {path} 'ls_set' must hold integer indices; got dtype {ls.dtype}")
    idx = ls.astype(np.int64)
    if idx.min() < 1 or idx.max() > num_persons:
        raise ValueError(
            f"iLIDS-VID: {path} 'ls_set' holds indices {idx.min()}..{idx.max()}, but they are 1-based "
            f"indices into the {num_persons} sorted cam1 person folders"
        )
    for s, row in enumerate(idx):
        if np.unique(row).size != row.size:
            raise ValueError(f"iLIDS-VID: {path} 'ls_set' row {s} repeats a person index")
    return idx - 1


class ILIDSVID(ReIDDataset):
    """iLIDS-VID with its official splits (``num_splits`` read from the split file).

    Args:
        root: parent folder or ``ilids-vid/``.

    Raises:
        FileNotFoundError: missing sequences folder, split file or person folder.
        ValueError: malformed split file, empty person folder, malformed frame name.
    """

    name = "ilidsvid"
    protocol = "cross_camera"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        self.root = resolve_dataset_dir(root, ("ilids-vid",), ("i-LIDS-VID", "train-test people splits"), LAYOUT, "iLIDS-VID")
        seq = self.root / "i-LIDS-VID" / "sequences"
        cam_dirs = [require_dir(seq / c, "iLIDS-VID", LAYOUT) for c in _CAMS]
        split_path = require_file(self.root / SPLIT_FILE, "iLIDS-VID", LAYOUT)

        persons = [p for p in list_subdirs(cam_dirs[0]) if _PERSON_RX.fullmatch(p)]
        others = [p for p in list_subdirs(cam_dirs[0]) if not _PERSON_RX.fullmatch(p)]
        if others:
            logger.warning("iLIDS-VID: ignored %d folder(s) in %s not named personNNN: %s", len(others), cam_dirs[0], others[:5])
        if not persons:
            raise ValueError(f"iLIDS-VID: no personNNN folders in {cam_dirs[0]}. Expected layout:\n{LAYOUT}")
        idx = load_split_matrix(split_path, len(persons))
        used = sorted({int(i) for i in idx.ravel()})
        uncovered = [persons[i] for i in sorted(set(range(len(persons))) - set(used))]
        cam2_only = sorted(p for p in list_subdirs(cam_dirs[1])
                           if _PERSON_RX.fullmatch(p) and p not in set(persons))
        if uncovered or cam2_only:
            raise ValueError(
                f"iLIDS-VID: {split_path} indexes {len(used)} persons, but "
                + (f"{len(uncovered)} cam1 person folder(s) are not covered by any split "
                   f"({', '.join(uncovered[:5])}{', ...' if len(uncovered) > 5 else ''}); "
                   if uncovered else "")
                + (f"{len(cam2_only)} cam2 person folder(s) have no cam1 folder "
                   f"({', '.join(cam2_only[:5])}{', ...' if len(cam2_only) > 5 else ''}); "
                   if cam2_only else "")
                + f"the split indices are positions in the sorted list of the "
                f"{len(persons)} cam1 person folders, so every split's identities would "
                f"shift. Remove the extra folders (or restore the missing ones). Expected "
                f"layout:\n{LAYOUT}")

        listing = FrameListing(regex_frame_parser(_FRAME_RX, "'cam1_person001_00317.png'"), "iLIDS-VID")
        # tracklets[person index] = (cam1 tracklet, cam2 tracklet)
        tracklets: dict[int, tuple[Tracklet, Tracklet]] = {}
        for i in used:
            person = persons[i]
            pid = int(_PERSON_RX.fullmatch(person).group(1))
            pair = []
            for c, cam_dir in enumerate(cam_dirs):
                folder = cam_dir / person
                if not folder.is_dir():
                    raise FileNotFoundError(
                        f"iLIDS-VID: {person} is named by {split_path} but {folder} does not exist "
                        f"(every id needs a tracklet in both cameras). Expected layout:\n{LAYOUT}"
                    )
                names, parsed = listing(folder)
                for n, (_, cam, num) in zip(names, parsed, strict=True):
                    if cam != c + 1 or num != pid:
                        raise ValueError(f"iLIDS-VID: frame {folder / n} does not belong to {_CAMS[c]}/{person}")
                meta = {"tracklet_id": f"{_CAMS[c]}/{person}", "orig_pid": pid, "distractor": False}
                pair.append(Tracklet(FramePaths(folder, names), pid, c, meta))
            tracklets[i] = (pair[0], pair[1])
        listing.report()

        half = idx.shape[1] // 2
        for s, row in enumerate(idx):
            test_ids, train_ids = sorted(row[:half].tolist()), sorted(row[half:].tolist())
            train = [t for i in train_ids for t in tracklets[i]]
            query = with_subset((tracklets[i][0] for i in test_ids), "query")
            gallery = with_subset((tracklets[i][1] for i in test_ids), "gallery")
            self._splits.append(ReIDSplit(relabel_train(train, "iLIDS-VID"), query, gallery, self.name, self.protocol, s))
