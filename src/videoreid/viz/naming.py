"""How pictures and tables name cameras and identities: as the dataset's own files do.

In memory ``camid`` is 0-based for every dataset (``videoreid.data.tracklet``); on disk each
dataset has its own convention, and a reader comparing a figure with the frame files (or a
paper's per-camera table) expects that one:

=================  =========================================  ==================
dataset            on disk                                    shown
=================  =========================================  ==================
``mars``           ``0001C1T0001F001.jpg`` (cameras 1–6)      ``camid + 1``
``dukev``          ``0001_C6_F0099_X30823.jpg`` (1–8)         ``camid + 1``
``market1501``     ``0002_c1s1_000451_03.jpg`` (1–6)          ``camid + 1``
``ilidsvid``       ``cam1/``, ``cam2/``                       ``camid + 1``
``prid2011``       ``cam_a/``, ``cam_b/``                     ``a``, ``b``
``folder``         ``<camid>_<tracklet>/`` (0-based)          ``camid``
=================  =========================================  ==================

Unknown dataset names show the 0-based ``camid`` (what the generic folder layout stores).
Every figure and table of :mod:`videoreid.viz` goes through :func:`camera_label`, so a
picture and the table beside it always agree.
"""

from __future__ import annotations

from videoreid.data.tracklet import Tracklet

__all__ = ["ONE_BASED", "camera_label", "pid_label"]

ONE_BASED: frozenset[str] = frozenset({"mars", "dukev", "market1501", "ilidsvid"})


def camera_label(dataset: str, camid: int) -> str:
    """The camera as ``dataset`` numbers it in its files (see the module table).

    Args:
        dataset: dataset name (``ReIDSplit.name`` / ``FeatureSet.dataset``).
        camid: 0-based camera index.
    """
    name = dataset.lower()
    camid = int(camid)
    if name in ONE_BASED:
        return str(camid + 1)
    if name == "prid2011" and 0 <= camid < 26:
        return chr(ord("a") + camid)
    return str(camid)


def pid_label(tracklet: Tracklet) -> str:
    """The identity as the dataset names it (training pids are relabelled in memory)."""
    return str(int(tracklet.meta.get("orig_pid", tracklet.pid)))
