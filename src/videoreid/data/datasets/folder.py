"""Generic folder layout for your own tracklets.

Layout (``root`` is the dataset folder itself)::

    <root>/
      train/<pid>/<camid>_<tracklet>/<frames>
      query/<pid>/<camid>_<tracklet>/<frames>
      gallery/<pid>/<camid>_<tracklet>/<frames>

    e.g. <root>/train/17/0_000/frame_000001.jpg
         <root>/query/230/1_a/0001.png

- ``<pid>``: an integer identity label (any non-negative integer; numbers need not be
  contiguous or zero-padded). ``-1`` marks a junk tracklet: it is dropped from train (counted
  and logged) and ignored by the evaluation protocols in query/gallery. No other pid is
  special (``0`` is an ordinary identity here, unlike MARS).
- ``<camid>_<tracklet>``: ``<camid>`` is the 0-based integer camera index, ``<tracklet>``
  any name that makes the folder unique within the identity (``0_000``, ``2_morning``).
- ``<frames>``: image files (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``); the frame number is
  the last run of digits in the file stem (``frame_000012.jpg`` → 12, ``0003.png`` → 3),
  frames are ordered by it. Keypoint files ``<frame stem>_keypoints.json`` may sit beside the
  frames and are ignored.
- All three subset folders must exist; a subset may be empty (e.g. no ``train`` when you
  only evaluate). An identity folder without tracklet folders, or a tracklet folder
  without frames, is an error naming it.

One split; train pids are relabelled ``0..N-1`` in sorted pid order; query/gallery keep
their pids. Default protocol ``market`` (gallery items with the query's pid and camera are
ignored).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from videoreid.data.datasets.common import (
    FrameListing,
    FramePaths,
    ReIDDataset,
    list_subdirs,
    relabel_train,
    require_dir,
)
from videoreid.data.tracklet import ReIDSplit, Tracklet

LAYOUT = """\
<root>/
  train/<pid>/<camid>_<tracklet>/<frames>      pid: integer (-1 = junk); camid: 0-based integer
  query/<pid>/<camid>_<tracklet>/<frames>      frames: .jpg/.jpeg/.png/.bmp, ordered by the last
  gallery/<pid>/<camid>_<tracklet>/<frames>    number in the file stem"""

SUBSETS = ("train", "query", "gallery")
_PID_RX = re.compile(r"-1|\d+")
_TRACKLET_RX = re.compile(r"(\d+)_(.+)")
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def parse_frame_number(name: str) -> tuple[int]:
    """Last run of digits in the file stem."""
    stem = name.rsplit(".", 1)[0]
    m = _LAST_NUMBER.search(stem)
    if m is None:
        raise ValueError("expected a frame number in the file name, e.g. 'frame_000012.jpg' or '0003.png'")
    return (int(m.group(1)),)


class FolderDataset(ReIDDataset):
    """Tracklets in the generic ``<root>/{train,query,gallery}/<pid>/<camid>_<tracklet>/`` layout.

    Args:
        root: the dataset folder holding ``train/``, ``query/`` and ``gallery/``.

    Raises:
        FileNotFoundError: missing root or subset folder.
        ValueError: a folder name that is not ``<pid>`` / ``<camid>_<tracklet>``, an empty
            identity or tracklet folder, a frame name without a number.
    """

    name = "folder"
    protocol = "market"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"folder dataset: root {self.root} does not exist. Expected layout:\n{LAYOUT}")
        listing = FrameListing(parse_frame_number, "folder dataset")
        parts = {s: self._load(require_dir(self.root / s, "folder dataset", LAYOUT), s, listing) for s in SUBSETS}
        listing.report()
        self._splits = [
            ReIDSplit(relabel_train(parts["train"], "folder dataset"), parts["query"], parts["gallery"], self.name, self.protocol, 0)
        ]

    def _load(self, folder: Path, subset: str, listing: FrameListing) -> list[Tracklet]:
        out = []
        for pid_dir in sorted(list_subdirs(folder), key=lambda p: (int(p) if _PID_RX.fullmatch(p) else 0, p)):
            if not _PID_RX.fullmatch(pid_dir):
                raise ValueError(
                    f"folder dataset: identity folder {folder / pid_dir} is not an integer pid (-1 for junk). "
                    f"Expected layout:\n{LAYOUT}"
                )
            pid = int(pid_dir)
            tracklet_dirs = list_subdirs(folder / pid_dir)
            if not tracklet_dirs:
                raise ValueError(
                    f"folder dataset: identity folder {folder / pid_dir} holds no <camid>_<tracklet> folders. "
                    f"Expected layout:\n{LAYOUT}"
                )
            for tdir in tracklet_dirs:
                m = _TRACKLET_RX.fullmatch(tdir)
                if m is None:
                    raise ValueError(
                        f"folder dataset: tracklet folder {folder / pid_dir / tdir} is not named <camid>_<tracklet> "
                        f"(e.g. 0_000). Expected layout:\n{LAYOUT}"
                    )
                path = folder / pid_dir / tdir
                names, _ = listing(path)
                meta = {
                    "tracklet_id": f"{subset}/{pid_dir}/{tdir}",
                    "orig_pid": pid,
                    "distractor": False,
                    "subset": subset,
                }
                out.append(Tracklet(FramePaths(path, names), pid, int(m.group(1)), meta))
        return out
