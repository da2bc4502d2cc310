"""DukeMTMC-VideoReID loader.

References:
    Y. Wu, Y. Lin, X. Dong, Y. Yan, W. Ouyang, Y. Yang. "Exploit the Unknown Gradually:
    One-Shot Video-Based Person Re-Identification by Stepwise Learning". CVPR 2018.
    E. Ristani, F. Solera, R. Zou, R. Cucchiara, C. Tomasi. "Performance Measures and a Data
    Set for Multi-Target, Multi-Camera Tracking". ECCV Workshops 2016 (source videos).

Statistics (official release):
    8 cameras; train 702 ids / 2,196 tracklets; query 702 tracklets (702 ids); gallery 2,636
    tracklets (702 test ids + 408 distractor ids); 4,832 tracklets in all, about 815k frames.

Layout (``root`` may be the parent folder, ``dukemtmc-vidreid/`` or ``DukeMTMC-VideoReID/``)::

    dukemtmc-vidreid/DukeMTMC-VideoReID/{train,query,gallery}/<pid4>/<tracklet4>/<frames>.jpg

Frame file ``0001_C6_F0099_X30823.jpg``: pid, camera ``C1..C8``, frame index within the
tracklet (``F0001..``, some tracklets start at ``F0002``), ``X``/``D`` flag
(normal/distractor), frame number in the camera video. The older release without
underscores (``0001C6F0099X30823.jpg``) is accepted too.

Decisions:
    - Frames are ordered by the ``F`` index; camera and pid come from the file names and must
      agree with the pid folder and across the frames of a tracklet (else ``ValueError``).
      Two frames with the same ``F`` index in one tracklet are an error naming both files
      (their order, hence every clip, would be arbitrary).
    - ``meta["distractor"]`` is True when any frame carries the ``D`` flag.
    - Evaluation uses the ``market`` rule (same pid & same camera removed from the gallery).
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
    resolve_dataset_dir,
)
from videoreid.data.tracklet import ReIDSplit, Tracklet

LAYOUT = """\
<root>/dukemtmc-vidreid/DukeMTMC-VideoReID/   (or either of those folders as <root>)
  train/<pid4>/<tracklet4>/0001_C6_F0099_X30823.jpg ...   (or 0001C6F0099X30823.jpg)
  query/<pid4>/<tracklet4>/...
  gallery/<pid4>/<tracklet4>/..."""

_FRAME_RX = re.compile(r"(?P<pid>-?\d+)_?C(?P<cam>\d+)_?F(?P<frame>\d+)_?(?P<flag>[XD])(?P<vframe>\d+)\.\w+")
_EXPECTED = "'0001_C6_F0099_X30823.jpg' or '0001C6F0099X30823.jpg'"
SUBSETS = ("train", "query", "gallery")


def parse_frame_name(name: str) -> tuple[int, int, int, str]:
    """``0001_C6_F0099_X30823.jpg`` → (frame index, pid, camera 1-based, flag)."""
    m = _FRAME_RX.fullmatch(name)
    if m is None:
        raise ValueError(f"expected a name like {_EXPECTED}")
    return int(m["frame"]), int(m["pid"]), int(m["cam"]), m["flag"]


class DukeMTMCVideoReID(ReIDDataset):
    """DukeMTMC-VideoReID in its official layout (one split).

    Args:
        root: parent folder, ``dukemtmc-vidreid/`` or ``DukeMTMC-VideoReID/``.

    Raises:
        FileNotFoundError: missing subset folder.
        ValueError: empty identity/tracklet folder, malformed name, pid/camera mismatch.
    """

    name = "dukev"
    protocol = "market"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        self.root = resolve_dataset_dir(
            root,
            ("dukemtmc-vidreid/DukeMTMC-VideoReID", "DukeMTMC-VideoReID"),
            SUBSETS,
            LAYOUT,
            "DukeMTMC-VideoReID",
        )
        listing = FrameListing(parse_frame_name, "DukeMTMC-VideoReID")
        parts = {s: self._load_subset(require_dir(self.root / s, "DukeMTMC-VideoReID", LAYOUT), s, listing) for s in SUBSETS}
        listing.report()
        self._splits = [
            ReIDSplit(relabel_train(parts["train"], "DukeMTMC-VideoReID"), parts["query"], parts["gallery"], self.name, self.protocol, 0)
        ]

    def _load_subset(self, folder: Path, subset: str, listing: FrameListing) -> list[Tracklet]:
        out = []
        for pid_dir in list_subdirs(folder):
            try:
                pid = int(pid_dir)
            except ValueError:
                raise ValueError(
                    f"DukeMTMC-VideoReID: identity folder {folder / pid_dir} is not a number. Expected layout:\n{LAYOUT}"
                ) from None
            tracklet_dirs = list_subdirs(folder / pid_dir)
            if not tracklet_dirs:
                raise ValueError(
                    f"DukeMTMC-VideoReID: identity folder {folder / pid_dir} holds no tracklet folders. "
                    f"Expected layout:\n{LAYOUT}"
                )
            for tdir in tracklet_dirs:
                path = folder / pid_dir / tdir
                names, parsed = listing(path)
                seen: dict[int, str] = {}
                for n, (f, _, _, _) in zip(names, parsed, strict=True):
                    if f in seen:
                        raise ValueError(
                            f"DukeMTMC-VideoReID: {path / seen[f]} and {path / n} have the same "
                            f"frame index F{f:04d}; one tracklet holds each frame index once")
                    seen[f] = n
                pids = {p for _, p, _, _ in parsed}
                cams = {c for _, _, c, _ in parsed}
                if pids != {pid}:
                    raise ValueError(
                        f"DukeMTMC-VideoReID: frames in {path} name pid(s) {sorted(pids)}, but the folder says {pid}"
                    )
                if len(cams) != 1:
                    raise ValueError(f"DukeMTMC-VideoReID: frames in {path} come from several cameras {sorted(cams)}")
                cam = cams.pop()
                if cam < 1:
                    raise ValueError(f"DukeMTMC-VideoReID: camera C{cam} in {path} (cameras are C1..C8)")
                meta = {
                    "tracklet_id": f"{subset}/{pid_dir}/{tdir}",
                    "orig_pid": pid,
                    "distractor": any(f == "D" for _, _, _, f in parsed),
                    "subset": subset,
                }
                out.append(Tracklet(FramePaths(path, names), pid, cam - 1, meta))
        return out
