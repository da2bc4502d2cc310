"""Path rules shared by the on-disk modality caches (flow, pose).

A cache is a folder ``<ancestor>/<dirname>/`` holding a metadata file; a frame's cached map
is found by walking up from the frame to the nearest ancestor that has one, so the same cache
serves a dataset opened by its parent root or by its own folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def absolute(path: str | os.PathLike[str]) -> str:
    """Absolute, normalised path string (no symlink resolution: caches key on the given path)."""
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def find_cache_dir(
    frame: str | os.PathLike[str],
    dirname: str,
    meta_name: str,
    stop: str | os.PathLike[str] | None = None,
) -> Path | None:
    """The nearest ``<ancestor>/<dirname>`` above ``frame`` that holds ``meta_name``.

    Ancestors are searched from the frame's folder upwards, up to and including ``stop``
    (default: the filesystem root). Returns ``None`` when there is none.
    """
    d = Path(absolute(frame)).parent
    stop_abs = Path(absolute(stop)) if stop is not None else None
    while True:
        if (d / dirname / meta_name).is_file():
            return d / dirname
        if d == stop_abs or d.parent == d:
            return None
        d = d.parent
