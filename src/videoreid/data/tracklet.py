"""The two records every dataset produces: `Tracklet` and `ReIDSplit`.

A tracklet is a sequence of person crops of one identity seen by one camera. Frames are
stored as paths in temporal order (sorted by the frame number parsed from the file name,
never by listing order). `camid` is 0-based in memory whatever the on-disk convention.

pid semantics follow MARS: ``-1`` is a junk tracklet (ignored by every protocol), ``0`` in a
MARS test set is a distractor (a valid negative). Training pids are relabelled to
``0..N-1`` by the loaders; the original pid is kept in ``meta["orig_pid"]``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tracklet:
    """One tracklet.

    Attributes:
        frames: frame paths in temporal order: any sequence of ``Path`` (loaders use the
            compact ``datasets.common.FramePaths``, which builds each ``Path`` on access).
        pid: identity label (training: relabelled 0..N-1; test: original pid, -1 junk,
            0 distractor on MARS).
        camid: 0-based camera index.
        meta: free-form extra data (``orig_pid``, ``tracklet_id``, ``aux`` paths of aligned
            modalities such as keypoint JSON files, ...).
    """

    frames: Sequence[Path]
    pid: int
    camid: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class ReIDSplit:
    """Train/query/gallery lists of one evaluation split.

    Attributes:
        train: training tracklets (pids relabelled 0..num_train_pids-1).
        query: query tracklets.
        gallery: gallery tracklets (under the protocol's construction rule; the MARS
            loader gives the official non-query rows, junk included; protocol code decides
            what to drop).
        name: dataset name, e.g. ``"mars"`` or ``"ilidsvid"``.
        protocol: default evaluation protocol name (see ``evaluation.rank``).
        split_index: index of the split for multi-split datasets (0-based), else 0.
    """

    train: list[Tracklet]
    query: list[Tracklet]
    gallery: list[Tracklet]
    name: str
    protocol: str
    split_index: int = 0

    @property
    def num_train_pids(self) -> int:
        return len({t.pid for t in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({t.camid for t in self.train})

    def describe(self) -> str:
        """A short human-readable label naming dataset and split."""
        return f"{self.name} split {self.split_index}"


def subset_statistics(tracklets: list[Tracklet]) -> dict[str, Any]:
    """Counts and length distribution of a list of tracklets.

    Returns:
        dict with ``tracklets``, ``ids``, ``cameras``, ``frames``, ``len_min``,
        ``len_median``, ``len_mean``, ``len_max`` and ``pid_counts`` (a Counter of special pids
        -1 and 0).
    """
    if not tracklets:
        return {"tracklets": 0, "ids": 0, "cameras": 0, "frames": 0, "len_min": 0,
                "len_median": 0.0, "len_mean": 0.0, "len_max": 0, "junk": 0, "distractors": 0}
    lengths = np.array([len(t) for t in tracklets])
    pids = Counter(t.pid for t in tracklets)
    return {
        "tracklets": len(tracklets),
        # identities proper: junk (-1) and distractor tracklets are not people to find
        "ids": len({t.pid for t in tracklets if t.pid != -1 and not t.meta.get("distractor")}),
        "cameras": len({t.camid for t in tracklets}),
        "frames": int(lengths.sum()),
        "len_min": int(lengths.min()),
        "len_median": float(np.median(lengths)),
        "len_mean": float(lengths.mean()),
        "len_max": int(lengths.max()),
        "junk": pids.get(-1, 0),
        "distractors": sum(1 for t in tracklets if t.meta.get("distractor")),
    }
