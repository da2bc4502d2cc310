"""videoreid: video-based person re-identification on one shared, tested pipeline."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# The inference API at the top level, imported on first use so that `import videoreid`
# (and `videoreid --help`) stays light.
_LAZY = {"load_model": "videoreid.inference.package", "Predictor": "videoreid.inference.predictor"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'videoreid' has no attribute {name!r}")
