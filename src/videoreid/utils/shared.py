"""Locating the optional ``shared/`` folder (real MARS frames and official metadata).

It exists on the project's machines and CI beside the checkout, never in a user's clone;
tests that need it skip when it is absent.
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
