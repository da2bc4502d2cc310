"""Dataset names → loader classes, and ``build_dataset``.

A plain dict: adding a dataset means adding one line here.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from videoreid.data.datasets.common import ReIDDataset
from videoreid.data.datasets.dukev import DukeMTMCVideoReID
from videoreid.data.datasets.folder import FolderDataset
from videoreid.data.datasets.ilidsvid import ILIDSVID
from videoreid.data.datasets.market import Market1501
from videoreid.data.datasets.mars import MARS
from videoreid.data.datasets.prid2011 import PRID2011

DATASETS: dict[str, type[ReIDDataset]] = {
    "mars": MARS,
    "dukev": DukeMTMCVideoReID,
    "ilidsvid": ILIDSVID,
    "prid2011": PRID2011,
    "folder": FolderDataset,
    "market1501": Market1501,
    # image sets released in the Market-1501 layout (for joint image pre-training)
    "dukemtmc_reid": Market1501,
    "cuhk03_np": Market1501,
}


def build_dataset(name: str, root: str | os.PathLike[str], **kwargs: Any) -> ReIDDataset:
    """Construct the loader ``name`` on ``root``.

    Args:
        name: a key of ``DATASETS``.
        root: the dataset's parent folder or the dataset folder itself.
        **kwargs: loader options (e.g. ``seed`` for ``prid2011``, ``check_frames`` for ``mars``).

    Raises:
        ValueError: unknown name (lists the valid ones) or an option the loader does not take
            (lists the ones it does).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    cls = DATASETS[name]
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "root")]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(
            f"dataset {name!r} does not take option(s) {unknown}; valid options: {params or 'none'}"
        )
    return cls(root, **kwargs)
