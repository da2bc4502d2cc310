"""Loaders for the official video re-id layouts (MARS, DukeMTMC-VideoReID, iLIDS-VID,
PRID2011), a generic folder layout and the Market-1501 image layout.

Each loader validates its layout at construction and exposes ``name``, ``num_splits``,
``splits()`` and ``split(k)`` returning ``videoreid.data.tracklet.ReIDSplit``. Use
``build_dataset(name, root)`` to pick one by name (see ``docs/datasets.md``).
"""

from videoreid.data.datasets.common import FramePaths, ReIDDataset
from videoreid.data.datasets.dukev import DukeMTMCVideoReID
from videoreid.data.datasets.factory import DATASETS, build_dataset
from videoreid.data.datasets.folder import FolderDataset
from videoreid.data.datasets.ilidsvid import ILIDSVID
from videoreid.data.datasets.market import Market1501
from videoreid.data.datasets.mars import MARS
from videoreid.data.datasets.prid2011 import PRID2011

__all__ = [
    "DATASETS",
    "MARS",
    "PRID2011",
    "ILIDSVID",
    "DukeMTMCVideoReID",
    "FolderDataset",
    "FramePaths",
    "Market1501",
    "ReIDDataset",
    "build_dataset",
]
