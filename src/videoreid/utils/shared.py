"""Locating the optional folder of real test data (MARS frames and official metadata).

It holds ``data/mars-mini/mars/`` (frames of 16 MARS identities in the official layout) and
``data/mars-official-info/`` (the official ``tracks_*_info.mat`` and ``query_IDX.mat``), all
from the MARS release. It is named by ``$VIDEOREID_SHARED`` or sits beside the checkout as
``shared/``; it is not part of the repository, and tests that need it skip without it.
"""

from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path | None:
    """``$VIDEOREID_SHARED`` or ``<checkout>/../shared``, if it exists."""
    env = os.environ.get("VIDEOREID_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3].parent / "shared")
    for c in candidates:
        if c.is_dir():
            return c
    return None
